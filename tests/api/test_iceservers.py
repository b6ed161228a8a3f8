"""The ICE servers a browser gets with its session (apuppet.api.iceservers, Gateway `ice_servers`): minted TURN
credentials, nothing when nothing is configured, and what the server's own peer connections keep using.
coturn itself checks the minted credentials in tests/ops/test_turn.py."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from apuppet.api.gateway import Gateway
from apuppet.api.iceservers import browser_ice_servers, expiry, mint
from apuppet.config import ConfigError, validate

from .echo import EchoPlugin

NOW = 1_800_000_000.0


def test_minted_credentials_expire_after_turn_ttl_and_differ_per_secret() -> None:
    user, credential = mint("s3cret", int(NOW) + 600, "ab12cd34")
    assert user == f"{int(NOW) + 600}:ab12cd34"
    assert expiry(user) == int(NOW) + 600
    assert len(base64.b64decode(credential)) == 20  # an HMAC-SHA1
    assert mint("s3cret", int(NOW) + 600, "ab12cd34")[1] == credential
    assert mint("other", int(NOW) + 600, "ab12cd34")[1] != credential
    assert mint("s3cret", int(NOW) + 601, "ab12cd34")[1] != credential
    # The tag is for coturn's log: nothing but a short, plain token gets in.
    assert mint("s3cret", 5, "a:b <c>\nd")[0] == "5:abcd"
    with pytest.raises(ValueError, match="no TURN secret"):
        mint("", 5)


def test_nothing_configured_means_no_ice_servers_and_the_create_reply_unchanged() -> None:
    config = validate({})
    assert browser_ice_servers(config, NOW) == []
    gateway = Gateway([EchoPlugin()], ice_servers=lambda tag: browser_ice_servers(config, NOW, tag))
    reply = gateway.handle({"janus": "create", "transaction": "t"})
    assert reply["data"].keys() == {"id"}


def test_secret_based_turn_servers_get_fresh_credentials_and_static_ones_stay() -> None:
    config = validate(
        {
            "stun_server": "stun:stun.example.org:3478",
            "turn_secret": "s3cret",
            "turn_ttl": 3600,
            "turn_servers": [
                {"url": "turn:turn.example.org:3478?transport=tcp"},
                {"url": "turns:relay.example.net:443", "username": "fixed", "credential": "pw"},
            ],
        }
    )
    stun, minted, static = browser_ice_servers(config, NOW, "t4g")
    assert stun == {"urls": "stun:stun.example.org:3478"}
    assert minted["urls"] == "turn:turn.example.org:3478?transport=tcp"
    assert (minted["username"], minted["credential"]) == mint("s3cret", int(NOW) + 3600, "t4g")
    assert static == {"urls": "turns:relay.example.net:443", "username": "fixed", "credential": "pw"}
    # The server's own peer connections keep their host/NAT candidates, which coturn relays to: they get the
    # STUN and static entries only, as before.
    assert config.ice_servers() == [stun, static]


def test_turn_true_points_browsers_at_this_hosts_coturn() -> None:
    config = validate({"turn": True, "hostname": "support.example.org", "turn_secret": "s3cret"})
    (local,) = browser_ice_servers(config, NOW, "t")
    assert local["urls"] == [
        "turn:support.example.org:3478?transport=udp",
        "turn:support.example.org:3478?transport=tcp",
    ]
    assert expiry(local["username"]) == int(NOW) + 86400
    tls = validate(
        {"turn": True, "hostname": "support.example.org", "turn_secret": "s", "tls_cert": "c", "tls_key": "k"}
    )
    assert "turns:support.example.org:5349?transport=tcp" in browser_ice_servers(tls, NOW)[0]["urls"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"turn_servers": [{"url": "turn:x:3478"}]}, "needs turn_secret"),
        ({"turn": True}, "turn: true needs hostname or public_ip"),
        ({"turn": True, "hostname": "h", "turn_relay_range": "10400-10600"}, "must not overlap rtp_port_range"),
        ({"turn_ttl": 10}, "turn_ttl"),
        ({"turn_relay_range": "5-4"}, "turn_relay_range"),
    ],
)
def test_bad_turn_settings_are_explained(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(raw)


def test_a_viewer_session_gets_credentials_and_they_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    config = validate({"turn_secret": "s3cret", "turn_servers": [{"url": "turn:198.18.0.1:3478?transport=tcp"}]})
    gateway = Gateway(
        [EchoPlugin()], api_secret="agents-only", ice_servers=lambda tag: browser_ice_servers(config, NOW, tag)
    )
    events: list[str] = []
    gateway.observers.append(lambda name, fields: events.append(json.dumps(fields)))
    with caplog.at_level(logging.DEBUG):
        reply = gateway.handle({"janus": "create", "transaction": "t"}, remote="198.18.0.2")
    (server,) = reply["data"]["ice_servers"]
    assert reply["janus"] == "success" and not gateway.sessions[reply["data"]["id"]].trusted
    # Two sessions, two usernames (each carries its session's log tag, not its id).
    other = gateway.handle({"janus": "create", "transaction": "u"}, remote="198.18.0.2")
    assert other["data"]["ice_servers"][0]["username"] != server["username"]
    assert str(reply["data"]["id"]) not in server["username"]
    assert server["credential"] not in caplog.text + "".join(events)
