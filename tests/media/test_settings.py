"""`MediaSettings`: what media is given instead of `Config`, and how the composition root builds it."""

from __future__ import annotations

import pytest

from apuppet.config import Config
from apuppet.media.peer import rtc_configuration
from apuppet.media.settings import IceServer, MediaSettings
from apuppet.plugins.streaming import StreamingPlugin
from apuppet.plugins.textroom import TextRoomPlugin
from apuppet.server.app import load_plugins, media_settings


def test_media_settings_carry_the_media_part_of_the_config() -> None:
    config = Config(
        bind="127.0.0.1",
        rtp_port_range="21000-21099",
        use_ipv6=False,
        nat=True,
        public_ip="203.0.113.7",
        stun_server="stun:stun.example.org:3478",
        turn_servers=[{"url": "turn:turn.example.org:3478", "username": "u", "credential": "static-credential"}],
        max_peers_per_session=2,
        max_peers_per_address=5,
        rtp_latch_grace=3.5,
    )
    settings = media_settings(config)
    assert settings == MediaSettings(
        bind="127.0.0.1",
        port_range=(21000, 21099),
        use_ipv6=False,
        public_ip="203.0.113.7",
        ice_servers=(
            IceServer(("stun:stun.example.org:3478",)),
            IceServer(("turn:turn.example.org:3478",), "u", "static-credential"),
        ),
        max_peers_per_session=2,
        max_peers_per_address=5,
        rtp_latch_grace=3.5,
    )
    assert "static-credential" not in repr(settings)
    servers = rtc_configuration(settings).iceServers
    assert [(s.urls, s.username, s.credential) for s in servers] == [
        (["stun:stun.example.org:3478"], None, None),
        (["turn:turn.example.org:3478"], "u", "static-credential"),
    ]


def test_no_nat_mapping_without_nat_and_no_ice_servers_by_default() -> None:
    settings = media_settings(Config(public_ip="203.0.113.7"))
    assert settings.public_ip == "" and settings.ice_servers == ()
    assert rtc_configuration(settings).iceServers == []


def test_both_plugins_share_one_peer_budget() -> None:
    streaming, textroom = sorted(load_plugins(Config()), key=lambda p: p.name)
    assert isinstance(streaming, StreamingPlugin) and isinstance(textroom, TextRoomPlugin)
    assert streaming.peers.budget is textroom.peers.budget


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"port_range": (20000, 10000)}, "port_range must be two ports, low first, not 20000-10000"),
        ({"port_range": (0, 10)}, "port_range must be two ports"),
        ({"max_peers_per_session": -1}, "cannot be negative"),
        ({"rtp_latch_grace": -0.5}, "cannot be negative"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_error(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MediaSettings(**fields)


@pytest.mark.parametrize("entry", [{}, {"urls": ""}, {"urls": []}, {"urls": ["stun:a", 5]}])
def test_an_ice_server_needs_urls(entry: dict) -> None:
    with pytest.raises(ValueError, match="urls"):
        IceServer.from_dict(entry)


def test_an_ice_server_takes_a_url_or_a_list() -> None:
    assert IceServer.from_dict({"urls": "stun:a"}) == IceServer(("stun:a",))
    assert IceServer.from_dict({"urls": ["turn:a", "turns:a"], "username": "u", "credential": "c"}) == IceServer(
        ("turn:a", "turns:a"), "u", "c"
    )
