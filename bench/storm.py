"""A hostile-input storm against apuppet and Debian's Janus, side by side on loopback. Not a test: it prints.

Each target runs in its own process, started here with a temporary config and its log captured to a file. The
storm (about 2·10^4 inputs with the defaults) is made of phases, each from its own loopback source address so
that one phase's mistakes (a server slowing an address down on purpose) do not block the next phase's valid
requests; the wrong-secret phase runs last, and then asks with the right secret from the same address, to
report a server that locks the right secret out:

* raw HTTP: bad request lines, huge and non-UTF-8 headers, bad lengths and chunking, garbage under
  `Content-Encoding` gzip/deflate/br, a gzip bomb, pipelining, and slow/partial requests held open;
* Janus JSON: deep nesting, huge numbers, `NaN`, lone surrogates, every top-level field of every verb with
  values of the wrong type, unicode digits and other odd ids in paths (`/janus/%C2%B2`), odd query strings;
* plugin bodies: every field of the streaming and textroom requests with values of the wrong type;
* bad SDP answers (streaming `start`, textroom `ack`) and offers;
* data-channel garbage from a real aiortc peer joined to a textroom, with valid requests in between and after;
* WebSocket garbage: bad handshakes and raw frames (reserved bits, unknown opcodes, unmasked, invalid UTF-8,
  oversized control frames, absurd lengths), then the JSON cases as text frames;
* UDP garbage to every port of the RTP range;
* wrong secrets (last).

After each phase a few valid requests (create, info, attach, list, destroy) probe the server. Per target it prints:
inputs sent, HTTP 5xx answers, requests unanswered after 10 s (hostile requests that were complete, probes, and
valid data-channel requests), total time, server RSS after, and the lines and bytes the server logged, then the
exceptions found in the log (type and innermost frame) and other frequent log lines.

    python bench/storm.py [--targets apuppet,janus] [--scale 1.0] [--keep-logs DIR]

Loopback only: servers listen on 127.0.0.1, sources are 127.0.0.x, aiortc peers gather 127.0.0.1 only and the
server's candidates on other addresses are dropped from its offer.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import glob
import gzip
import json
import logging
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aioice.ice

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ports import free_port  # noqa: E402

JSON = dict[str, Any]
SECRET = "stormsecret"
ADMIN_SECRET = "stormadmin"
UNANSWERED_AFTER = 10.0
STREAMING = "janus.plugin.streaming"
TEXTROOM = "janus.plugin.textroom"
# Janus' own RTP range is wide; apuppet's is its config. Kept apart from each other and from other benches.
APUPPET_RTP = (41000, 41399)
JANUS_RTP = (42000, 42399)

# The wrong-typed values put in every field. `"\ud800"` is a lone surrogate (valid JSON, not encodable as UTF-8).
WRONG: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1.5,
    2**64,
    10**40,
    "",
    "x" * 5000,
    "²",
    "١٢٣",
    "\u0000",
    "\ud800",
    [],
    {},
    [1, "a"],
    {"a": {"b": []}},
]
ODD_IDS = [
    "²",
    "%C2%B2",
    "%D9%A1%D9%A2",
    "-1",
    "0",
    "1e3",
    "0x1f",
    "+5",
    "%205",
    "5%20",
    "%00",
    "9" * 30,
    "1.0",
    "NaN",
    "%2e%2e",
    "a",
    "%FF",
    "18446744073709551616",
    "9007199254740993",
    "--",
    "%0d%0aX-Injected:%201",
]


def agent_create_body(mp_id: str) -> JSON:
    """The Android agent's mountpoint `create` (spec §4.1)."""
    return {
        "request": "create",
        "type": "rtp",
        "description": mp_id,
        "permanent": False,
        "is_private": False,
        "audio": False,
        "video": True,
        "data": False,
        "id": mp_id,
        "name": mp_id,
        "pin": "stormpin",
        "audioport": 0,
        "audiopt": 0,
        "videoport": 0,
        "videopt": 100,
        "videortpmap": "H264/90000",
        "videobufferkf": False,
    }


STREAMING_BODIES: dict[str, JSON] = {
    "watch": {"request": "watch", "id": "storm-mp", "pin": "stormpin", "offer_audio": False, "offer_video": True},
    "start": {"request": "start"},
    "stop": {"request": "stop"},
    "pause": {"request": "pause"},
    "list": {"request": "list"},
    "info": {"request": "info", "id": "storm-mp", "secret": "s"},
    "destroy": {"request": "destroy", "id": "nope", "secret": "s", "permanent": False},
    "edit": {
        "request": "edit",
        "id": "nope",
        "secret": "s",
        "new_description": "d",
        "new_pin": "p",
        "new_secret": "s",
        "new_is_private": False,
        "permanent": False,
    },
    "switch": {"request": "switch", "id": "storm-mp"},
    "configure": {"request": "configure", "video": True, "audio": False},
    "enable": {"request": "enable", "id": "nope", "secret": "s"},
    "recording": {"request": "recording", "action": "start", "id": "nope", "video": "x"},
    "kick_all": {"request": "kick_all", "id": "nope", "secret": "s"},
}
TEXTROOM_BODIES: dict[str, JSON] = {
    "create": {
        "request": "create",
        "room": "r",
        "pin": "p",
        "secret": "s",
        "is_private": False,
        "permanent": False,
        "description": "d",
        "post": "http://127.0.0.1:9/",
        "allowed": ["t"],
    },
    "exists": {"request": "exists", "room": "r"},
    "list": {"request": "list", "admin_key": "k"},
    "listparticipants": {"request": "listparticipants", "room": "r"},
    "destroy": {"request": "destroy", "room": "nope", "secret": "s", "permanent": False},
    "kick": {"request": "kick", "room": "nope", "secret": "s", "username": "u"},
    "announcement": {"request": "announcement", "room": "nope", "secret": "s", "text": "t"},
    "allowed": {"request": "allowed", "room": "nope", "secret": "s", "action": "add", "allowed": ["t"]},
    "edit": {"request": "edit", "room": "nope", "secret": "s", "new_description": "d", "new_pin": "p"},
    "join": {"request": "join", "room": "nope", "pin": "p", "username": "u", "display": "d"},
    "message": {"request": "message", "room": "nope", "text": "t", "ack": False, "to": "u", "tos": ["u"]},
    "leave": {"request": "leave", "room": "nope"},
}
DC_BODIES: dict[str, JSON] = {
    "create": {"textroom": "create", "room": "dc-x", "pin": "p", "is_private": False, "permanent": False},
    "join": {"textroom": "join", "room": "dc-x", "pin": "p", "username": "u2", "display": "d"},
    "message": {"textroom": "message", "room": "dc-room", "text": "t", "ack": False, "to": "u", "tos": ["u"]},
    "leave": {"textroom": "leave", "room": "dc-nope"},
    "list": {"textroom": "list"},
    "exists": {"textroom": "exists", "room": "dc-room"},
    "listparticipants": {"textroom": "listparticipants", "room": "dc-room"},
    "announcement": {"textroom": "announcement", "room": "dc-room", "secret": "s", "text": "t"},
    "kick": {"textroom": "kick", "room": "dc-room", "secret": "s", "username": "nobody"},
    "destroy": {"textroom": "destroy", "room": "dc-nope", "secret": "s"},
}
JANUS_VERBS = [
    "create",
    "attach",
    "message",
    "trickle",
    "keepalive",
    "hangup",
    "detach",
    "destroy",
    "claim",
    "info",
    "ping",
]
JANUS_FIELDS = [
    "janus",
    "transaction",
    "apisecret",
    "session_id",
    "handle_id",
    "plugin",
    "body",
    "jsep",
    "candidate",
    "candidates",
    "opaque_id",
    "token",
]
BAD_SDPS = [
    "",
    "v=0",
    "\x00\xff",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 100\r\n",
    "v=0\r\n" + "m=video 9 UDP/TLS/RTP/SAVPF 100\r\n" * 2000,
    "v=0\r\na=fingerprint:sha-256 zz\r\na=ice-ufrag:\r\na=ice-pwd:\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
    "v=0\r\na=candidate:1 1 udp 1 127.0.0.1 notaport typ host\r\n",
    "m=" + "9" * 100000,
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "c=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:96 H264/90000\r\na=rtcp-mux\r\na=ice-ufrag:ab\r\na=ice-pwd:"
    "abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00\r\na=setup:active\r\na=recvonly\r\n",
]
BAD_JSEPS: list[Any] = (
    [{"type": "answer", "sdp": sdp} for sdp in BAD_SDPS]
    + [{"type": t, "sdp": "v=0"} for t in ["offer", "pranswer", "rollback", "ANSWER", "", 1, None, []]]
    + [{"type": "answer", "sdp": v} for v in WRONG]
    + ["answer", 1, [], {"sdp": "v=0"}, {"type": "answer"}, {"type": "answer", "sdp": "v=0", "trickle": "x"}]
)


@dataclass
class Tally:
    """What one target did with the storm."""

    sent: int = 0
    status: collections.Counter[int] = field(default_factory=collections.Counter)
    unanswered: int = 0
    closed: int = 0
    probe_unanswered: int = 0
    probe_refused: int = 0
    probes: int = 0
    dc_valid: int = 0
    dc_unanswered: int = 0
    notes: list[str] = field(default_factory=list)
    phase_5xx: collections.Counter[str] = field(default_factory=collections.Counter)
    phase_unanswered: collections.Counter[str] = field(default_factory=collections.Counter)
    phase_time: dict[str, float] = field(default_factory=dict)
    phase_sent: dict[str, int] = field(default_factory=dict)
    phase: str = ""
    alive: bool = True

    def answer(self, status: int) -> None:
        self.status[status] += 1
        if status >= 500:
            self.phase_5xx[self.phase] += 1

    def hang(self) -> None:
        self.unanswered += 1
        self.phase_unanswered[self.phase] += 1


# -- targets ---------------------------------------------------------------------------------------------------
class Target:
    def __init__(self, name: str, proc: subprocess.Popen[bytes], port: int, ws: str, log: Path, rtp: tuple[int, int]):
        self.name = name
        self.proc = proc
        self.port = port
        self.base = f"http://127.0.0.1:{port}/janus"
        self.ws_port, self.ws_path = (int(ws.split("/", 1)[0]), "/" + ws.split("/", 1)[1]) if ws else (0, "")
        self.log = log
        self.rtp = rtp

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("server did not start") from None
            time.sleep(0.1)


# `apuppet serve`, with ICE host candidates on 127.0.0.1 only (aioice skips loopback by default): the storm's
# peers then reach it over loopback and nothing else.
SERVE_ON_LOOPBACK = (
    "import sys, aioice.ice; aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ['127.0.0.1']; "
    "from apuppet.cli import main; sys.argv[0] = 'apuppet'; sys.exit(main(sys.argv[1:]))"
)


def loopback_config(folder: Path, port: int, rtp: tuple[int, int]) -> dict[str, Any]:
    """A bench server's config.yaml keys: loopback only, the bench's secrets, files under `folder`."""
    return {
        "bind": "127.0.0.1",
        "web_http_port": port,
        "api_http": False,
        "api_https": False,
        "api_wss": False,
        "rtp_port_range": f"{rtp[0]}-{rtp[1]}",
        "api_secret": SECRET,
        "admin_secret": ADMIN_SECRET,
        "credentials_dir": str(folder / "cred"),
        "data_dir": str(folder / "data"),
        "is_certbot_enabled": False,
        "use_ipv6": False,
    }


def start_apuppet(
    folder: Path, env: dict[str, str] | None = None, preamble: str = "", config: dict[str, Any] | None = None
) -> Target:
    """`apuppet serve` on loopback; `env` adds environment variables, `preamble` is Python run before it."""
    port = free_port()
    (folder / "config.yaml").write_text(json.dumps({**loopback_config(folder, port, APUPPET_RTP), **(config or {})}))
    log = folder / "apuppet.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                preamble + "\n" + SERVE_ON_LOOPBACK,
                "serve",
                "--config",
                str(folder / "config.yaml"),
            ],
            stdout=out,
            stderr=out,
            env={**os.environ, **(env or {})},
        )
    wait_port(port, proc)
    return Target("apuppet", proc, port, f"{port}/janus", log, APUPPET_RTP)


def start_janus(folder: Path) -> Target:
    """Janus 1.1.2 as tests/janus_gateway.py configures it, plus the WebSocket transport and a log file."""
    port, ws_port = free_port(), free_port()
    lib = sorted(glob.glob("/usr/lib/*/janus"))[0]
    keep = {"libjanus_textroom.so", "libjanus_streaming.so"}
    plugins = ",".join(sorted({Path(p).name for p in glob.glob(f"{lib}/plugins/*.so")} - keep))
    keep_t = {"libjanus_http.so", "libjanus_websockets.so"}
    transports = ",".join(sorted({Path(p).name for p in glob.glob(f"{lib}/transports/*.so")} - keep_t))
    (folder / "janus.jcfg").write_text(
        f'general: {{ configs_folder = "{folder}" plugins_folder = "{lib}/plugins" '
        f'transports_folder = "{lib}/transports" events_folder = "{lib}/events" '
        f'loggers_folder = "{lib}/loggers" api_secret = "{SECRET}" admin_secret = "{ADMIN_SECRET}" }}\n'
        f'media: {{ rtp_port_range = "{JANUS_RTP[0]}-{JANUS_RTP[1]}" }}\n'
        f'nat: {{ ice_enforce_list = "lo" }}\n'
        f'plugins: {{ disable = "{plugins}" }}\ntransports: {{ disable = "{transports}" }}\n'
        "events: { broadcast = false }\n"
    )
    (folder / "janus.plugin.textroom.jcfg").write_text('general: { json = "indented" string_ids = true }\n')
    (folder / "janus.plugin.streaming.jcfg").write_text(
        f'general: {{ string_ids = true rtp_port_range = "{JANUS_RTP[0] + 200}-{JANUS_RTP[1]}" }}\n'
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f'general: {{ json = "indented" base_path = "/janus" http = true port = {port} ip = "127.0.0.1" '
        "https = false }\nadmin: { admin_http = false }\n"
    )
    (folder / "janus.transport.websockets.jcfg").write_text(
        f'general: {{ json = "indented" ws = true ws_port = {ws_port} ws_ip = "127.0.0.1" wss = false }}\n'
        "admin: { admin_ws = false }\n"
    )
    log = folder / "janus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [shutil.which("janus") or "janus", "-F", str(folder), "-C", str(folder / "janus.jcfg")],
            stdout=out,
            stderr=out,
        )
    wait_port(port, proc)
    wait_port(ws_port, proc)
    return Target("janus", proc, port, f"{ws_port}/", log, JANUS_RTP)


# -- raw HTTP ------------------------------------------------------------------------------------------------------
async def raw_exchange(
    target: Target, source: str, data: bytes | list[bytes], tally: Tally, *, complete: bool = True, port: int = 0
) -> list[int]:
    """Send bytes on a fresh connection; the status codes of every response read within 10 s.

    A complete request that gets nothing in 10 s is unanswered; a connection the server closes without a word
    is counted apart (refusing to parse garbage is a fair answer)."""
    tally.sent += 1
    statuses: list[int] = []
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port or target.port, local_addr=(source, 0)), 5
        )
    except (OSError, TimeoutError):
        tally.hang()
        return statuses
    try:
        for chunk in data if isinstance(data, list) else [data]:
            writer.write(chunk)
            with contextlib.suppress(OSError):
                await writer.drain()
        buf = b""
        deadline = time.monotonic() + UNANSWERED_AFTER
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                chunk = await asyncio.wait_for(reader.read(65536), left)
            except (TimeoutError, OSError) as exc:
                if not statuses and complete:
                    tally.hang()
                    first = data if isinstance(data, bytes) else data[0]
                    tally.notes.append(f"unanswered ({type(exc).__name__}): {first[:90]!r}")
                break
            if not chunk:
                if not statuses:
                    tally.closed += 1
                break
            buf += chunk
            found = re.findall(rb"HTTP/1\.[01] (\d{3})", buf)
            if len(found) > len(statuses):
                for code in found[len(statuses) :]:
                    statuses.append(int(code))
                    tally.answer(int(code))
                # One answer is enough unless the caller pipelined several requests.
                if isinstance(data, bytes) and data.count(b"HTTP/1.1\r\n") <= len(statuses):
                    break
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)
    return statuses


def raw_cases(port: int) -> Iterator[tuple[bytes | list[bytes], bool]]:
    """(bytes, complete): malformed HTTP. `complete` is False for requests that leave the server waiting."""
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    body = json.dumps({"janus": "info", "transaction": "t"}).encode()

    def post(headers: bytes, payload: bytes, path: bytes = b"/janus") -> bytes:
        return b"POST " + path + b" HTTP/1.1\r\n" + host + headers + b"\r\n" + payload

    garbage = random.Random(1).randbytes(4096)
    gz_bomb = gzip.compress(b"{" + b" " * 50_000_000 + b"}", 9)
    for path in (b"/janus", b"/janus/1", b"/janus/info", b"/", b"/web-admin/"):
        yield b"GARBAGE\r\n\r\n", True
        yield b"GET\r\n\r\n", True
        yield b"GET " + path + b" HTTP/9.9\r\n" + host + b"\r\n", True
        yield b"GET " + path + b" HTTP/1.1\r\n\r\n", True
        yield b"GET " + path + b" HTTP/1.1\r\n" + host + b"X: " + b"a" * 100_000 + b"\r\n\r\n", True
        yield (
            b"GET " + path + b" HTTP/1.1\r\n" + host + b"".join(b"X-%d: v\r\n" % i for i in range(10_000)) + b"\r\n",
            True,
        )
        yield b"GET " + path + b"?" + b"a" * 100_000 + b" HTTP/1.1\r\n" + host + b"\r\n", True
        yield b"GET " + path + b"\xff\xfe HTTP/1.1\r\n" + host + b"\r\n", True
        yield b"GET " + path + b" HTTP/1.1\r\n" + host + b"X-\xff: v\r\nY: \xff\xfe\x80\r\n\r\n", True
        yield b"GET " + path + b" HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n", True
        yield b"GET " + path + b" HTTP/1.1\r\n" + host + b"NoColon\r\n\r\n", True
        yield b"GET " + path + b" HTTP/1.1\r\n" + host + b"X : v\r\n\r\n", True
        yield b"GET " + path + b" HTTP/1.1\r\n" + host + b"X: a\r\n folded\r\n\r\n", True
        yield b"GET " + path + b" HTTP/1.1\r\n" + host + b"X: a\nY: b\n\n", True
        yield b"GET " + path + b" HTTP/1.1\r\n" + host + b"X: a\x00b\r\n\r\n", True
        for method in (b"FOO", b"get", b"GET\x00", b"TRACE", b"CONNECT", b"DELETE", b"PUT", b"PATCH", b"\xff"):
            yield method + b" " + path + b" HTTP/1.1\r\n" + host + b"\r\n", True
        yield b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", True
        yield b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + garbage[:500], True
        yield garbage, True
        yield b"\x00" * 1000, True
        for cl in (b"-1", b"abc", b"99999999999999999999", b"1, 2", b"+5", b" 5", b"0x10", b"\xff"):
            yield post(b"Content-Length: " + cl + b"\r\n", body), True
        yield post(b"Content-Length: 5\r\nContent-Length: 6\r\n", body), True
        yield post(b"Transfer-Encoding: chunked\r\n", b"zz\r\n" + body + b"\r\n0\r\n\r\n"), True
        yield post(b"Transfer-Encoding: chunked\r\n", b"ffffffffffffffff\r\n" + body + b"\r\n0\r\n\r\n"), True
        yield post(b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", b"3\r\nabc\r\n0\r\n\r\n"), True
        yield post(b"Transfer-Encoding: gzip\r\n", body), True
        yield post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"), True
        yield post(b"Content-Length: %d\r\n" % (len(body) - 5), body), True
        for enc in (b"gzip", b"deflate", b"br", b"zstd", b"x-unknown", b"gzip, gzip", b"\xff"):
            yield (
                post(
                    b"Content-Type: application/json\r\nContent-Encoding: " + enc + b"\r\nContent-Length: 4096\r\n",
                    garbage,
                ),
                True,
            )
        deflated = zlib.compress(body)
        yield post(b"Content-Encoding: deflate\r\nContent-Length: %d\r\n" % len(deflated), deflated), True
        yield post(b"Content-Encoding: gzip\r\nContent-Length: %d\r\n" % len(gz_bomb), gz_bomb), True
        yield post(b"Content-Encoding: gzip\r\nContent-Length: 10\r\n", gzip.compress(body)[:10]), True
        for ctype in (
            b"application/json; charset=utf-7",
            b"application/json; charset=\xff",
            b"text/plain",
            b"x/y; charset=bogus",
        ):
            yield post(b"Content-Type: " + ctype + b"\r\nContent-Length: %d\r\n" % len(body), body), True
        yield post(b"Content-Length: %d\r\n" % len(body), b"\xff\xfe" + body[2:]), True
        yield post(b"Expect: 100-continue\r\nContent-Length: 10\r\n", b""), False
        yield post(b"Upgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: %d\r\n" % len(body), body), True
        yield post(b"Content-Length: 100\r\n", body), False
        pipelined = b"".join(post(b"Content-Length: %d\r\n" % len(body), body) for _ in range(50))
        yield pipelined, True
        yield b"GET " + path + b" HTTP/1.0\r\n\r\n", True


async def slow_requests(target: Target, source: str, tally: Tally, seconds: float, count: int) -> None:
    """Connections that dribble a request a byte a second (held, never complete while we watch)."""
    head = f"POST /janus HTTP/1.1\r\nHost: 127.0.0.1:{target.port}\r\nContent-Length: 1000\r\n\r\n".encode()

    async def one(i: int) -> None:
        tally.sent += 1
        with contextlib.suppress(OSError, TimeoutError):
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", target.port, local_addr=(source, 0)), 5
            )
            try:
                prefix = head if i % 2 else head[:20]
                writer.write(prefix)
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    writer.write(b"{" if i % 2 else b"X")
                    await writer.drain()
                    await asyncio.sleep(1)
            except OSError:
                pass
            finally:
                writer.close()

    await asyncio.gather(*(one(i) for i in range(count)))


# -- Janus API client ------------------------------------------------------------------------------------------------
class Api:
    """Janus HTTP API from one source address, with 10 s as the limit for an answer."""

    def __init__(self, target: Target, source: str, tally: Tally, concurrency: int = 16) -> None:
        self.target = target
        self.tally = tally
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(source, 0), limit=concurrency, force_close=False),
            timeout=aiohttp.ClientTimeout(total=UNANSWERED_AFTER),
        )
        self.limit = asyncio.Semaphore(concurrency)

    async def close(self) -> None:
        await self.http.close()

    async def raw(self, method: str, path: str, data: bytes | None = None, count: bool = True) -> tuple[int, Any]:
        """(HTTP status, parsed JSON or None); status 0 when unanswered in 10 s."""
        async with self.limit:
            if count:
                self.tally.sent += 1
            try:
                async with self.http.request(
                    method,
                    self.target.base + path,
                    data=data,
                    headers={"Content-Type": "application/json"},
                    skip_auto_headers=["Accept-Encoding"],
                ) as reply:
                    text = await reply.read()
                    status = reply.status
            except TimeoutError:
                if count:
                    self.tally.hang()
                return 0, None
            except aiohttp.ClientError:
                if count:
                    self.tally.closed += 1
                return -1, None
            if count:
                self.tally.answer(status)
            try:
                return status, json.loads(text)
            except ValueError:
                return status, None

    async def post(self, path: str, body: Any, count: bool = True) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await self.raw("POST", path, data, count)

    async def call(self, path: str, body: JSON, count: bool = False) -> JSON:
        full = {"transaction": os.urandom(6).hex(), "apisecret": SECRET, **body}
        _, reply = await self.post(path, full, count)
        return reply if isinstance(reply, dict) else {}

    async def session(self, plugin: str | None = None) -> tuple[int, int]:
        session = (await self.call("", {"janus": "create"})).get("data", {}).get("id", 0)
        handle = 0
        if plugin and session:
            handle = (
                (await self.call(f"/{session}", {"janus": "attach", "plugin": plugin})).get("data", {}).get("id", 0)
            )
        return session, handle

    async def poll_event(self, session: int, predicate: Callable[[JSON], bool], timeout: float = 10) -> JSON | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, data = await self.raw("GET", f"/{session}?apisecret={SECRET}&maxev=5", count=False)
            if status != 200:
                return None
            for event in data if isinstance(data, list) else [data]:
                if isinstance(event, dict) and predicate(event):
                    return event
        return None


async def probe(target: Target, source: str, tally: Tally) -> None:
    """Valid requests, as an agent makes them: they must all be answered, and with success."""
    api = Api(target, source, tally)
    try:
        steps: list[tuple[str, JSON]] = [("", {"janus": "create"})]
        session = 0
        for i in range(5):
            tally.probes += 1
            if i == 0:
                path, body = steps[0]
            elif i == 1:
                path, body = "", {"janus": "info"}
            elif i == 2:
                path, body = f"/{session}", {"janus": "attach", "plugin": STREAMING}
            elif i == 3:
                path, body = f"/{session}", {"janus": "keepalive"}
            else:
                path, body = f"/{session}", {"janus": "destroy"}
            full = {"transaction": f"probe{i}", "apisecret": SECRET, **body}
            status, reply = await api.post(path, full, count=False)
            if status == 0:
                tally.probe_unanswered += 1
            elif not isinstance(reply, dict) or reply.get("janus") not in ("success", "ack", "server_info"):
                tally.probe_refused += 1
                tally.notes.append(f"probe {body['janus']} from {source}: HTTP {status} {str(reply)[:160]}")
            if i == 0:
                session = (reply or {}).get("data", {}).get("id", 0) if isinstance(reply, dict) else 0
    finally:
        await api.close()


# -- JSON and plugin-body cases ----------------------------------------------------------------------------------
def raw_json_cases() -> Iterator[bytes]:
    deep = 5000
    yield b"[" * deep + b"]" * deep
    yield b'{"a":' * deep + b"1" + b"}" * deep
    yield (
        '{"janus":"create","transaction":"t","apisecret":"' + SECRET + '","x":' + "[" * 100_000 + "]" * 100_000 + "}"
    ).encode()
    yield b'{"janus":"info","transaction":' + b"9" * 5000 + b"}"
    yield b'{"janus":"info","transaction":1e999999}'
    yield from (
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"1e999999",
        b"9" * 10000,
        b"null",
        b"true",
        b"1",
        b'"x"',
        b"[]",
        b"{}",
        b"",
        b"{",
        b"}",
        b'{"janus":',
        b"\xff\xfe",
        b'{"janus":"info",}',
        b'{"janus":"in\\ud800fo"}',
        b'{"janus":"info","janus":"create"}',
        b"\x00",
        b'{"janus":"info"}\x00',
        b'\xef\xbb\xbf{"janus":"info"}',
        b'{"janus": "info", "transaction": "t", "apisecret": "\\u0000"}',
    )


def janus_field_cases(session: int, handle: int) -> Iterator[tuple[str, JSON]]:
    for verb in JANUS_VERBS:
        path = (
            ""
            if verb in ("create", "info", "ping")
            else (f"/{session}" if verb in ("attach", "keepalive", "destroy", "claim") else f"/{session}/{handle}")
        )
        base: JSON = {"janus": verb, "transaction": "t", "apisecret": SECRET}
        if verb == "attach":
            base["plugin"] = STREAMING
        if verb == "message":
            base["body"] = {"request": "list"}
        if verb == "trickle":
            base["candidate"] = {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}
        for name in JANUS_FIELDS:
            if verb == "destroy" and name not in ("janus", "transaction", "apisecret"):
                continue  # a tolerated field would destroy the shared session mid-phase
            for value in WRONG:
                yield path, {**base, name: value}


def path_cases(session: int, handle: int) -> Iterator[tuple[str, str, bytes | None]]:
    body = json.dumps({"janus": "keepalive", "transaction": "t", "apisecret": SECRET}).encode()
    for odd in ODD_IDS:
        for path in (f"/{odd}", f"/{session}/{odd}", f"/{odd}/{handle}", f"/{odd}/{odd}/{odd}"):
            yield "POST", path, body
            yield "GET", path + f"?apisecret={SECRET}", None
    for query in (
        "maxev=x",
        "maxev=-5",
        "maxev=99999999999999999999",
        "maxev=²",
        "apisecret=%FF",
        "rid=abc",
        "apisecret=" + SECRET + "&apisecret=x",
        "maxev=1&maxev=2",
        "%ZZ",
        "a" * 10000,
    ):
        yield "GET", f"/{odd_session(session)}?{query}", None
    for extra in ("/janus", "/info/x", "/%2e%2e/%2e%2e/etc/passwd", "//", "/./", "/0/0/0/0"):
        yield "POST", extra, body
        yield "GET", extra, None


def odd_session(session: int) -> str:
    """A session that does not exist (a live one would hold the long poll for 30 s)."""
    return str(session + 1_000_003)


def plugin_body_cases(bodies: dict[str, JSON]) -> Iterator[JSON]:
    for name, body in bodies.items():
        yield {"request": name}
        yield {**body, "unknown_field": 1}
        for key in body:
            for value in WRONG:
                yield {**body, key: value}
            yield {k: v for k, v in body.items() if k != key}


def streaming_create_cases(prefix: str) -> Iterator[JSON]:
    n = 0
    body = agent_create_body("x")
    for key in body:
        for value in WRONG:
            n += 1
            case = {**agent_create_body(f"{prefix}{n}"), key: value}
            yield case
    for port in (1, 80, 65535, 65536, -1, APUPPET_RTP[0], JANUS_RTP[0]):
        n += 1
        yield {**agent_create_body(f"{prefix}{n}"), "videoport": port}


async def run_batches(
    api: Api,
    plugin: str | None,
    cases: list[Any],
    send: Callable[[Api, int, int, Any], Awaitable[None]],
    per_session: int = 150,
) -> None:
    """Cases in chunks, each chunk on a fresh session (and handle), which is destroyed afterwards."""
    for start in range(0, len(cases), per_session):
        session, handle = await api.session(plugin)
        await asyncio.gather(*(send(api, session, handle, case) for case in cases[start : start + per_session]))
        if session:
            await api.call(f"/{session}", {"janus": "destroy"})


# -- WebSocket ---------------------------------------------------------------------------------------------------------
def ws_frame(
    payload: bytes, opcode: int = 1, fin: bool = True, rsv: int = 0, mask: bool = True, length: int | None = None
) -> bytes:
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def ws_handshake(target: Target, key: str | None = None, version: str = "13", proto: str = "janus-protocol") -> bytes:
    lines = [
        f"GET {target.ws_path} HTTP/1.1",
        f"Host: 127.0.0.1:{target.ws_port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Version: {version}",
    ]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if proto:
        lines.append(f"Sec-WebSocket-Protocol: {proto}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def ws_garbage() -> Iterator[bytes]:
    ping = json.dumps({"janus": "ping", "transaction": "alive"}).encode()
    yield ws_frame(b"not json")
    yield ws_frame(b"\xff\xfe\x80")
    yield ws_frame(b"\xc3")
    yield ws_frame(os.urandom(2000), opcode=2)
    yield ws_frame(ping, mask=False)
    for rsv in (1, 2, 4, 7):
        yield ws_frame(ping, rsv=rsv)
    for opcode in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15):
        yield ws_frame(ping, opcode=opcode)
    yield ws_frame(b"p" * 200, opcode=9)
    yield ws_frame(b"p", opcode=9, fin=False)
    yield ws_frame(ping, opcode=0)
    yield ws_frame(ping[:5], fin=False) + ws_frame(ping, opcode=1) + ws_frame(ping[5:], opcode=0)
    yield ws_frame(ping[:5], fin=False) + ws_frame(b"x" * 10, opcode=10) + ws_frame(ping[5:], opcode=0)
    for code in (999, 1004, 1005, 1006, 5000, 65535):
        yield ws_frame(struct.pack("!H", code) + b"bye", opcode=8)
    yield ws_frame(b"\x03", opcode=8)
    yield ws_frame(struct.pack("!H", 1000) + b"\xff\xfe", opcode=8)
    yield ws_frame(b"", length=2**63 - 1)
    yield ws_frame(b"", length=2**63)[:2] + b"\xff" * 8
    yield ws_frame(b"x" * 100, length=16 * 2**20)
    yield ws_frame(b"[" * (2 * 2**20))
    yield b"".join(ws_frame(b"{}") for _ in range(2000))
    yield ws_frame(b"x" * 10, fin=False) + b"".join(ws_frame(b"x" * 10, opcode=0, fin=False) for _ in range(3000))
    yield os.urandom(3000)


async def ws_exchange(
    target: Target, source: str, handshake: bytes, frames: bytes, tally: Tally, expect_transaction: str | None = "alive"
) -> None:
    """One connection: handshake, frames, then a valid ping. An unanswered ping on a connection the server kept
    open counts as unanswered; a server that closes on garbage is within the protocol."""
    tally.sent += 1
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", target.ws_port, local_addr=(source, 0)), 5
        )
    except (OSError, TimeoutError):
        tally.hang()
        return
    try:
        writer.write(handshake)
        head = b""
        with contextlib.suppress(TimeoutError, OSError):
            while b"\r\n\r\n" not in head:
                chunk = await asyncio.wait_for(reader.read(4096), UNANSWERED_AFTER)
                if not chunk:
                    break
                head += chunk
        status = re.match(rb"HTTP/1\.[01] (\d{3})", head)
        if status is None:
            if head:
                tally.closed += 1
            else:
                tally.hang()
            return
        tally.answer(int(status.group(1)))
        if status.group(1) != b"101" or expect_transaction is None:
            return
        writer.write(frames)
        ping = json.dumps({"janus": "ping", "transaction": expect_transaction}).encode()
        writer.write(ws_frame(ping))
        with contextlib.suppress(OSError):
            await writer.drain()
        buf = head.split(b"\r\n\r\n", 1)[1]
        deadline = time.monotonic() + UNANSWERED_AFTER
        while expect_transaction.encode() not in buf:
            left = deadline - time.monotonic()
            try:
                chunk = await asyncio.wait_for(reader.read(65536), max(left, 0.001))
            except TimeoutError:
                tally.hang()
                return
            except OSError:
                return
            if not chunk:
                return  # the server closed the connection: an answer to garbage
            buf += chunk
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)


async def ws_json_session(target: Target, source: str, cases: list[bytes], tally: Tally, group: int = 50) -> None:
    """The JSON cases as text frames, 50 per connection; each case with a string transaction needs an answer
    within 10 s unless the server closed the connection (an answer of its own)."""
    limit = asyncio.Semaphore(16)

    async def one(batch: list[bytes]) -> None:
        async with limit:
            await ws_json_batch(target, source, batch, tally)

    await asyncio.gather(*(one(cases[i : i + group]) for i in range(0, len(cases), group)))


async def ws_json_batch(target: Target, source: str, batch: list[bytes], tally: Tally) -> None:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", target.ws_port, local_addr=(source, 0)), 5
        )
    except (OSError, TimeoutError):
        tally.hang()
        return
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(ws_handshake(target, key))
    buf = b""
    with contextlib.suppress(TimeoutError, OSError):
        while b"\r\n\r\n" not in buf:
            chunk = await asyncio.wait_for(reader.read(4096), 5)
            if not chunk:
                break
            buf += chunk
    if b" 101 " not in buf.split(b"\r\n", 1)[0]:
        tally.notes.append(f"WebSocket JSON session refused: {buf[:80]!r}")
        writer.close()
        return
    buf = buf.split(b"\r\n\r\n", 1)[1]
    expected: set[str] = set()
    closed = False
    try:
        for case in batch:
            tally.sent += 1
            writer.write(ws_frame(case))
            expected.update(m.decode() for m in re.findall(rb"wsj\d+x", case))
            await writer.drain()
    except OSError:
        closed = True
    deadline = time.monotonic() + UNANSWERED_AFTER
    while expected and not closed and time.monotonic() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(1 << 20), max(deadline - time.monotonic(), 0.001))
        except TimeoutError:
            break
        except OSError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        buf += chunk
        for found in re.findall(rb"wsj\d+x", buf):
            expected.discard(found.decode())
        buf = buf[-64:]
    if closed:
        tally.notes.append(f"WebSocket JSON: the server closed a connection ({len(expected)} cases unread)")
    else:
        for _ in expected:
            tally.hang()
    writer.close()


# -- data channel ------------------------------------------------------------------------------------------------------
def only_loopback(sdp: str) -> str:
    lines = [
        line
        for line in sdp.splitlines()
        if not line.startswith("a=candidate") or " 127." in line or line.split()[4].startswith("127.")
    ]
    return "\r\n".join(lines) + "\r\n"


async def data_channel_storm(target: Target, source: str, tally: Tally, rounds: int) -> None:
    """A real aiortc peer joins a textroom like the agent does, sends garbage with valid `exists` requests
    in between, then valid ones; every valid request needs an answer within 10 s."""
    from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

    api = Api(target, source, tally, concurrency=4)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    answers: set[str] = set()
    got = asyncio.Event()

    def heard(data: str | bytes) -> None:
        for found in re.findall(r'"(v\d+x)"', data if isinstance(data, str) else data.decode("utf-8", "replace")):
            answers.add(found)
        got.set()

    channels: list[RTCDataChannel] = []

    @pc.on("datachannel")
    def on_channel(channel: RTCDataChannel) -> None:
        channels.append(channel)
        channel.on("message", heard)

    try:
        session, handle = await api.session(TEXTROOM)
        if not handle:
            tally.notes.append("data channel: could not attach the textroom")
            return
        await api.call(f"/{session}/{handle}", {"janus": "message", "body": {"request": "setup"}})
        offer = await api.poll_event(session, lambda e: "jsep" in e)
        if offer is None:
            tally.notes.append("data channel: no offer")
            return
        await pc.setRemoteDescription(RTCSessionDescription(sdp=only_loopback(offer["jsep"]["sdp"]), type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = {"type": "answer", "sdp": pc.localDescription.sdp}
        await api.call(f"/{session}/{handle}", {"janus": "message", "body": {"request": "ack"}, "jsep": answer})
        own = pc.createDataChannel("Trick")
        own.on("message", heard)
        opened = asyncio.Event()
        own.on("open", opened.set)
        keepalive = asyncio.get_running_loop().create_task(keep_polling(api, session))
        try:
            await asyncio.wait_for(opened.wait(), 15)
        except TimeoutError:
            tally.notes.append("data channel: never opened")
            keepalive.cancel()
            return
        valid = 0

        def send_valid() -> None:
            nonlocal valid
            valid += 1
            own.send(json.dumps({"textroom": "exists", "room": "dc-room", "transaction": f"v{valid}x"}))

        own.send(json.dumps({"textroom": "create", "room": "dc-room", "pin": "p", "transaction": "c1"}))
        own.send(
            json.dumps(
                {
                    "textroom": "join",
                    "room": "dc-room",
                    "pin": "p",
                    "username": "device:storm",
                    "display": "storm",
                    "transaction": "j1",
                }
            )
        )
        garbage = list(dc_garbage()) * rounds
        for i, item in enumerate(garbage):
            tally.sent += 1
            own.send(item)
            if i % 20 == 0:
                send_valid()
            if i % 200 == 0:
                await asyncio.sleep(0.05)  # let SCTP drain; the buffer is not the subject here
        for _ in range(50):
            send_valid()
        deadline = time.monotonic() + UNANSWERED_AFTER
        while len(answers) < valid and time.monotonic() < deadline:
            got.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(got.wait(), max(0.01, deadline - time.monotonic()))
        tally.dc_valid += valid
        tally.dc_unanswered += valid - len(answers)
        tally.phase_unanswered[tally.phase] += valid - len(answers)
        keepalive.cancel()
        await api.call(f"/{session}", {"janus": "destroy"})
    finally:
        await pc.close()
        await api.close()


async def keep_polling(api: Api, session: int) -> None:
    with contextlib.suppress(RuntimeError):  # the client session closed: the bench is done with it
        while True:
            await api.raw("GET", f"/{session}?apisecret={SECRET}&maxev=10", count=False)


def dc_garbage() -> Iterator[str | bytes]:
    yield from (
        "",
        "{",
        "null",
        "[]",
        "1",
        '"x"',
        "NaN",
        "[" * 5000 + "]" * 5000,
        "9" * 10000,
        '{"textroom":1}',
        '{"textroom":"nope","transaction":"t"}',
        "x" * 60000,
    )
    yield b"\x00\xff\xfe"
    yield '{"textroom":"exists","room":"\ud800","transaction":"s"}'.encode("utf-8", "surrogatepass")
    yield b'{"textroom":"list","transaction":"b"}'
    for body in plugin_body_cases(DC_BODIES):
        wire = {("textroom" if k == "request" else k): v for k, v in body.items()}
        yield json.dumps({"transaction": "g", **wire})
    for value in WRONG:
        yield json.dumps({"textroom": "exists", "room": "dc-room", "transaction": value})


# -- UDP ------------------------------------------------------------------------------------------------------------
def udp_storm(target: Target, source: str, tally: Tally, per_port: int) -> None:
    rng = random.Random(3)
    low, high = target.rtp
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    shapes = [
        lambda: rng.randbytes(rng.randrange(0, 1500)),
        lambda: bytes([0x80, 96]) + rng.randbytes(10),  # a bare RTP header
        lambda: bytes([0x80, 96]) + rng.randbytes(10) + bytes([28, 0x85]) + rng.randbytes(100),  # FU-A start
        lambda: bytes([0x80, 96]) + rng.randbytes(10) + bytes([24]) + b"\xff\xff" + rng.randbytes(30),  # STAP-A lie
        lambda: bytes([0x80, 200]) + rng.randbytes(30),  # RTCP SR
        lambda: bytes([0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42]) + rng.randbytes(20),  # STUN-ish
        lambda: bytes([0x16, 0xFE, 0xFD]) + rng.randbytes(100),  # DTLS-ish
        lambda: b"",
    ]
    for port in range(low, high + 1):
        for k in range(per_port):
            with contextlib.suppress(OSError):
                sock.sendto(shapes[(port + k) % len(shapes)](), ("127.0.0.1", port))
                tally.sent += 1
    sock.close()


# -- the storm -------------------------------------------------------------------------------------------------------
async def storm(target: Target, args: argparse.Namespace) -> Tally:
    tally = Tally()
    started = time.monotonic()
    sources = {
        name: f"127.0.0.{i + 10}"
        for i, name in enumerate(["raw", "json", "paths", "plugins", "sdp", "dc", "ws", "udp", "slow", "secret"])
    }
    rounds = max(1, round(args.scale))

    async def phase(name: str, source: str, work: Awaitable[None]) -> None:
        if time.monotonic() - started > args.budget:
            tally.notes.append(f"phase {name} skipped: time budget of {args.budget:.0f} s spent")
            work.close()  # type: ignore[attr-defined]
            return
        tally.phase = name
        t0 = time.monotonic()
        sent = tally.sent
        try:
            await work
        except Exception as exc:  # the bench reports, it does not stop at a server's odd answer
            tally.notes.append(f"phase {name}: bench error {type(exc).__name__}: {exc}"[:300])
        tally.phase_time[name] = time.monotonic() - t0
        tally.phase_sent[name] = tally.sent - sent
        if not target.alive():
            tally.notes.append(f"server DIED during phase {name}")
            return
        tally.phase = "probe"
        await probe(target, "127.0.0.1", tally)
        await probe(target, sources[source], tally)

    # Raw HTTP, 32 at a time.
    async def raw_phase() -> None:
        cases = list(raw_cases(target.port)) * rounds
        limit = asyncio.Semaphore(32)

        async def one(data: bytes | list[bytes], complete: bool) -> None:
            async with limit:
                await raw_exchange(target, sources["raw"], data, tally, complete=complete)

        await asyncio.gather(*(one(d, c) for d, c in cases))

    async def slow_phase() -> None:
        holder = asyncio.get_running_loop().create_task(slow_requests(target, sources["slow"], tally, 12, 60))
        await asyncio.sleep(3)
        await probe(target, "127.0.0.1", tally)  # while the slow requests are held
        await holder

    async def json_phase() -> None:
        api = Api(target, sources["json"], tally, 24)
        try:
            for text in list(raw_json_cases()) * rounds:
                for path in ("", "/1"):
                    await api.post(path, text)

            async def send(api: Api, session: int, handle: int, case: tuple[str, JSON]) -> None:
                path, body = case
                await api.post(path.replace("{s}", str(session)), body)

            session, handle = await api.session(STREAMING)
            cases = list(janus_field_cases(session, handle)) * rounds
            await asyncio.gather(*(send(api, session, handle, c) for c in cases))
            await api.call(f"/{session}", {"janus": "destroy"})
            # The same with paths naming sessions that do not exist.
            ghost = list(janus_field_cases(session + 1_000_003, handle + 1_000_003))[::3]
            await asyncio.gather(*(send(api, session, handle, c) for c in ghost))
        finally:
            await api.close()

    async def paths_phase() -> None:
        api = Api(target, sources["paths"], tally, 24)
        try:
            session, handle = await api.session(STREAMING)
            for _ in range(rounds):
                await asyncio.gather(*(api.raw(m, p, d) for m, p, d in path_cases(session, handle)))
            await api.call(f"/{session}", {"janus": "destroy"})
        finally:
            await api.close()

    async def plugins_phase() -> None:
        api = Api(target, sources["plugins"], tally, 16)
        try:
            # One valid mountpoint to watch and one valid room, for the requests that name them.
            owner, owner_h = await api.session(STREAMING)
            await api.call(f"/{owner}/{owner_h}", {"janus": "message", "body": agent_create_body("storm-mp")})
            keeper = asyncio.get_running_loop().create_task(keep_polling(api, owner))

            async def send(api: Api, session: int, handle: int, body: JSON) -> None:
                await api.post(
                    f"/{session}/{handle}", {"janus": "message", "transaction": "t", "apisecret": SECRET, "body": body}
                )

            for _ in range(rounds):
                await run_batches(api, STREAMING, list(plugin_body_cases(STREAMING_BODIES)), send)
                await run_batches(api, STREAMING, list(streaming_create_cases(f"c{_}-")), send)
                await run_batches(api, TEXTROOM, list(plugin_body_cases(TEXTROOM_BODIES)), send)
                # `setup` and `ack` make peer connections: a few, not hundreds.
                await run_batches(api, TEXTROOM, [{"request": "setup", "x": v} for v in WRONG[:6]], send, 1)
                await run_batches(api, TEXTROOM, [{"request": "ack"}, {"request": "ack", "x": 1}], send, 1)
                # The whole body of the wrong type.
                for value in WRONG:
                    session, handle = await api.session(STREAMING)
                    tally.sent += 1
                    await api.post(
                        f"/{session}/{handle}",
                        {"janus": "message", "transaction": "t", "apisecret": SECRET, "body": value},
                    )
                    await api.call(f"/{session}", {"janus": "destroy"})
            keeper.cancel()
            await api.call(f"/{owner}", {"janus": "destroy"})
        finally:
            await api.close()

    async def sdp_phase() -> None:
        api = Api(target, sources["sdp"], tally, 8)
        try:
            owner, owner_h = await api.session(STREAMING)
            await api.call(f"/{owner}/{owner_h}", {"janus": "message", "body": agent_create_body("storm-sdp")})
            keeper = asyncio.get_running_loop().create_task(keep_polling(api, owner))
            limit = asyncio.Semaphore(6)

            async def streaming_answer(jsep: Any) -> None:
                async with limit:
                    session, handle = await api.session(STREAMING)
                    path = f"/{session}/{handle}"
                    await api.call(
                        path, {"janus": "message", "body": {"request": "watch", "id": "storm-sdp", "pin": "stormpin"}}
                    )
                    await api.poll_event(session, lambda e: "jsep" in e or "error" in json.dumps(e), 5)
                    await api.post(
                        path,
                        {
                            "janus": "message",
                            "transaction": "t",
                            "apisecret": SECRET,
                            "body": {"request": "start"},
                            "jsep": jsep,
                        },
                    )
                    await api.call(f"/{session}", {"janus": "destroy"})

            async def textroom_answer(jsep: Any, offer: bool) -> None:
                async with limit:
                    session, handle = await api.session(TEXTROOM)
                    path = f"/{session}/{handle}"
                    if offer:
                        await api.post(
                            path,
                            {
                                "janus": "message",
                                "transaction": "t",
                                "apisecret": SECRET,
                                "body": {"request": "setup"},
                                "jsep": {**jsep, "type": "offer"} if isinstance(jsep, dict) else jsep,
                            },
                        )
                    else:
                        await api.call(path, {"janus": "message", "body": {"request": "setup"}})
                        await api.poll_event(session, lambda e: "jsep" in e, 5)
                        await api.post(
                            path,
                            {
                                "janus": "message",
                                "transaction": "t",
                                "apisecret": SECRET,
                                "body": {"request": "ack"},
                                "jsep": jsep,
                            },
                        )
                    await api.call(f"/{session}", {"janus": "destroy"})

            for _ in range(rounds):
                await asyncio.gather(
                    *(streaming_answer(j) for j in BAD_JSEPS),
                    *(textroom_answer(j, False) for j in BAD_JSEPS),
                    *(textroom_answer(j, True) for j in BAD_JSEPS[:10]),
                )
            keeper.cancel()
            await api.call(f"/{owner}", {"janus": "destroy"})
        finally:
            await api.close()

    async def ws_phase() -> None:
        if not target.ws_port:
            return
        key = base64.b64encode(os.urandom(16)).decode()
        limit = asyncio.Semaphore(48)

        async def one(handshake: bytes, frames: bytes, expect: str | None) -> None:
            async with limit:
                await ws_exchange(target, sources["ws"], handshake, frames, tally, expect)

        bad_handshakes = [
            ws_handshake(target, None),
            ws_handshake(target, key, version="8"),
            ws_handshake(target, "short"),
            ws_handshake(target, key, proto="nope"),
            ws_handshake(target, key).replace(b"Upgrade: websocket", b"Upgrade: \xff"),
        ]
        jobs = [one(h, b"", None) for h in bad_handshakes]
        for _ in range(rounds):
            jobs += [one(ws_handshake(target, key), frames, "alive") for frames in ws_garbage()]
        await asyncio.gather(*jobs)
        json_cases = [c for c in raw_json_cases()]
        session_cases = []
        for i, (_path, body) in enumerate(janus_field_cases(1, 1)):
            if body.get("transaction") == "t":
                body = {**body, "transaction": f"wsj{i}x"}
            session_cases.append(json.dumps(body).encode())
        await ws_json_session(target, sources["ws"], (json_cases + session_cases[::2]) * rounds, tally)

    async def udp_phase() -> None:
        await asyncio.get_running_loop().run_in_executor(None, udp_storm, target, sources["udp"], tally, 8 * rounds)

    async def secret_phase() -> None:
        api = Api(target, sources["secret"], tally, 16)
        try:
            wrong: list[Any] = ["wrong", "", SECRET + "x", SECRET.upper(), SECRET[:-1], *WRONG]
            jobs = []
            for _ in range(rounds * 8):
                for value in wrong:
                    jobs.append(api.post("", {"janus": "create", "transaction": "t", "apisecret": value}))
                jobs.append(api.raw("GET", f"/{odd_session(1)}?apisecret=wrong"))
            await asyncio.gather(*jobs)
            owner, owner_h = await api.session(STREAMING)
            for value in wrong[:8]:
                await api.post(
                    f"/{owner}/{owner_h}",
                    {
                        "janus": "message",
                        "transaction": "t",
                        "apisecret": SECRET,
                        "body": {"request": "destroy", "id": "x", "secret": value},
                    },
                )
            # Now the right secret from the same address: a lockout here is a lockout of the real agent.
            t0 = time.monotonic()
            status, reply = await api.post(
                "", {"janus": "create", "transaction": "t", "apisecret": SECRET}, count=False
            )
            took = time.monotonic() - t0
            verdict = reply.get("janus") if isinstance(reply, dict) else reply
            tally.notes.append(
                f"right secret after {len(jobs)} wrong ones, same address: HTTP {status} {verdict} in {took:.2f} s"
                + ("  <-- LOCKED OUT" if verdict != "success" else "")
            )
        finally:
            await api.close()

    await probe(target, "127.0.0.1", tally)
    await phase("raw HTTP", "raw", raw_phase())
    await phase("slow requests", "slow", slow_phase())
    await phase("JSON", "json", json_phase())
    await phase("paths", "paths", paths_phase())
    await phase("plugin bodies", "plugins", plugins_phase())
    await phase("SDP", "sdp", sdp_phase())
    await phase("data channel", "dc", data_channel_storm(target, sources["dc"], tally, rounds))
    await phase("WebSocket", "ws", ws_phase())
    await phase("UDP", "udp", udp_phase())
    await phase("wrong secrets", "secret", secret_phase())
    tally.phase_time["total"] = time.monotonic() - started
    return tally


# -- log analysis ----------------------------------------------------------------------------------------------------
def log_causes(text: str) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """(exception type and innermost frame → count, other frequent warning/error lines → count)."""
    causes: collections.Counter[str] = collections.Counter()
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("Traceback (most recent call last):"):
            frame = ""
            j = i + 1
            while j < len(lines) and (lines[j].startswith(" ") or lines[j] == ""):
                match = re.match(r'\s+File "([^"]+)", line (\d+), in (\S+)', lines[j])
                if match:
                    path = match.group(1).split("site-packages/")[-1].replace(str(ROOT) + "/", "")
                    frame = f"{path}:{match.group(2)} in {match.group(3)}"
                j += 1
            exc = lines[j].split(":", 1)[0] if j < len(lines) else "?"
            causes[f"{exc} at {frame}"] += 1
            i = j + 1
            continue
        i += 1
    other: collections.Counter[str] = collections.Counter()
    for line in lines:
        if re.search(r"\b(ERROR|WARNING|CRITICAL|\[ERR\]|\[WARN\])", line):
            other[
                re.sub(r"\d+", "N", line.split(": ", 1)[-1] if " apuppet" in line or " aio" in line else line)[:140]
            ] += 1
    return causes, other


def report(target: Target, tally: Tally, log_text: str, rss: float) -> None:
    s5xx = sum(n for code, n in tally.status.items() if code >= 500)
    print(f"\n== {target.name} ==")
    print(f"inputs sent: {tally.sent}")
    print(f"HTTP answers: {sum(tally.status.values())}  ({dict(sorted(tally.status.items()))})")
    print(f"HTTP 5xx: {s5xx}  by phase: {dict(tally.phase_5xx)}")
    print(f"closed without an answer (raw garbage): {tally.closed}")
    unanswered = tally.unanswered + tally.dc_unanswered + tally.probe_unanswered
    print(
        f"requests unanswered after {UNANSWERED_AFTER:.0f} s: {unanswered}  (hostile complete requests "
        f"{tally.unanswered}, probes {tally.probe_unanswered}/{tally.probes}, data-channel valid requests "
        f"{tally.dc_unanswered}/{tally.dc_valid}); by phase: {dict(tally.phase_unanswered)}"
    )
    print(f"valid probes refused: {tally.probe_refused}")
    print(
        f"total time: {tally.phase_time.get('total', 0):.1f} s  phases: "
        + ", ".join(f"{k} {v:.1f}" for k, v in tally.phase_time.items() if k != "total")
    )
    print("inputs by phase: " + ", ".join(f"{k} {v}" for k, v in tally.phase_sent.items()))
    print(f"server RSS after: {rss:.0f} MB; alive at the end: {tally.alive}")
    print(f"log written: {len(log_text.splitlines())} lines, {len(log_text.encode())} bytes")
    for note, n in collections.Counter(tally.notes).most_common(20):
        print(f"  note ({n}x): {note}")
    causes, other = log_causes(log_text)
    if causes:
        print("exceptions in the log (type at innermost frame):")
        for cause, n in causes.most_common(30):
            print(f"  {n:6d}  {cause}")
    print("most frequent warning/error lines:")
    for line, n in other.most_common(12):
        print(f"  {n:6d}  {line}")


async def run(args: argparse.Namespace) -> None:
    # Writes to connections the server closed on purpose are expected here.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    # Loopback only: the bench's own ICE agents offer 127.0.0.1 and nothing else.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    for name in args.targets.split(","):
        folder = Path(tempfile.mkdtemp(prefix=f"storm-{name}-"))
        target = start_apuppet(folder) if name == "apuppet" else start_janus(folder)
        try:
            idle = target.rss_mb()
            tally = await storm(target, args)
            await asyncio.sleep(1)
            rss = target.rss_mb()
            tally.alive = target.alive()
            print(f"\n[{name}] idle RSS before the storm: {idle:.0f} MB")
        finally:
            target.stop()
        log_text = target.log.read_text(errors="replace")
        report(target, tally, log_text, rss)
        if args.keep_logs:
            Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
            shutil.copy(target.log, Path(args.keep_logs) / target.log.name)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="apuppet,janus")
    parser.add_argument("--scale", type=float, default=2.0, help="repeat every case this many times (rounded)")
    parser.add_argument("--budget", type=float, default=400.0, help="seconds after which no new phase starts")
    parser.add_argument("--keep-logs", default="", help="copy each server's log into this folder")
    asyncio.run(run(parser.parse_args()))
