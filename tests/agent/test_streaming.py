"""The mountpoint request is the Android agent's, field for field (spec §4.1)."""

import json

from apuppet.agent.streaming import create_request


def test_create_request_matches_the_android_agent():
    body = create_request("12345678", "1234")
    assert body == {
        "request": "create",
        "type": "rtp",
        "description": "12345678",
        "permanent": False,
        "is_private": False,
        "audio": False,
        "video": True,
        "data": False,
        "id": "12345678",
        "name": "12345678",
        "pin": "1234",
        "audioport": 0,
        "audiopt": 0,
        "videoport": 0,
        "videopt": 100,
        "videortpmap": "H264/90000",
        "videobufferkf": False,
    }
    assert "secret" not in body and "videofmtp" not in body


def test_odd_characters_stay_inside_their_strings():
    body = json.loads(json.dumps(create_request('1"}', 'p","admin_key":"x')))
    assert body["pin"] == 'p","admin_key":"x' and "admin_key" not in body
