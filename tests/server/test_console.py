"""/console/ over HTTP against a real server: the login (admin secret, throttle, cookie flags), the refusals (no
cookie, another origin, no CSRF token, after logout), the live view of a real demo agent and an aiortc viewer,
ending the viewer's and the device's session, and the recordings served only from the listing."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from apuppet.api.idtag import tag
from apuppet.config import Config
from apuppet.server import Server

from ..agent.conftest import SECRET, start_agent
from .viewer import TellingViewer, until

ADMIN = "console-admin-" + SECRET
FIXTURES = Path(__file__).parent.parent / "media" / "fixtures"

#: Every console API route, as (method, path): each needs the login.
ROUTES = [
    ("GET", "/console/api/login"),
    ("GET", "/console/api/state"),
    ("GET", "/console/api/live"),
    ("GET", "/console/api/audit"),
    ("GET", "/console/api/recordings"),
    ("GET", "/console/api/recordings/20261206T203400Z-1234.mp4"),
    ("POST", "/console/api/logout"),
    ("POST", "/console/api/sessions/abcdef01/end"),
]


def config(**overrides: Any) -> Config:
    values: dict[str, Any] = {
        "bind": "127.0.0.1",
        "web_http_port": 0,
        "api_http": False,
        "api_secret": SECRET,
        "admin_secret": ADMIN,
    }
    return Config(**{**values, **overrides})


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    srv = Server(config(recordings_dir=str(tmp_path / "recordings")), housekeeping_interval=0.2)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


class Operator:
    """A console client: the cookie kept by hand (aiohttp's jar ignores cookies of IP addresses)."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base.rstrip("/")
        self.origin = self.base
        self.cookie = ""
        self.csrf = ""
        self.set_cookie: Any = None

    async def log_in(self, secret: str = ADMIN, origin: str | None = None) -> aiohttp.ClientResponse:
        headers = {"Origin": self.origin if origin is None else origin}
        async with self.http.post(f"{self.base}/console/api/login", json={"secret": secret}, headers=headers) as r:
            await r.read()
            if r.status == 200:
                cookie = SimpleCookie(r.headers["Set-Cookie"])
                self.set_cookie = cookie["apuppet_console"]
                self.cookie = f"apuppet_console={self.set_cookie.value}"
                self.csrf = (await r.json())["csrf"]
            return r

    async def call(self, method: str, path: str, **headers: str) -> tuple[int, Any]:
        sent = {"Cookie": self.cookie, "Origin": self.origin, "X-Console-Token": self.csrf, **headers}
        sent = {k: v for k, v in sent.items() if v}
        async with self.http.request(method, f"{self.base}{path}", headers=sent) as r:
            body = await r.read()
            try:
                return r.status, json.loads(body)
            except ValueError:
                return r.status, body


async def test_no_admin_secret_no_console(http: aiohttp.ClientSession) -> None:
    async with Server(config(admin_secret="")) as srv:
        operator = Operator(http, srv.url)
        for method, path in ROUTES:
            status, body = await operator.call(method, path)
            assert (status, body["disabled"]) == (403, True), (method, path)
        assert "admin_secret" in body["error"]
        assert (await operator.log_in("")).status == 403
        async with http.get(f"{srv.url}console/") as page:
            assert page.status == 200 and "operator console" in await page.text()
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]


async def test_every_console_api_needs_the_login(server: Server, http: aiohttp.ClientSession) -> None:
    operator = Operator(http, server.url)
    for method, path in ROUTES:
        status, body = await operator.call(method, path)
        assert status == 401, (method, path)
    operator.cookie = "apuppet_console=made-up-token"
    for method, path in ROUTES:
        assert (await operator.call(method, path))[0] == 401, (method, path)


async def test_wrong_secret_refused_throttled_and_the_cookie_flags(server: Server, http: aiohttp.ClientSession) -> None:
    operator = Operator(http, server.url)
    server.admin_throttle.base_delay = 3.0  # the first delay: long enough to be seen on a loaded machine
    statuses = [(await operator.log_in("wrong-" + ADMIN)).status for _ in range(3)]
    # Guesses at /metrics' admin secret count with the console's: it is the same secret.
    for _ in range(3):
        async with http.get(f"{server.url}metrics", headers={"Authorization": "Bearer wrong"}) as metrics:
            statuses.append(metrics.status)
    statuses += [(await operator.log_in("wrong-" + ADMIN)).status for _ in range(2)]
    assert statuses == [401] * 6 + [429] * 2
    # While the address is blocked the right secret is not even compared: 429, as for a wrong one, at /metrics too.
    assert (await operator.log_in(ADMIN)).status == 429
    async with http.get(f"{server.url}metrics", headers={"Authorization": f"Bearer {ADMIN}"}) as metrics:
        assert metrics.status == 429
    # Once the delay (3 s after the sixth wrong one) is over, it passes.
    await until(lambda: server.admin_throttle.blocked_for("127.0.0.1") == 0, timeout=30)
    response = await operator.log_in(ADMIN)
    assert response.status == 200
    cookie = operator.set_cookie
    assert cookie["httponly"] is True and cookie["samesite"] == "Strict" and cookie["path"] == "/console/"
    assert not cookie["secure"]  # plain HTTP here; set over TLS
    assert ADMIN not in cookie.value and len(cookie.value) >= 40
    status, state = await operator.call("GET", "/console/api/state")
    assert status == 200 and state["devices"] == []


async def test_cross_origin_posts_are_refused(server: Server, http: aiohttp.ClientSession) -> None:
    operator = Operator(http, server.url)
    assert (await operator.log_in(ADMIN, origin="http://evil.example")).status == 403
    assert (await operator.log_in(ADMIN, origin="")).status == 403  # no Origin: not from our page
    assert (await operator.log_in(ADMIN)).status == 200
    path = "/console/api/sessions/abcdef01/end"
    assert (await operator.call("POST", path, Origin="http://evil.example"))[0] == 403
    assert (await operator.call("POST", path, **{"X-Console-Token": "guessed"}))[0] == 403
    assert (await operator.call("POST", path))[0] == 404  # through every check: there is no such session
    # Reading stays possible without the token (SameSite=Strict keeps other sites' requests cookie-less).
    assert (await operator.call("GET", "/console/api/state", **{"X-Console-Token": "", "Origin": ""}))[0] == 200


async def test_logout_revokes_the_cookie_and_ends_the_live_stream(server: Server, http: aiohttp.ClientSession) -> None:
    operator = Operator(http, server.url)
    await operator.log_in()
    async with http.get(f"{server.url}console/api/live", headers={"Cookie": operator.cookie}) as live:
        assert live.headers["Content-Type"].startswith("text/event-stream")
        first = await asyncio.wait_for(live.content.readuntil(b"\n\n"), 10)
        assert first.startswith(b"event: state\n")
        assert (await operator.call("POST", "/console/api/logout"))[0] == 200
        rest = await asyncio.wait_for(live.content.read(), 10)  # the stream ends
        assert b"event: logout" in rest
    assert (await operator.call("GET", "/console/api/state"))[0] == 401
    assert (await operator.call("POST", "/console/api/logout"))[0] == 401


async def test_the_live_view_and_ending_a_viewer_then_the_device(server: Server, http: aiohttp.ClientSession) -> None:
    agent = await start_agent(server.url)
    operator = Operator(http, server.url)
    await operator.log_in()
    try:
        info = agent.agent.info
        async with TellingViewer(server.url, info["session"], info["password"], name="admin:v1") as viewer:
            await viewer.until(lambda frame: True, timeout=20)
            status, state = await operator.call("GET", "/console/api/state")
            [device] = state["devices"]
            assert device["name"] == "Test phone" and device["id"] == info["session"]
            assert device["video"]["viewers"] == 1 and device["room"]["participants"] == 2
            [seen] = device["viewers"]
            assert seen["username"] == "admin:v1" and seen["address"] == "127.0.0.1" and seen["in_room"]
            assert seen["video"] == "playing" and seen["transport"] == "http"
            [viewer_session] = [s for s in server.gateway.sessions.values() if not s.trusted]
            assert seen["session"] == tag(viewer_session.id)
            text = json.dumps(state)
            assert info["password"] not in text and str(viewer_session.id) not in text  # no pin, no ids

            status, ended = await operator.call("POST", f"/console/api/sessions/{seen['session']}/end")
            assert (status, ended["device"]) == (200, False)
            kicked = await until(lambda: [e for e in viewer.room_events if e.get("textroom") == "kicked"])
            assert kicked[0]["reason"] == "operator" and kicked[0]["message"] == "An operator ended this session."
            stopped = await until(viewer.stopped)
            assert stopped["reason"] == "operator"
            await until(lambda: viewer_session.destroyed, timeout=10)  # after the grace
            assert (await operator.call("POST", f"/console/api/sessions/{seen['session']}/end"))[0] == 404
            status, state = await operator.call("GET", "/console/api/state")
            assert state["devices"][0]["viewers"] == []
            assert [a["event"] for a in state["activity"]].count("session_ended") == 1

        async with TellingViewer(server.url, info["session"], info["password"], name="admin:v2") as viewer:
            await viewer.until(lambda frame: True, timeout=20)
            device_session = state["devices"][0]["session"]
            status, ended = await operator.call("POST", f"/console/api/sessions/{device_session}/end")
            assert (status, ended["device"]) == (200, True)
            destroyed = await until(lambda: [e for e in viewer.room_events if e.get("textroom") == "destroyed"])
            assert destroyed[0]["message"] == "An operator closed the device's session."
            assert (await until(viewer.stopped))["reason"] == "operator"
            # Its mountpoint went with it (the agent, reconnecting by itself, may have made a new one since).
            mountpoints = server.gateway.plugins["janus.plugin.streaming"].snapshot()["mountpoints"]
            assert [m for m in mountpoints if m["owner"].get("session") == device_session] == []
            ended_device = server.console.endings.find(device_session)
            await until(lambda: ended_device is None or ended_device.destroyed, timeout=10)
    finally:
        await agent.stop()


async def test_recordings_are_served_from_the_listing_only(server: Server, http: aiohttp.ClientSession) -> None:
    folder = server.console.recordings
    folder.mkdir(parents=True)
    name = "20261206T203400Z-4815162342.mp4"
    shutil.copy(FIXTURES / "h264_libav_annexb.bin", folder / name)  # bytes to serve; playback is the browser's test
    (folder / "notes.txt").write_text("not a recording")
    (folder.parent / "secret.txt").write_text("outside")
    operator = Operator(http, server.url)
    await operator.log_in()
    status, listing = await operator.call("GET", "/console/api/recordings")
    assert [r["name"] for r in listing["recordings"]] == [name]
    size = (folder / name).stat().st_size
    headers = {"Cookie": operator.cookie, "Range": "bytes=100-199"}
    async with http.get(f"{server.url}console/api/recordings/{name}", headers=headers) as part:
        assert part.status == 206 and part.headers["Content-Type"] == "video/mp4"
        assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
        assert await part.read() == (folder / name).read_bytes()[100:200]
    status, body = await operator.call("GET", f"/console/api/recordings/{name}?download=1")
    assert status == 200 and body == (folder / name).read_bytes()
    for other in ("notes.txt", "..%2Fsecret.txt", "%2E%2E%2Fsecret.txt", "20261206T203400Z-..%2F..%2Fsecret.txt.mp4"):
        assert (await operator.call("GET", f"/console/api/recordings/{other}"))[0] == 404, other


async def test_the_audit_log_filtered_and_paged_with_each_sessions_recording(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with Server(config(recordings_dir="recordings"), base_dir=tmp_path) as srv:
        assert srv.audit is not None
        store = srv.audit.store
        t0 = 1_765_000_000.0
        for n in range(30):
            record = store.start(f"room{n % 3}", f"Phone {n % 3}", f"admin:{n}", f"192.0.2.{n}", t0 + 100 * n)
            store.end(record, t0 + 100 * n + 50, "operator" if n == 4 else "left")
        folder = tmp_path / "recordings"
        folder.mkdir()
        started = datetime.fromtimestamp(t0 + 400, UTC)
        (folder / f"{started:%Y%m%dT%H%M%SZ}-room1.mp4").write_bytes(b"\0" * 64)
        os.utime(folder / f"{started:%Y%m%dT%H%M%SZ}-room1.mp4", (t0 + 450, t0 + 450))
        operator = Operator(http, srv.url)
        await operator.log_in()

        status, page = await operator.call("GET", "/console/api/audit?limit=4&offset=4")
        assert (status, page["total"], page["enabled"]) == (200, 30, True)
        assert [r["viewer"] for r in page["records"]] == ["admin:25", "admin:24", "admin:23", "admin:22"]
        status, found = await operator.call(
            "GET", "/console/api/audit?device=Phone%201&address=192.0.2.&until=" + str(t0 + 1000)
        )
        assert [r["viewer"] for r in found["records"]] == ["admin:10", "admin:7", "admin:4", "admin:1"]
        four = found["records"][2]
        assert (four["reason"], four["recording"], four["room"]) == (
            "operator",
            f"{started:%Y%m%dT%H%M%SZ}-room1.mp4",
            "room1",
        )
        assert found["records"][0]["recording"] is None
        assert (await operator.call("GET", "/console/api/audit?limit=many"))[0] == 400
        assert (await operator.call("GET", "/console/api/audit?since=nan"))[0] == 400
        status, beyond = await operator.call("GET", "/console/api/audit?offset=1e300")
        assert (status, beyond["records"], beyond["total"]) == (200, [], 30)


async def test_bad_input_gets_a_clear_refusal_and_the_console_keeps_serving(
    server: Server, http: aiohttp.ClientSession
) -> None:
    url, origin = f"{server.url}console/api/login", server.url.rstrip("/")
    for body in (b"\xff\xfe{", b"[]", b'{"secret": 5}', b'{"secret": ["x"]}', b"", b'{"secret": "\\ud800"}'):
        async with http.post(url, data=body, headers={"Origin": origin}) as response:
            assert response.status in (400, 401), (body, response.status)
            assert "error" in await response.json()
    # A body that stops short of its Content-Length (a connection held open on purpose), or announces more than
    # the server takes: refused, not waited for.
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    host = origin.split("//", 1)[1]
    head = f"POST /console/api/login HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n".encode()
    for request, status, most in (
        (head + b"Content-Length: 40\r\n\r\n{", b"408", 8.0),
        (head + b"Content-Length: %d\r\n\r\n{" % (server.config.max_request_bytes + 1), b"413", 1.0),
    ):
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        try:
            reply = await asyncio.wait_for(reader.read(65536), 10)
        finally:
            writer.close()
        assert reply.split(b" ", 2)[1] == status and b'"error"' in reply, reply[:120]
        assert time.monotonic() - started < most
    operator = Operator(http, server.url)
    await operator.log_in()
    for tag_ in ("%00", "..", "x" * 500, "%E2%80%AE"):
        assert (await operator.call("POST", f"/console/api/sessions/{tag_}/end"))[0] == 404, tag_
    odd = {"Cookie": "apuppet_console=\u00e9t\u00e9; other=1"}
    async with http.get(f"{server.url}console/api/state", headers=odd) as response:
        assert response.status == 401
    assert (await operator.call("GET", "/console/api/state"))[0] == 200


#: Enough recordings that a scan on the event loop would stall it for a tenth of a second or more.
MANY = 6000


async def test_thousands_of_recordings_leave_the_event_loop_free(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """The loop relays the media: listing the folder, matching audit rows with recordings and the audit query run
    beside it. The loop's longest stall while they are answered is measured against how long they took."""
    async with Server(config(recordings_dir="recordings"), base_dir=tmp_path) as srv:
        assert srv.audit is not None
        folder = tmp_path / "recordings"
        folder.mkdir()
        t0 = 1_765_000_000.0
        for n in range(MANY):
            started = datetime.fromtimestamp(t0 + 60 * n, UTC)
            (folder / f"{started:%Y%m%dT%H%M%SZ}-room{n % 40}.mp4").touch()
        for n in range(200):
            record = srv.audit.store.start(f"room{n % 40}", f"Phone {n % 40}", f"admin:{n}", "192.0.2.1", t0 + 60 * n)
            srv.audit.store.end(record, t0 + 60 * n + 30, "left")
        operator = Operator(http, srv.url)
        await operator.log_in()

        stalls: list[float] = []

        async def tick() -> None:
            while True:
                before = time.monotonic()
                await asyncio.sleep(0.005)
                stalls.append(time.monotonic() - before - 0.005)

        # What the rest of this test process holds (in a suite: every module run before) is set aside from the
        # garbage collector, whose full passes over it would stall the loop whatever the console does.
        gc.collect()
        gc.freeze()
        ticker = asyncio.create_task(tick())
        try:
            began = time.monotonic()
            (status, listing), (audit_status, page), (ping, _) = await asyncio.gather(
                operator.call("GET", "/console/api/recordings"),
                operator.call("GET", "/console/api/audit?limit=200&device=Phone"),
                operator.call("GET", "/console/api/login"),
            )
            took = time.monotonic() - began
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            gc.unfreeze()
        assert (status, audit_status, ping) == (200, 200, 200)
        assert len(listing["recordings"]) == MANY and page["total"] == 200
        for row in page["records"]:
            n = int(row["viewer"].split(":")[1])
            assert row["recording"] == f"{datetime.fromtimestamp(t0 + 60 * n, UTC):%Y%m%dT%H%M%SZ}-room{n % 40}.mp4"
        # On the loop, a scan is one stall as long as the answer took; beside it, the loop keeps turning.
        assert max(stalls) < took / 3, (max(stalls), took)

        # Played and seeked, a recording is looked up by its name: the folder is not scanned again.
        scans = srv.console.index.scans
        name = listing["recordings"][0]["name"]
        for offset in range(0, 20):
            headers = {"Cookie": operator.cookie, "Range": f"bytes={offset}-"}
            async with http.get(f"{srv.url}console/api/recordings/{name}", headers=headers) as response:
                assert response.status in (200, 416)  # empty files here: nothing to range over
        assert srv.console.index.scans == scans


async def test_the_listing_follows_the_folder_and_an_unreadable_folder_is_said_so(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with Server(config(recordings_dir="recordings"), base_dir=tmp_path) as srv:
        folder = tmp_path / "recordings"
        folder.mkdir()
        first, second = "20261206T203400Z-1111.mp4", "20261206T203500Z-2222.mp4"
        (folder / first).write_bytes(b"\0" * 10)
        operator = Operator(http, srv.url)
        await operator.log_in()

        async def names() -> list[str]:
            status, listing = await operator.call("GET", "/console/api/recordings")
            assert status == 200
            return [r["name"] for r in listing["recordings"]]

        assert await names() == [first]
        (folder / second).write_bytes(b"\0" * 10)  # appears
        assert await names() == [second, first]
        (folder / first).unlink()  # disappears
        assert await names() == [second]
        assert (await operator.call("GET", f"/console/api/recordings/{first}"))[0] == 404

        # A symlink named as a recording is not served, even to a file the server could read.
        (tmp_path / "outside.mp4").write_bytes(b"outside")
        os.symlink(tmp_path / "outside.mp4", folder / "20261206T203600Z-3333.mp4")
        assert (await operator.call("GET", "/console/api/recordings/20261206T203600Z-3333.mp4"))[0] == 404
        assert await names() == [second]

        # A folder that cannot be read (here a symlink loop; the tests run as root, which reads any folder):
        # the recordings say so with 503, the audit log is still searched, the rest of the console works.
        shutil.move(folder, tmp_path / "kept")
        os.symlink(folder, folder)
        status, body = await operator.call("GET", "/console/api/recordings")
        assert status == 503 and "recordings folder" in body["error"] and "symbolic links" in body["error"]
        assert (await operator.call("GET", f"/console/api/recordings/{second}"))[0] == 503
        status, page = await operator.call("GET", "/console/api/audit")
        assert status == 200 and page["enabled"] and "cannot be read" in page["recordings_error"]
        assert (await operator.call("GET", "/console/api/state"))[0] == 200
        # Nor an audit log whose file went away: 503 saying so, and back once it is back.
        assert srv.audit is not None
        database = srv.audit.store.path
        database.rename(tmp_path / "moved")
        status, body = await operator.call("GET", "/console/api/audit")
        assert status == 503 and "audit log cannot be read" in body["error"]
        (tmp_path / "moved").rename(database)
        assert (await operator.call("GET", "/console/api/audit"))[0] == 200
        folder.unlink()
        shutil.move(tmp_path / "kept", folder)
        assert await names() == [second]
        status, body = await operator.call("GET", f"/console/api/recordings/{second}")
        assert status == 200 and body == b"\0" * 10
