"""Server-level routes over real sockets: /metrics behind the admin secret, ACME challenges, HTTPS redirect,
TLS reload, and the audit log of a server that has a config folder."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.x509.oid import NameOID

from apuppet.ops import tls
from apuppet.server import Server

from ..api.echo import EchoPlugin
from .conftest import SECRET, make_config


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    cert_pem, key_pem = tls.self_signed([name], days=1)
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key_pem)
    return cert_path, key_path


async def test_metrics_need_the_admin_secret(http: aiohttp.ClientSession) -> None:
    async with Server(make_config(), plugins=[EchoPlugin()]) as server:
        url = server.url + "metrics"
        async with http.get(url) as resp:
            assert resp.status == 401
        async with http.get(url, headers={"Authorization": f"Bearer {SECRET}"}) as resp:
            assert resp.status == 401  # the API secret is not the admin secret
        async with http.post(server.url + "janus", json={"janus": "create", "transaction": "t", "apisecret": SECRET}):
            pass
        async with http.get(url, headers={"Authorization": "Bearer admin-secret-for-tests"}) as resp:
            assert resp.status == 200
            text = await resp.text()
        assert "apuppet_sessions 1" in text
        assert 'apuppet_events_total{event="session_created"} 1' in text


async def test_acme_challenge_and_https_redirect(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    cert, key = self_signed(tmp_path, "first")
    config = make_config(tls_cert=str(cert), tls_key=str(key), web_https_port=0, data_dir="data")
    async with Server(config, plugins=[EchoPlugin()], base_dir=tmp_path) as server:
        challenge = tmp_path / "data" / "acme" / ".well-known" / "acme-challenge"
        challenge.mkdir(parents=True)
        (challenge / "tok-EN_1").write_text("proof")
        async with http.get(server.url + ".well-known/acme-challenge/tok-EN_1", allow_redirects=False) as resp:
            assert resp.status == 200 and await resp.text() == "proof"
        async with http.get(server.url + ".well-known/acme-challenge/..%2Fsecret", allow_redirects=False) as resp:
            assert resp.status == 404
        https_port = server.ports["web + API (https)"]
        async with http.get(server.url + "web-admin/?session=1&pin=2", allow_redirects=False) as resp:
            assert resp.status == 301
            assert resp.headers["Location"] == f"https://127.0.0.1:{https_port}/web-admin/?session=1&pin=2"
        # The API stays on plain HTTP for agents configured with http://.
        async with http.post(server.url + "janus", json={"janus": "ping", "transaction": "p"}) as resp:
            assert (await resp.json())["janus"] == "pong"

        async def served_name() -> str:
            pem = await asyncio.to_thread(ssl.get_server_certificate, ("127.0.0.1", https_port))
            name = x509.load_pem_x509_certificate(pem.encode()).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            return str(name[0].value)

        assert await served_name() == "first"
        # SIGHUP path: a renewed certificate at the same paths is picked up by new connections.
        new_cert, new_key = self_signed(tmp_path, "second")
        cert.write_bytes(new_cert.read_bytes())
        key.write_bytes(new_key.read_bytes())
        server.load_tls()
        assert await served_name() == "second"
    assert (tmp_path / "data" / "audit.sqlite3").exists()
