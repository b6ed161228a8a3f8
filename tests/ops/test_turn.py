"""Debian's coturn, started here on loopback with a shared secret, against the credentials apuppet mints: a
current one allocates (UDP and TCP), an expired or wrongly keyed one is refused, and `apuppet doctor` reports
both. Skips only when coturn is not installed."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apuppet.api.iceservers import mint
from apuppet.config import validate
from apuppet.ops import coturn as coturn_conf
from apuppet.ops.turn import allocate, parse_turn_url

from ..netns import TURNSERVER, Coturn
from ..ports import free_port
from .test_doctor import run_doctor, write_config

needs_coturn = pytest.mark.skipif(not os.path.exists(TURNSERVER), reason="coturn is not installed")


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    server = Coturn(
        tmp_path_factory.mktemp("coturn"), "127.0.0.1", free_port(), secrets.token_urlsafe(24), (49260, 49299)
    )
    yield server
    server.stop()


@needs_coturn
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_coturn_relays_for_a_minted_credential(coturn: Coturn, transport: str) -> None:
    user, credential = mint(coturn.secret, int(time.time()) + 300, "t35t")
    probe = asyncio.run(allocate(coturn.url(transport), user, credential))
    assert probe.error == ""
    assert probe.relayed is not None and probe.relayed[0] == "127.0.0.1" and 49260 <= probe.relayed[1] <= 49299


@needs_coturn
def test_coturn_refuses_an_expired_or_foreign_credential(coturn: Coturn) -> None:
    expired = mint(coturn.secret, int(time.time()) - 5, "t35t")
    foreign = mint("not-the-secret", int(time.time()) + 300, "t35t")
    for user, credential in (expired, foreign):
        probe = asyncio.run(allocate(coturn.url("tcp"), user, credential))
        assert probe.refused and probe.relayed is None
        assert "401" in probe.error
        assert credential not in probe.error


@needs_coturn
def test_doctor_allocates_with_the_minted_credentials(coturn: Coturn, tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    servers = f'[{{url: "{coturn.url("udp")}"}}, {{url: "{coturn.url("tcp")}"}}]'
    write_config(cfg, turn_secret=f'"{coturn.secret}"', turn_servers=servers)
    out = run_doctor(cfg, "--no-ports")
    assert out.returncode == 0, out.stdout + out.stderr
    for transport in ("udp", "tcp"):
        assert f"{coturn.url(transport)} accepted the minted credentials and relays from 127.0.0.1" in out.stdout
    assert coturn.secret not in out.stdout + out.stderr

    write_config(cfg, turn_secret='"a-different-secret"', turn_servers=servers)
    out = run_doctor(cfg, "--no-ports")
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{coturn.url('tcp')} refused the credentials: 401" in out.stdout
    assert "turn_secret must equal coturn's static-auth-secret" in out.stdout


def test_doctor_names_a_turn_server_that_does_not_answer(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    write_config(cfg, turn_secret='"s"', turn_servers=f'[{{url: "turn:127.0.0.1:{free_port()}?transport=tcp"}}]')
    out = run_doctor(cfg, "--no-ports")
    assert out.returncode == 1
    assert "turn:127.0.0.1:" in out.stdout and "did not relay (" in out.stdout, out.stdout


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://x", "starts with turn: or turns:"),
        ("turn:x:3478?transport=sctp", "transport must be udp or tcp"),
        ("turns:x?transport=udp", "TLS, i.e. TCP"),
        ("turn::3478", "no host"),
        ("turn:x:99999", "invalid port"),
    ],
)
def test_bad_turn_urls_are_explained(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_turn_url(url)
    assert str(parse_turn_url("turns:[::1]")) == "turns:[::1]:5349?transport=tcp"


def test_coturn_config_relays_only_to_this_server_and_serves_tls_with_the_web_certificate() -> None:
    config = validate(
        {"turn": True, "hostname": "desk.example.org", "nat": True, "public_ip": "203.0.113.9", "bind": "0.0.0.0"}
    )
    peers = coturn_conf.own_addresses(config, ["127.0.0.1", "10.0.0.5", "fe80::1%eth0", "2001:db8::5", "not-an-ip"])
    assert peers == ["10.0.0.5", "2001:db8::5", "203.0.113.9"]
    text = coturn_conf.render(config, "s3cret", peers, "/etc/coturn/apuppet/fullchain.pem", "/etc/coturn/apuppet/k.pem")
    lines = text.splitlines()
    assert "external-ip=203.0.113.9" in lines and "realm=desk.example.org" in lines
    assert "tls-listening-port=5349" in lines and "cert=/etc/coturn/apuppet/fullchain.pem" in lines
    assert "no-tls" not in lines
    assert [line for line in lines if line.startswith("allowed-peer-ip=")] == [f"allowed-peer-ip={p}" for p in peers]
    assert "denied-peer-ip=10.0.0.0-10.255.255.255" in lines  # the rest of the private network stays out
    assert "no-tls" in coturn_conf.render(config, "s3cret", peers).splitlines()
    with pytest.raises(ValueError, match="no turn_secret"):
        coturn_conf.render(config, "", peers)
    only = validate({"turn": True, "public_ip": "198.51.100.4", "bind": "198.51.100.4"})
    assert coturn_conf.own_addresses(only, ["10.0.0.5"]) == ["198.51.100.4"]
