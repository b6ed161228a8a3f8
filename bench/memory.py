"""Server memory: idle RSS, RSS after N device lifecycles, RSS with D devices each watched by one viewer; apuppet
and Debian's Janus side by side on loopback. Not a test: it prints.

* **idle**: the server process two seconds after it listens.
* **lifecycles**: a simulated device does what the Android agent does (Janus session, textroom handle with a
  real aiortc peer and data channel, room create + join, streaming handle, mountpoint create, half a second of
  RTP/H.264) and then goes away (session destroyed, peer closed); N of them, 4 at a time; every N/3, RSS read
  every 0.5 s for 10 s (`--window`), median and highest.
* **devices**: D devices (mountpoint, no textroom: the video is what costs) sending 1 Mbit/s of RTP/H.264 each,
  every one watched by one aiortc viewer (real ICE, DTLS, SRTP; no decoding) in a separate process; after 10 s of
  streaming, RSS read every 0.5 s for 10 s, median and highest (it swings with the GOPs and the heap trims).

The H.264 is encoded once, here, with PyAV's libx264 (640x360, 30 fps, 1 Mbit/s, keyframe every second, moving
noise so that the rate control spends the budget), and sent as RFC 6184 packets from a real UDP socket.

    python bench/memory.py [--targets apuppet,janus] [--lifecycles 300] [--devices 100]
    python bench/memory.py --targets apuppet --diagnose   # tracemalloc and gc diff in the server, malloc_trim
    python bench/memory.py --targets apuppet --undo pyav,certificate,history   # as before those changes
    # ... and as before the second round's (docs/benchmarks.md, Memory):
    python bench/memory.py --targets apuppet --undo tuples,joined,keep-previous-gop,parsed-gop,late-drop
    # ... and as before the third's (the WebRTC stack imported at start-up; no heap trimming):
    python bench/memory.py --targets apuppet --undo lazy-stack,trim
    python bench/memory.py --targets apuppet --lifecycles 0 --repeat 3   # 3 servers in a row: the spread

`--env MALLOC_ARENA_MAX=2` (repeatable) sets variables for the apuppet process. `--diagnose` starts apuppet
with tracemalloc and a SIGUSR1 handler that writes, to a file the bench prints, the top allocation growth since
the previous dump, the object counts that grew, and the RSS before and after `malloc_trim(0)`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aioice.ice

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from apuppet.config import Config  # noqa: E402
from bench.storm import (  # noqa: E402
    STREAMING,
    TEXTROOM,
    Api,
    Tally,
    Target,
    agent_create_body,
    keep_polling,
    only_loopback,
    start_apuppet,
    start_janus,
)

JSON = dict[str, Any]
FPS = 30
SIZE = (640, 360)
BITRATE = 1_000_000
CLIP_SECONDS = 2

# The diagnostic hook, run inside `apuppet serve` with --diagnose: SIGUSR1 writes a report to $MEMORY_DIAG.
DIAGNOSE = """
import ctypes, gc, os, signal, sys, tracemalloc, collections
if os.environ.get("MEMORY_TRACE"):
    tracemalloc.start(12)
state = {"snap": tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None, "types": collections.Counter()}
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
def dump(signum, frame):
    gc.collect()
    out = open(os.environ["MEMORY_DIAG"], "a")
    snap = tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None
    traced, peak = tracemalloc.get_traced_memory()
    out.write(f"== dump: RSS {rss()} MB, traced {traced/2**20:.1f} MB (peak {peak/2**20:.1f}), ")
    out.write(f"gc counts {gc.get_count()}, objects {len(gc.get_objects())}\\n")
    if snap is not None:
        for stat in snap.compare_to(state["snap"], os.environ.get("MEMORY_GROUP", "traceback"))[:12]:
            out.write(f"  {stat.size_diff/1024:+.0f} KiB {stat.count_diff:+d} blocks\\n")
            for line in stat.traceback.format()[-6:]:
                out.write(f"      {line}\\n")
    types = collections.Counter(type(o).__name__ for o in gc.get_objects())
    grew = [(k, types[k] - state["types"].get(k, 0)) for k in types]
    grew.sort(key=lambda x: -x[1])
    out.write("  object counts that grew: " + ", ".join(f"{k} {d:+d}" for k, d in grew[:12]) + "\\n")
    state["snap"], state["types"] = snap, types
    before = rss()
    import time
    started = time.perf_counter()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    took = (time.perf_counter() - started) * 1000
    out.write(f"  malloc_trim(0): RSS {before} -> {rss()} MB in {took:.1f} ms\\n")
    out.close()
signal.signal(signal.SIGUSR1, dump)
"""


# What `--undo` puts back, to measure a change against what came before it, in the same run's conditions.
UNDO = {
    # PyAV imported before `apuppet serve` chooses: aiortc then runs on PyAV instead of its stand-in.
    "pyav": "import av\n",
    # A DTLS certificate and OpenSSL context per peer connection, as aiortc makes them.
    "certificate": "from apuppet.media import peers\npeers.Peers.certificate = lambda self: None\n",
    # Third round: the WebRTC stack imported at start-up, and no heap trimming.
    "lazy-stack": "from apuppet.media import avstandin, peers\navstandin.install()\npeers.import_stack()\n",
    "trim": "import apuppet.server.heap as heap\nheap.malloc_trim = lambda: None\n",
    # A copy of every packet sent in each viewer's NACK history.
    "history": """
import apuppet.media.relay as relay
from apuppet.media.rtp import pack_header, ts_diff
_init = relay.RelayViewer.__init__
def __init__(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self._history = [None] * relay.HISTORY_SIZE
def _emit(self, seq, ts, marker, payload):
    header = pack_header(self.payload_type, marker, seq, ts, self.ssrc)
    self._history[seq % relay.HISTORY_SIZE] = header + payload
    self.last_seq = seq
    if self.last_ts is None or ts_diff(ts, self.last_ts) > 0:
        self.last_ts = ts
    self.packets += 1
    self.parts(header, payload)
def retransmission(self, seq):
    data = self._history[seq % relay.HISTORY_SIZE]
    return data if data is not None and (data[2] << 8 | data[3]) == seq else None
relay.RelayViewer.__init__ = __init__
relay.RelayViewer._emit = _emit
relay.RelayViewer.retransmission = retransmission
relay.RelayViewer.keep_only = lambda self, payloads: None
""",
    # Each viewer's history as (seq, ts, marker, payload) tuples instead of a packed array beside the payloads.
    "tuples": """
import apuppet.media.relay as relay
from apuppet.media.rtp import pack_header, ts_diff
_init = relay.RelayViewer.__init__
def __init__(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self._tuples = [None] * relay.HISTORY_SIZE
def _emit(self, seq, ts, marker, payload):
    self._tuples[seq % relay.HISTORY_SIZE] = (seq, ts, marker, payload)
    self.last_seq = seq
    if self.last_ts is None or ts_diff(ts, self.last_ts) > 0:
        self.last_ts = ts
    self.packets += 1
    self.parts(pack_header(self.payload_type, marker, seq, ts, self.ssrc), payload)
def retransmission(self, seq):
    kept = self._tuples[seq % relay.HISTORY_SIZE]
    if kept is None or kept[0] != seq:
        return None
    return pack_header(self.payload_type, kept[2], seq, kept[1], self.ssrc) + kept[3]
relay.RelayViewer.__init__ = __init__
relay.RelayViewer._emit = _emit
relay.RelayViewer.retransmission = retransmission
relay.RelayViewer.keep_only = lambda self, payloads: None
""",
    # Packets joined (header + payload) when the relay emits them, and queued joined in the outbox.
    "joined": """
import apuppet.media.ingest as ingest
from apuppet.media.relay import RelayViewer
def viewer(self, ssrc, payload_type, send):
    outbox = self._outbox
    return RelayViewer(ssrc, payload_type, lambda data: outbox.append((send, data, b"")))
ingest.RtpIngest.viewer = viewer
""",
    # The kept GOP holds the parsed RtpPacket objects too (as it held only them, plus 16 bytes a packet).
    "parsed-gop": """
import apuppet.media.relay as relay
from apuppet.media.rtp import ts_diff
class ParsedGop(relay.KeptGop):
    __slots__ = ("kept",)
    def __init__(self):
        super().__init__()
        self.kept = []
    def append(self, packet):
        super().append(packet)
        self.kept.append(packet)
    def clear(self):
        super().clear()
        self.kept = []
    def keep_last(self, count):
        super().keep_last(count)
        self.kept = self.kept[-count:]
    def keep_from(self, timestamp):
        super().keep_from(timestamp)
        self.kept = [p for p in self.kept if ts_diff(p.timestamp, timestamp) >= 0]
relay.KeptGop = ParsedGop
""",
    # The previous GOP kept until the new keyframe is complete (not dropped when it begins).
    "late-drop": "import apuppet.media.relay as relay\nrelay.starts_keyframe = lambda payload: False\n",
    # The viewers' histories keep the previous GOP's payloads after a new keyframe.
    "keep-previous-gop": """
import apuppet.media.relay as relay
relay.RelayViewer.keep_only = lambda self, payloads: None
""",
}


# -- source ------------------------------------------------------------------------------------------------------
def encode_clip() -> list[tuple[bytes, int]]:
    """Two seconds at 1 Mbit/s, as (Annex-B access unit, 90 kHz timestamp): encoded once for every device."""
    import numpy as np

    from apuppet.media.encoder import H264Encoder

    rng = np.random.default_rng(5)
    w, h = SIZE
    noise = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    enc = H264Encoder(w, h, fps=FPS, bitrate=BITRATE, keyframe_interval=1.0)
    units = []
    for i in range(CLIP_SECONDS * FPS):
        img = np.roll(noise, i * 5, axis=0)
        units += [(u.data, u.timestamp) for u in enc.encode(img)]
    return units


class Source:
    """One device's RTP sender: the clip in a loop, its own SSRC and sequence numbers."""

    def __init__(self, clip: list[tuple[bytes, int]], port: int, source: str) -> None:
        from apuppet.media.h264 import H264Packetizer

        self.clip = clip
        self.addr = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))  # the device's own address: the ingest latches to its creator
        self.packetizer = H264Packetizer(ssrc=random.getrandbits(32), payload_type=96, sequence_number=32)
        self.frame = 0
        self.span = clip[-1][1] + 90_000 // FPS

    def send_frame(self) -> None:
        data, ts = self.clip[self.frame % len(self.clip)]
        ts += (self.frame // len(self.clip)) * self.span
        for packet in self.packetizer.packetize(data, ts & 0xFFFFFFFF):
            with contextlib.suppress(OSError):
                self.sock.sendto(packet, self.addr)
        self.frame += 1

    def close(self) -> None:
        self.sock.close()


async def pace(sources: list[Source], seconds: float) -> None:
    """Every source sends one frame per 1/FPS, for `seconds`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    while loop.time() - start < seconds:
        for source in sources:
            source.send_frame()
        n += 1
        await asyncio.sleep(max(0.0, start + n / FPS - loop.time()))


# -- a simulated device ---------------------------------------------------------------------------------------------
class Device:
    def __init__(self, target: Target, api: Api, name: str) -> None:
        self.target = target
        self.api = api
        self.name = name
        self.session = 0
        self.pc: Any = None
        self.video_port = 0
        self.poller: asyncio.Task[None] | None = None

    async def connect(self, textroom: bool) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        api = self.api
        self.session, handle = await api.session(TEXTROOM if textroom else None)
        if not self.session:
            raise RuntimeError(f"create failed: {await api.call('', {'janus': 'create'})}")
        if textroom:
            await api.call(f"/{self.session}/{handle}", {"janus": "message", "body": {"request": "setup"}})
            offer = await api.poll_event(self.session, lambda e: "jsep" in e)
            if offer is None:
                raise RuntimeError("no textroom offer")
            self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=only_loopback(offer["jsep"]["sdp"]), type="offer")
            )
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            answer = {"type": "answer", "sdp": self.pc.localDescription.sdp}
            await api.call(
                f"/{self.session}/{handle}", {"janus": "message", "body": {"request": "ack"}, "jsep": answer}
            )
            channel = self.pc.createDataChannel("Trick")
            opened = asyncio.Event()
            channel.on("open", opened.set)
            self.poller = asyncio.get_running_loop().create_task(keep_polling(api, self.session))
            await asyncio.wait_for(opened.wait(), 15)
            channel.send(json.dumps({"textroom": "create", "room": self.name, "pin": "pin", "transaction": "c"}))
            channel.send(
                json.dumps(
                    {
                        "textroom": "join",
                        "room": self.name,
                        "pin": "pin",
                        "username": "device:sim",
                        "display": "sim",
                        "transaction": "j",
                    }
                )
            )
        handle = (
            (await api.call(f"/{self.session}", {"janus": "attach", "plugin": STREAMING})).get("data", {}).get("id")
        )
        body = agent_create_body(self.name)
        body["pin"] = "pin"
        if self.target.name == "janus":
            body["videofmtp"] = "profile-level-id=42e01f;packetization-mode=1"  # aiortc refuses mode 0
        reply = await api.call(f"/{self.session}/{handle}", {"janus": "message", "body": body})
        stream = reply.get("plugindata", {}).get("data", {}).get("stream", {})
        self.video_port = stream.get("video_port", 0)
        if not self.video_port:
            raise RuntimeError(f"mountpoint create failed: {reply}")
        if self.poller is None:
            self.poller = asyncio.get_running_loop().create_task(keep_polling(api, self.session))

    async def close(self) -> None:
        if self.target.name == "janus":
            # Janus' mountpoints outlive the session that made them; the agent destroys its own.
            _, handle = 0, (await self.api.call(f"/{self.session}", {"janus": "attach", "plugin": STREAMING}))
            hid = handle.get("data", {}).get("id")
            await self.api.call(
                f"/{self.session}/{hid}", {"janus": "message", "body": {"request": "destroy", "id": self.name}}
            )
            await self.api.call(
                f"/{self.session}/{hid}", {"janus": "message", "body": {"request": "destroy", "room": self.name}}
            )
        if self.poller is not None:
            self.poller.cancel()
        await self.api.call(f"/{self.session}", {"janus": "destroy"})
        if self.pc is not None:
            await self.pc.close()


# -- viewers (child process) ----------------------------------------------------------------------------------------
def viewers_main(base: str, ids: list[str], ready: Any, stop: Any) -> None:
    """Watch every mountpoint of `ids` with one aiortc peer each; report how many get RTP, until `stop`."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

    async def run() -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        target = Target("viewer", None, 0, "", Path("/dev/null"), (0, 0))  # type: ignore[arg-type]
        target.base = base
        api = Api(target, "127.0.0.2", Tally(), concurrency=len(ids) + 16)  # each viewer holds a long poll
        receiving: set[str] = set()
        pcs = []

        async def watch(mp: str) -> None:
            session, handle = await api.session(STREAMING)
            await api.call(
                f"/{session}/{handle}", {"janus": "message", "body": {"request": "watch", "id": mp, "pin": "pin"}}
            )
            offer = await api.poll_event(session, lambda e: "jsep" in e, 20)
            if offer is None:
                return
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pcs.append(pc)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=only_loopback(offer["jsep"]["sdp"]), type="offer"))

            async def got(packet: Any, arrival_time_ms: int) -> None:
                receiving.add(mp)

            pc.getTransceivers()[0].receiver._handle_rtp_packet = got  # type: ignore[method-assign]
            await pc.setLocalDescription(await pc.createAnswer())
            answer = {"type": "answer", "sdp": pc.localDescription.sdp}
            await api.call(f"/{session}/{handle}", {"janus": "message", "body": {"request": "start"}, "jsep": answer})
            asyncio.get_running_loop().create_task(keep_polling(api, session))

        limit = asyncio.Semaphore(8)

        async def bounded(mp: str) -> None:
            async with limit:
                with contextlib.suppress(Exception):
                    await watch(mp)

        watching = asyncio.gather(*(bounded(mp) for mp in ids))
        while not stop.is_set():
            ready.value = len(receiving)
            await asyncio.sleep(0.5)
        watching.cancel()
        for pc in pcs:
            await pc.close()
        await api.close()

    asyncio.run(run())


# -- the measurements -------------------------------------------------------------------------------------------------
def rollup(pid: int) -> dict[str, float]:
    """RSS, PSS and USS in MB (`/proc/<pid>/smaps_rollup`): shared library pages count fully in RSS, in
    proportion to the processes mapping them in PSS, and not at all in USS (what the process alone holds)."""
    kb: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            name, value = line.split()[:2]
            kb[name.rstrip(":")] = int(value)
    except (OSError, ValueError):
        return {}
    uss = kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)
    return {"rss": kb.get("Rss", 0) / 1024, "pss": kb.get("Pss", 0) / 1024, "uss": uss / 1024}


def footprint(pid: int) -> str:
    m = rollup(pid)
    if not m:
        return "RSS ? MB"
    return f"RSS {m['rss']:.0f} MB (PSS {m['pss']:.0f}, USS {m['uss']:.0f})"


async def sampled(pid: int, seconds: float, every: float = 0.5) -> str:
    """RSS read every `every` seconds for `seconds`: the median and the highest (a server's RSS swings with the
    GOPs it keeps and with its heap trims: one reading is one point of that swing); PSS and USS medians."""
    readings = []
    for _ in range(max(1, int(seconds / every))):
        readings.append(rollup(pid))
        await asyncio.sleep(every)
    readings = [r for r in readings if r]
    if not readings:
        return "RSS ? MB"
    rss = sorted(r["rss"] for r in readings)
    pss = statistics.median(r["pss"] for r in readings)
    uss = statistics.median(r["uss"] for r in readings)
    return (
        f"RSS median {statistics.median(rss):.0f} MB, max {rss[-1]:.0f} over {seconds:.0f} s "
        f"(PSS {pss:.0f}, USS {uss:.0f})"
    )


async def settle(target: Target, seconds: float = 2.0) -> str:
    await asyncio.sleep(seconds)
    return footprint(target.proc.pid)


async def lifecycles(
    target: Target, clip: list[tuple[bytes, int]], count: int, diag: Path | None, textroom: bool, window: float = 10.0
) -> list[str]:
    api = Api(target, "127.0.0.3", Tally(), concurrency=16)
    lines = []
    done = 0
    failed = 0

    async def one(i: int) -> None:
        nonlocal failed
        device = Device(target, api, f"life{i}")
        try:
            await device.connect(textroom=textroom)
            source = Source(clip, device.video_port, "127.0.0.3")
            await pace([source], 0.5)
            source.close()
        except Exception as exc:
            failed += 1
            if failed <= 3:
                print(f"  lifecycle {i} failed: {type(exc).__name__}: {exc}"[:300])
        finally:
            with contextlib.suppress(Exception):
                await device.close()

    checkpoints = sorted({max(1, count // 3), max(1, 2 * count // 3), count})
    try:
        if diag is not None:
            os.kill(target.proc.pid, signal.SIGUSR1)
        for stop_at in checkpoints:
            while done < stop_at:
                batch = range(done, min(stop_at, done + 4))
                await asyncio.gather(*(one(i) for i in batch))
                done += len(batch)
            memory = await sampled(target.proc.pid, window)
            lines.append(f"after {done} lifecycles: {memory} ({failed} failed)")
            if diag is not None:
                os.kill(target.proc.pid, signal.SIGUSR1)
                await asyncio.sleep(2)
    finally:
        await api.close()
    return lines


async def devices_watched(
    target: Target,
    clip: list[tuple[bytes, int]],
    count: int,
    seconds: float,
    diag: Path | None = None,
    window: float = 10.0,
) -> str:
    api = Api(target, "127.0.0.4", Tally(), concurrency=count + 16)  # every device holds a long poll
    devices = [Device(target, api, f"dev{i}") for i in range(count)]
    limit = asyncio.Semaphore(8)

    async def connect(device: Device) -> None:
        async with limit:
            await device.connect(textroom=False)

    try:
        await asyncio.gather(*(connect(d) for d in devices))
        sources = [Source(clip, d.video_port, "127.0.0.4") for d in devices]
        ctx = multiprocessing.get_context("spawn")
        ready = ctx.Value("i", 0)
        stop = ctx.Event()
        child = ctx.Process(target=viewers_main, args=(target.base, [d.name for d in devices], ready, stop))
        child.start()
        sender = asyncio.get_running_loop().create_task(pace(sources, 3600))
        deadline = time.monotonic() + 120
        while ready.value < count and time.monotonic() < deadline:
            await asyncio.sleep(1)
        await asyncio.sleep(seconds)
        memory = await sampled(target.proc.pid, window)
        if diag is not None:
            os.kill(target.proc.pid, signal.SIGUSR1)
            await asyncio.sleep(3)
        watching = ready.value
        stop.set()
        sender.cancel()
        child.join(30)
        for source in sources:
            source.close()
        for device in devices:
            with contextlib.suppress(Exception):
                await device.close()
        await asyncio.sleep(2)
        after = await sampled(target.proc.pid, window)
        return (
            f"{count} devices x 1 viewer at {BITRATE / 1e6:.0f} Mbit/s: {memory} ({watching} viewers got RTP)\n"
            f"  then, all of them gone: {after}"
        )
    finally:
        for device in devices:
            with contextlib.suppress(Exception):
                await device.close()
        await api.close()


async def run(args: argparse.Namespace) -> None:
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    clip = encode_clip()
    seconds = CLIP_SECONDS
    rate = sum(len(d) for d, _ in clip) * 8 / seconds / 1e6
    print(f"clip: {SIZE[0]}x{SIZE[1]} {FPS} fps, {rate:.2f} Mbit/s, encoded once")
    env = dict(e.split("=", 1) for e in args.env)
    for name in args.targets.split(",") * args.repeat:
        folder = Path(tempfile.mkdtemp(prefix=f"memory-{name}-"))
        diag = folder / "diagnose.txt" if args.diagnose and name == "apuppet" else None
        if name == "apuppet":
            extra = dict(env)
            if diag is not None:
                extra["MEMORY_DIAG"] = str(diag)
                if args.tracemalloc:
                    extra["MEMORY_TRACE"] = "1"
            # One address plays 100 devices and another 100 viewers: lift the per-address peer cap if present.
            lift = {"max_peers_per_address": 0} if "max_peers_per_address" in Config.model_fields else {}
            preamble = DIAGNOSE if diag is not None else ""
            if args.preamble:
                preamble += "\n" + Path(args.preamble).read_text() + "\n"
            if args.history:
                preamble += f"\nimport apuppet.media.relay as relay; relay.HISTORY_SIZE = {args.history}\n"
            for undo in filter(None, args.undo.split(",")):
                preamble += "\n" + UNDO[undo]
            target = start_apuppet(folder, extra, preamble, lift)
        else:
            target = start_janus(folder)
        try:
            print(f"\n== {name} {' '.join(args.env) if name == 'apuppet' else ''} ==")
            print(f"idle: {await settle(target)}")
            # Janus gathers no ICE candidate on the loopback interface (not even with ice_enforce_list = "lo"),
            # so its WebRTC parts cannot run here; the bench sends nothing beyond 127.0.0.0/8.
            webrtc = name != "janus"
            if args.lifecycles:
                kind = "textroom peer + mountpoint + RTP" if webrtc else "mountpoint + RTP, no WebRTC (see above)"
                print(f"lifecycles ({kind}):")
                for line in await lifecycles(target, clip, args.lifecycles, diag, webrtc, args.window):
                    print(f"  {line}")
                if webrtc and args.compare_lifecycles:
                    print("lifecycles (mountpoint + RTP, no WebRTC, as Janus gets):")
                    for line in await lifecycles(target, clip, args.lifecycles, None, False, args.window):
                        print(f"  {line}")
            if args.devices and webrtc:
                if diag is not None and not args.lifecycles:
                    os.kill(target.proc.pid, signal.SIGUSR1)
                print(await devices_watched(target, clip, args.devices, args.seconds, diag, args.window))
            elif args.devices:
                print("devices x viewers: not measurable on loopback (no ICE candidates on lo)")
        finally:
            target.stop()
        if diag is not None and diag.exists():
            print(f"diagnosis ({diag}):\n{diag.read_text()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="apuppet,janus")
    parser.add_argument("--lifecycles", type=int, default=300)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0, help="streaming time before the RSS is read")
    parser.add_argument("--window", type=float, default=10.0, help="then RSS read every 0.5 s for this long")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the apuppet process")
    parser.add_argument("--diagnose", action="store_true")
    parser.add_argument("--history", type=int, default=0, help="apuppet: NACK history per viewer (to compare)")
    parser.add_argument("--undo", default="", help=f"apuppet: comma-separated, of {', '.join(UNDO)} (to compare)")
    parser.add_argument("--preamble", default="", help="apuppet: a Python file run in the server before it starts")
    parser.add_argument("--compare-lifecycles", action="store_true", help="apuppet: also lifecycles without WebRTC")
    parser.add_argument("--repeat", type=int, default=1, help="measure each target N times, a new server each")
    parser.add_argument("--tracemalloc", action="store_true", help="with --diagnose: also trace allocations (slow)")
    asyncio.run(run(parser.parse_args()))
