"""The video relay's figures, against the real Janus when it is installed. Not a test: it prints.

For each server (apuppet, apuppet with aiortc's public `av.Packet` route, and Debian's `janus` configured as
aPuppet configures it: streaming and textroom plugins, `string_ids = true`), in its own process, reached over
the Janus HTTP API like the agent and the web-admin do:

* a source sends a pre-encoded libx264 clip (1.5 Mbit/s, 30 fps, keyframe every second, RFC 6184 packets,
  PT 96) to a mountpoint made with the agent's `create` body;
* N = 1, 10, 50 aiortc viewers watch it (real ICE, DTLS, SRTP; they do not decode, to keep this process light);
* relay latency: the time from a packet's `sendto` at the source to its arrival in a viewer's RTP receiver
  (SRTP removed), matched by payload; p50/p99 over all viewers;
* lost packets: gaps in each viewer's sequence numbers (loopback: there should be none);
* server CPU (user+system, % of one core) and RSS over the measuring window;
* first-frame time: `watch` → first decoded picture, for a new decoding viewer, 5 times.

    python bench/relay.py [--viewers 1,10,50] [--seconds 8] [--targets apuppet,apuppet-packet,janus]

The Janus mountpoint gets `videofmtp "profile-level-id=42e01f;packetization-mode=1"` on top of the agent's
body: without it Janus' offer has no fmtp and aiortc (unlike browsers) refuses H.264 packetization mode 0.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import fractions
import multiprocessing
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apuppet.media.encoder import H264Encoder  # noqa: E402
from apuppet.media.h264 import AccessUnit, H264Packetizer  # noqa: E402
from apuppet.media.rtp import RtpPacket  # noqa: E402

JSON = dict[str, Any]
SECRET = "benchsecret"
FPS = 30
BITRATE = 1_500_000
SIZE = (1280, 720)
CLIP_SECONDS = 10


# -- the servers -------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_apuppet(port: int, rtp_range: str, packet_route: bool) -> None:
    """`--serve`: an apuppet server in this process (run as a child of the bench)."""
    from apuppet.config import Config
    from apuppet.runtime import serve_until_signal
    from apuppet.server import Server

    if packet_route:
        from apuppet.plugins import streaming

        streaming.Viewer = PacketViewer  # type: ignore[misc]
    config = Config(
        web_http_port=port,
        api_http=False,
        api_https=False,
        api_wss=False,
        is_nginx_enabled=False,
        is_certbot_enabled=False,
        bind="127.0.0.1",
        api_secret=SECRET,
        admin_secret="benchadmin",
        rtp_port_range=rtp_range,
        log_level="warning",
        max_peers_per_address=0,  # up to 50 viewers, all from 127.0.0.1
    )
    server = Server(config)
    if os.environ.get("BENCH_PROFILE"):  # where the server's time goes: BENCH_PROFILE=/tmp/relay.prof
        import cProfile

        cProfile.runctx("asyncio.run(serve_until_signal(server.start, server.stop))", globals(), locals(),
                        os.environ["BENCH_PROFILE"])  # fmt: skip
        return
    asyncio.run(serve_until_signal(server.start, server.stop))


JANUS_CONFIG = {
    "janus.jcfg": """general: {{
    configs_folder = "{dir}"
    plugins_folder = "/usr/lib/x86_64-linux-gnu/janus/plugins"
    transports_folder = "/usr/lib/x86_64-linux-gnu/janus/transports"
    events_folder = "/usr/lib/x86_64-linux-gnu/janus/events"
    loggers_folder = "/usr/lib/x86_64-linux-gnu/janus/loggers"
    debug_level = 2
    api_secret = "{secret}"
}}
media: {{ }}
nat: {{ ice_ignore_list = "vmnet" }}
plugins: {{ disable = "{plugins}" }}
transports: {{ disable = "libjanus_websockets.so,libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,\
libjanus_rabbitmq.so" }}
events: {{ broadcast = false }}
loggers: {{ disable = "libjanus_jsonlog.so" }}
""",
    "janus.transport.http.jcfg": """general: {{ json = "plain" base_path = "/janus" http = true port = {port}
https = false }}
admin: {{ admin_http = false }}
""",
    "janus.plugin.streaming.jcfg": 'general: {{ rtp_port_range = "{rtp_range}" string_ids = true }}\n',
    "janus.plugin.textroom.jcfg": 'general: {{ json = "indented" string_ids = true }}\n',
}
JANUS_DISABLED = ",".join(
    f"libjanus_{p}.so"
    for p in ("audiobridge", "duktape", "echotest", "lua", "nosip", "recordplay", "sip", "videocall", "videoroom")
    + ("voicemail",)
)


def start_server(target: str, port: int, rtp_range: str, workdir: Path) -> subprocess.Popen[bytes]:
    if target == "janus":
        folder = workdir / "janus"
        folder.mkdir(exist_ok=True)
        for name, text in JANUS_CONFIG.items():
            body = text.format(dir=folder, secret=SECRET, plugins=JANUS_DISABLED, port=port, rtp_range=rtp_range)
            (folder / name).write_text(body)
        cmd = ["janus", "-F", str(folder), "-C", str(folder / "janus.jcfg")]
    else:
        cmd = [sys.executable, __file__, "--serve", str(port), rtp_range]
        if target == "apuppet-packet":
            cmd.append("--packet-route")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(workdir / f"{target}.log", "wb"))


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- the wire: packets timestamped by the kernel as they leave on loopback -------------------------------------------
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4


def sniff(video_port: int, seconds: float, out: Any) -> None:
    """Child process: every RTP packet sent on `lo` for `seconds`, as (time, to_ingest, ssrc, seq, ts, marker).

    Packets to `video_port` are the source's; any other RTP is a server's output to a viewer (the header of an
    SRTP packet is in clear). Kernel timestamps make the figures independent of how fast this bench reads.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
    # SO_RCVBUFFORCE (root) past net.core.rmem_max: a sniffer that falls behind must not drop what it measures.
    sock.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("lo", 0))
    sock.settimeout(0.2)
    records = []
    end = time.time() + seconds
    while time.time() < end:
        try:
            frame, anc, _, addr = sock.recvmsg(2048, socket.CMSG_SPACE(16))
        except TimeoutError:
            continue
        if addr[2] != PACKET_OUTGOING:
            continue
        ethertype = frame[12:14]
        if ethertype == b"\x08\x00" and frame[23] == 17:
            udp = 14 + (frame[14] & 0x0F) * 4
        elif ethertype == b"\x86\xdd" and frame[20] == 17:
            udp = 54
        else:
            continue
        dport = int.from_bytes(frame[udp + 2 : udp + 4], "big")
        rtp = frame[udp + 8 :]
        if len(rtp) < 12 or rtp[0] >> 6 != 2 or 192 <= rtp[1] <= 223:
            continue
        stamp = next(struct.unpack("qq", d[:16]) for level, kind, d in anc if kind == SO_TIMESTAMPNS)
        records.append(
            (
                stamp[0] + stamp[1] / 1e9,
                dport == video_port,
                int.from_bytes(rtp[8:12], "big"),
                int.from_bytes(rtp[2:4], "big"),
                int.from_bytes(rtp[4:8], "big"),
                rtp[1] >> 7,
            )
        )
    out.send(records)
    out.close()


def relay_latencies(records: list[tuple[float, bool, int, int, int, int]]) -> tuple[list[float], list[float], int]:
    """Per packet (i-th packet of a frame in → i-th out, when both have as many) and per frame (marker in →
    marker out) latencies in ms over all viewers, and the packets missing from the viewers' sequences."""
    frames_in: dict[int, list[float]] = {}
    for t, to_ingest, _, _, ts, _ in records:
        if to_ingest:
            frames_in.setdefault(ts, []).append(t)
    starts = sorted((times[0], ts) for ts, times in frames_in.items())
    start_times = [t for t, _ in starts]
    streams: dict[int, list[tuple[float, int, int]]] = {}
    for t, to_ingest, ssrc, seq, ts, _ in records:
        if not to_ingest:
            streams.setdefault(ssrc, []).append((t, seq, ts))
    per_packet: list[float] = []
    per_frame: list[float] = []
    lost = 0
    for packets in streams.values():
        frames_out: dict[int, list[float]] = {}
        for t, _, ts in packets:
            frames_out.setdefault(ts, []).append(t)
        seqs = [seq for _, seq, _ in packets]
        lost += sum(step - 1 for a, b in zip(seqs, seqs[1:], strict=False) if 1 < (step := (b - a) & 0xFFFF) < 1000)
        # The timestamp offset of this viewer: most of its frames map to the newest input frame begun before
        # their first packet left (the relay takes well under a frame interval), so take the commonest offset.
        votes: dict[int, int] = {}
        for ts_out, times_out in frames_out.items():
            index = bisect.bisect_right(start_times, times_out[0]) - 1
            if index >= 0:
                key = (ts_out - starts[index][1]) & 0xFFFFFFFF
                votes[key] = votes.get(key, 0) + 1
        if not votes:
            continue
        offset = max(votes, key=lambda k: votes[k])
        for ts_out, times_out in frames_out.items():
            times_in = frames_in.get((ts_out - offset) & 0xFFFFFFFF)
            if not times_in:
                continue
            per_frame.append((times_out[-1] - times_in[-1]) * 1000)
            if len(times_in) == len(times_out):
                per_packet += [(o - i) * 1000 for i, o in zip(times_in, times_out, strict=True)]
    return per_packet, per_frame, lost


# -- the Janus HTTP client ---------------------------------------------------------------------------------------
class Janus:
    """One Janus session with one plugin handle, over HTTP with a long-poll task."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.session = 0
        self.handle = 0
        self.events: list[JSON] = []
        self.arrived = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None

    async def post(self, path: str, body: JSON) -> JSON:
        body = {"transaction": os.urandom(6).hex(), "apisecret": SECRET, **body}
        async with self.http.post(self.base + path, json=body) as reply:
            return await reply.json(content_type=None)

    async def open(self, plugin: str = "janus.plugin.streaming") -> None:
        self.session = (await self.post("", {"janus": "create"}))["data"]["id"]
        self.handle = (await self.post(f"/{self.session}", {"janus": "attach", "plugin": plugin}))["data"]["id"]
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        url = f"{self.base}/{self.session}?apisecret={SECRET}&maxev=10"
        while True:
            try:
                async with self.http.get(url, timeout=aiohttp.ClientTimeout(total=65)) as reply:
                    data = await reply.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.2)
                continue
            for event in data if isinstance(data, list) else [data]:
                if event.get("janus") != "keepalive":
                    self.events.append(event)
            self.arrived.set()

    async def message(self, body: JSON, jsep: JSON | None = None) -> JSON:
        msg: JSON = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        return await self.post(f"/{self.session}/{self.handle}", msg)

    async def event(self, predicate: Callable[[JSON], bool], timeout: float = 20.0) -> JSON:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if predicate(ev):
                    return self.events.pop(i)
            self.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no such event; got {self.events!r}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        with contextlib.suppress(Exception):
            await self.post(f"/{self.session}", {"janus": "destroy"})


def data_of(event: JSON) -> JSON:
    return event.get("plugindata", {}).get("data", {})


# -- source ------------------------------------------------------------------------------------------------------
def encode_clip() -> list[AccessUnit]:
    """Ten seconds of busy 720p (moving noise and bars) at 1.5 Mbit/s: a screen being scrolled."""
    rng = np.random.default_rng(7)
    w, h = SIZE
    noise = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    enc = H264Encoder(w, h, fps=FPS, bitrate=BITRATE, keyframe_interval=1.0)
    units = []
    for i in range(CLIP_SECONDS * FPS):
        img = np.roll(noise, i * 7, axis=0)
        img[:, (i * 13) % w : (i * 13) % w + 60] = 255
        units += enc.encode(img)
    return units


class Source:
    """Sends the clip at 30 fps, forever, with continuous RTP numbering."""

    def __init__(self, units: list[AccessUnit], port: int) -> None:
        self.units = units
        self.addr = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)
        self.packetizer = H264Packetizer(ssrc=0x5EED, payload_type=96, sequence_number=32)
        self.packets = 0
        self.bytes = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        frame = 0
        period = len(self.units)
        span = self.units[-1].timestamp + 90_000 // FPS
        while True:
            unit = self.units[frame % period]
            ts = unit.timestamp + (frame // period) * span
            for packet in self.packetizer.packetize(unit.data, ts):
                self.sock.sendto(packet, self.addr)
                self.packets += 1
                self.bytes += len(packet)
            frame += 1
            await asyncio.sleep(max(0.0, start + frame / FPS - loop.time()))


# -- viewers ------------------------------------------------------------------------------------------------------
class BenchViewer:
    """A watching aiortc peer. `decode=False` records packets in the RTP receiver and decodes nothing."""

    def __init__(self, http: aiohttp.ClientSession, base: str, decode: bool) -> None:
        self.janus = Janus(http, base)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.decode = decode
        self.first_frame = asyncio.get_running_loop().create_future()
        self._reader: asyncio.Task[None] | None = None
        self.pc.on("track", self._track)

    def _track(self, track: MediaStreamTrack) -> None:
        if self.decode:
            self._reader = asyncio.get_running_loop().create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(Exception):
            await track.recv()
            if not self.first_frame.done():
                self.first_frame.set_result(time.perf_counter())
            while True:
                await track.recv()

    async def watch(self, mp_id: str, pin: str, fmtp_fix: bool) -> float:
        await self.janus.open()
        asked = time.perf_counter()
        await self.janus.message({"request": "watch", "id": mp_id, "pin": pin})
        offer = await self.janus.event(lambda e: "jsep" in e)
        sdp = offer["jsep"]["sdp"]
        if fmtp_fix and "packetization-mode" not in sdp:
            raise RuntimeError("the server's offer has no packetization-mode=1")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        if not self.decode:
            # SRTP is still removed, but nothing is buffered or decoded: 50 viewers fit in this process.
            async def ignore(packet: RtpPacket, arrival_time_ms: int) -> None:
                pass

            self.pc.getTransceivers()[0].receiver._handle_rtp_packet = ignore  # type: ignore[method-assign]
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        answer = {"type": "answer", "sdp": self.pc.localDescription.sdp}
        await self.janus.message({"request": "start"}, answer)
        return asked

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()
        await self.janus.close()


# -- aiortc's public av.Packet route, for comparison (used by `--serve --packet-route`) ---------------------------
class PacketTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[AccessUnit] = asyncio.Queue(maxsize=120)
        self.base: int | None = None

    def put(self, unit: AccessUnit) -> None:
        if self.base is None and not unit.keyframe:
            return
        if self.queue.full():
            return
        self.queue.put_nowait(unit)

    async def recv(self) -> av.Packet:
        unit = await self.queue.get()
        if self.base is None:
            self.base = unit.timestamp
        packet = av.Packet(unit.data)
        packet.pts = (unit.timestamp - self.base) & 0xFFFFFFFF
        packet.time_base = fractions.Fraction(1, 90_000)
        return packet


def _packet_viewer_class() -> type:
    from apuppet.media.viewer import Viewer

    class PacketViewerImpl(Viewer):
        """Relays through aiortc's sender: access units as `av.Packet`s, re-packetized per viewer."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.packets_track = PacketTrack()
            self.sender.replaceTrack(self.packets_track)
            self._listening = False

        def _join(self) -> None:
            if self.closed or self.paused or self.pc.connectionState != "connected" or self._listening:
                return
            self._listening = True
            self.ingest.relay.unit_listeners.append(self._unit)

        def _unit(self, unit: AccessUnit) -> None:
            self.packets_track.put(unit)
            if not self.started and self.packets_track.base is not None and self.on_started is not None:
                self.started = True
                self.on_started()

        def _detach(self) -> None:
            if self._listening:
                self._listening = False
                self.ingest.relay.unit_listeners.remove(self._unit)
            super()._detach()

    return PacketViewerImpl


class _Lazy:
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _packet_viewer_class()(*args, **kwargs)


PacketViewer = _Lazy()


# -- the workload ---------------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def run_target(target: str, args: argparse.Namespace, clip: list[AccessUnit], workdir: Path) -> dict[str, Any]:
    port = free_port()
    rtp_low = 30000 + 2000 * ["apuppet", "apuppet-packet", "janus"].index(target)
    proc = start_server(target, port, f"{rtp_low}-{rtp_low + 999}", workdir)
    if args.pin and len(os.sched_getaffinity(0)) > 1:
        # The server alone on one core, this bench (source, viewers, sniffer) on the others: the figures are
        # then the server's, not the scheduler's.
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(proc.pid, {cores[-1]})
        os.sched_setaffinity(0, set(cores[:-1]))
    base = f"http://127.0.0.1:{port}/janus"
    results: dict[str, Any] = {"target": target, "rows": []}
    viewers: list[BenchViewer] = []
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.post(base, json={"janus": "ping", "transaction": "p"}) as r:
                    if r.status == 200:
                        break
            await asyncio.sleep(0.1)
        agent = Janus(http, base)
        await agent.open()
        body = {
            "request": "create", "type": "rtp", "description": "48213077", "permanent": False,
            "is_private": False, "audio": False, "video": True, "data": False, "id": "48213077",
            "name": "48213077", "pin": "4321", "audioport": 0, "audiopt": 0, "videoport": 0, "videopt": 100,
            "videortpmap": "H264/90000", "videobufferkf": False,
        }  # fmt: skip
        if target == "janus":
            body["videofmtp"] = "profile-level-id=42e01f;packetization-mode=1"
        created = data_of(await agent.message(body))
        source = Source(clip, created["stream"]["video_port"])
        sending = asyncio.get_running_loop().create_task(source.run())
        try:
            await asyncio.sleep(2.0)
            first: list[float] = []
            for _ in range(args.first_frames):
                probe = BenchViewer(http, base, decode=True)
                asked = await probe.watch("48213077", "4321", fmtp_fix=True)
                try:
                    first.append(await asyncio.wait_for(probe.first_frame, 10) - asked)
                except TimeoutError:
                    first.append(float("inf"))
                await probe.close()
                await asyncio.sleep(0.3)
            results["first_frame_ms"] = [f * 1000 for f in first]
            for count in args.viewers:
                while len(viewers) < count:
                    viewer = BenchViewer(http, base, decode=False)
                    await viewer.watch("48213077", "4321", fmtp_fix=True)
                    viewers.append(viewer)
                await asyncio.sleep(3.0)
                parent, child = multiprocessing.Pipe(duplex=False)
                sniffer = multiprocessing.Process(target=sniff, args=(source.addr[1], args.seconds, child))
                sniffer.start()
                cpu0, t0 = proc_cpu_seconds(proc.pid), time.perf_counter()
                await asyncio.sleep(args.seconds)
                cpu1, t1 = proc_cpu_seconds(proc.pid), time.perf_counter()
                records = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
                sniffer.join()
                per_packet, per_frame, lost = relay_latencies(records)
                row = {
                    "viewers": count,
                    "p50_ms": statistics.median(per_packet) if per_packet else float("nan"),
                    "p99_ms": percentile(per_packet, 0.99) if per_packet else float("nan"),
                    "frame_p50_ms": statistics.median(per_frame) if per_frame else float("nan"),
                    "frame_p99_ms": percentile(per_frame, 0.99) if per_frame else float("nan"),
                    "cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100,
                    "rss_mb": proc_rss_mb(proc.pid),
                    "lost": lost,
                }
                if target != "janus":
                    # Separates packets the server never got (a starved process, a full socket buffer) from ones
                    # it failed to relay.
                    info = data_of(await agent.message({"request": "info", "id": "48213077"}))
                    row["ingest_lost"] = info["info"]["stats"]["lost"]
                results["rows"].append(row)
                print(f"  {target}: {count} viewers: {fmt_row(row)}", flush=True)
        finally:
            sending.cancel()
            for v in viewers:
                await v.close()
            await agent.close()
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
    return results


def fmt_row(row: dict[str, Any]) -> str:
    return (
        f"relay p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms (frame end: p50 {row['frame_p50_ms']:.2f}, "
        f"p99 {row['frame_p99_ms']:.2f} ms), CPU {row['cpu_pct']:.1f} %, "
        f"RSS {row['rss_mb']:.0f} MB, lost {row['lost']} (ingest, cumulative: {row.get('ingest_lost', '-')})"
    )


def report(results: list[dict[str, Any]], clip_mbps: float) -> None:
    print(f"\nsource: {SIZE[0]}x{SIZE[1]} libx264, {clip_mbps:.2f} Mbit/s, {FPS} fps, keyframe every 1 s")
    print(f"medians of {results[0]['runs']} run(s); lost: total over the runs")
    print("\n| server | viewers | packet p50 | packet p99 | frame end p50 | frame end p99 | CPU (% of a core) "
          "| CPU per viewer | RSS | lost |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for res in results:
        for row in res["rows"]:
            per = row["cpu_pct"] / row["viewers"]
            print(
                f"| {res['target']} | {row['viewers']} | {row['p50_ms']:.2f} ms | {row['p99_ms']:.2f} ms | "
                f"{row['frame_p50_ms']:.2f} ms | {row['frame_p99_ms']:.2f} ms | "
                f"{row['cpu_pct']:.1f} | {per:.2f} | {row['rss_mb']:.0f} MB | {row['lost']} |"
            )
    print("\n| server | first frame for a new viewer (watch → decoded picture), median / max |")
    print("|---|---|")
    for res in results:
        ff = res["first_frame_ms"]
        print(f"| {res['target']} | {statistics.median(ff):.0f} ms / {max(ff):.0f} ms |")
    by_name = {r["target"]: r for r in results}
    if "janus" in by_name:
        print("\nratios to Janus (same workload):")
        janus_rows = {row["viewers"]: row for row in by_name["janus"]["rows"]}
        for res in results:
            if res["target"] == "janus":
                continue
            for row in res["rows"]:
                j = janus_rows.get(row["viewers"])
                if j is None:
                    continue
                print(
                    f"  {res['target']} / janus, {row['viewers']} viewers: CPU ×{row['cpu_pct'] / j['cpu_pct']:.1f}, "
                    f"frame-end p50 ×{row['frame_p50_ms'] / j['frame_p50_ms']:.1f}, "
                    f"p99 ×{row['frame_p99_ms'] / j['frame_p99_ms']:.1f}, "
                    f"RSS ×{row['rss_mb'] / j['rss_mb']:.1f}"
                )


async def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    clip = encode_clip()
    clip_mbps = sum(len(u.data) for u in clip) * 8 / CLIP_SECONDS / 1e6
    print(f"clip encoded in {time.perf_counter() - started:.1f} s: {clip_mbps:.2f} Mbit/s", flush=True)
    targets = [t for t in args.targets if t != "janus" or shutil.which("janus")]
    if targets != args.targets:
        print("janus is not installed: skipped")
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            # Targets take turns, so that a busy spell of the machine does not fall on one of them only.
            for target in targets[run % len(targets) :] + targets[: run % len(targets)]:
                runs[target].append(await run_target(target, args, clip, Path(tmp)))
    results = [merge_runs(target, done) for target, done in runs.items()]
    report(results, clip_mbps)


def merge_runs(target: str, done: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the runs (the machine may be shared: single runs are noisy)."""
    rows = []
    for i, row in enumerate(done[0]["rows"]):
        merged = {key: statistics.median(run["rows"][i][key] for run in done) for key in row}
        merged["viewers"] = row["viewers"]
        for key in ("lost", "ingest_lost"):
            if key in row:
                merged[key] = sum(run["rows"][i][key] for run in done)
        rows.append(merged)
    first = [f for run in done for f in run["first_frame_ms"]]
    return {"target": target, "rows": rows, "first_frame_ms": first, "runs": len(done)}


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--serve":
        serve_apuppet(int(sys.argv[2]), sys.argv[3], "--packet-route" in sys.argv)
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--viewers", default="1,10,50", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--seconds", default=8.0, type=float, help="measuring window per viewer count")
    parser.add_argument("--first-frames", default=5, type=int)
    parser.add_argument("--runs", default=1, type=int, help="repeat and report medians (for a shared machine)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin the server to its own core")
    parser.add_argument("--targets", default="apuppet,apuppet-packet,janus", type=lambda s: s.split(","))
    asyncio.run(main(parser.parse_args()))
