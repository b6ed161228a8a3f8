"""What recording costs: the relay's CPU with and without `record_sessions`, and the disk per recorded hour.
Not a test: it prints.

For N = 1, 5, 10 devices, each a source sending a pre-encoded libx264 clip (720p, 1 Mbit/s, 30 fps, keyframe every
second; bench/relay.py's clip and sender) to its own mountpoint, each watched by one aiortc viewer (real ICE,
DTLS, SRTP; not decoding), an apuppet server in its own process (pinned to one core, the bench on the others) is
measured twice, recording off and on, in alternating order:

* server CPU (user+system, % of one core) over the measuring window, and RSS; the CPU of the threads other than
  the event loop's (the recordings' writers) apart, since it is measured without the noise of the total;
* the bytes the recordings grew by over the window, as MB per recorded hour per device, against the clip's H.264
  (the container's share);
* in this process, without sockets: the relay's `feed` per packet with and without a recording attached (the
  event loop's share of the cost; muxing and writing happen on the recording's thread).

    python bench/recording.py [--devices 1,5,10] [--seconds 10] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bench.relay as relay  # noqa: E402
from apuppet.media.h264 import AccessUnit, H264Packetizer  # noqa: E402

BITRATE = 1_000_000


def serve(port: int, rtp_range: str, recordings: str) -> None:
    """`--serve`: an apuppet server in this process (a child of the bench); `recordings` "-" records nothing."""
    from apuppet.config import Config
    from apuppet.runtime import serve_until_signal
    from apuppet.server import Server

    config = Config(
        web_http_port=port,
        api_http=False,
        api_https=False,
        api_wss=False,
        is_nginx_enabled=False,
        is_certbot_enabled=False,
        bind="127.0.0.1",
        api_secret=relay.SECRET,
        admin_secret="benchadmin",
        rtp_port_range=rtp_range,
        log_level="warning",
        max_peers_per_address=0,
        record_sessions=recordings != "-",
        recordings_dir=recordings if recordings != "-" else "recordings",
    )
    server = Server(config)
    asyncio.run(serve_until_signal(server.start, server.stop))


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user+system) of each thread of `pid`, by thread id."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.mp4*")) if folder.is_dir() else 0


async def run_server(
    record: bool, devices: int, args: argparse.Namespace, clip: list[AccessUnit], tmp: Path
) -> dict[str, Any]:
    port = relay.free_port()
    rtp_low = 30000 + 2000 * int(record)
    folder = tmp / f"recordings-{devices}-{int(record)}-{time.monotonic_ns()}"
    cmd = [sys.executable, __file__, "--serve", str(port), f"{rtp_low}-{rtp_low + 999}", str(folder) if record else "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp / "server.log", "ab"))
    if args.pin and len(os.sched_getaffinity(0)) > 1:
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(proc.pid, {cores[-1]})
        os.sched_setaffinity(0, set(cores[:-1]))
    base = f"http://127.0.0.1:{port}/janus"
    agents: list[relay.Janus] = []
    sources: list[relay.Source] = []
    tasks: list[asyncio.Task[None]] = []
    viewers: list[relay.BenchViewer] = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.post(base, json={"janus": "ping", "transaction": "p"}) as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.1)
            for i in range(devices):
                mp_id = str(48213000 + i)
                agent = relay.Janus(http, base)
                await agent.open()
                agents.append(agent)
                body = {
                    "request": "create", "type": "rtp", "id": mp_id, "name": mp_id, "description": mp_id,
                    "permanent": False, "is_private": False, "audio": False, "video": True, "data": False,
                    "pin": "4321", "audioport": 0, "audiopt": 0, "videoport": 0, "videopt": 100,
                    "videortpmap": "H264/90000", "videobufferkf": False,
                }  # fmt: skip
                created = relay.data_of(await agent.message(body))
                source = relay.Source(clip, created["stream"]["video_port"])
                source.packetizer = H264Packetizer(ssrc=0x5EED + i, payload_type=96, sequence_number=32)
                sources.append(source)
                tasks.append(asyncio.get_running_loop().create_task(source.run()))
            await asyncio.sleep(1.5)
            for i in range(devices):
                viewer = relay.BenchViewer(http, base, decode=False)
                await viewer.watch(str(48213000 + i), "4321", fmtp_fix=True)
                viewers.append(viewer)
            await asyncio.sleep(3.0)
            sent0 = sum(s.bytes for s in sources)
            disk0 = folder_bytes(folder)
            threads0 = thread_cpu_seconds(proc.pid)
            cpu0, t0 = relay.proc_cpu_seconds(proc.pid), time.perf_counter()
            await asyncio.sleep(args.seconds)
            cpu1, t1 = relay.proc_cpu_seconds(proc.pid), time.perf_counter()
            threads1 = thread_cpu_seconds(proc.pid)
            # The event loop runs on the main thread (tid = pid); the recordings' writers are threads of their own.
            others = sum(v - threads0.get(tid, 0.0) for tid, v in threads1.items() if tid != proc.pid)
            disk1 = folder_bytes(folder)
            sent1 = sum(s.bytes for s in sources)
            row = {
                "cpu_pct": (cpu1 - cpu0) / (t1 - t0) * 100,
                "threads_cpu_pct": others / (t1 - t0) * 100,
                "rss_mb": relay.proc_rss_mb(proc.pid),
                # RTP headers are 12 of each packet's bytes; what is recorded is the payload (the H.264).
                "sent_mb_per_hour": (sent1 - sent0) / (t1 - t0) * 3600 / devices / 1e6,
                "disk_mb_per_hour": (disk1 - disk0) / (t1 - t0) * 3600 / devices / 1e6,
                "files": len(list(folder.glob("*.mp4*"))) if record else 0,
            }
    finally:
        for task in tasks:
            task.cancel()
        for viewer in viewers:
            with contextlib.suppress(Exception):
                await viewer.close()
        for agent in agents:
            with contextlib.suppress(Exception):
                await agent.close()
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        if proc.poll() is None:
            proc.kill()
    if record:
        complete = [p for p in folder.glob("*.mp4") if not p.name.endswith(".part")]
        row["complete_after_stop"] = len(complete)
    return row


async def feed_cost(clip: list[AccessUnit], seconds_of_video: int = 60) -> tuple[float, float, int]:
    """µs per packet in `StreamRelay.feed` (one live viewer) without and with a recording, in this process."""
    from apuppet.media.recording import SessionRecording
    from apuppet.media.relay import RelayViewer, StreamRelay

    packetizer = H264Packetizer(ssrc=1, sequence_number=0)
    span = clip[-1].timestamp + 90_000 // relay.FPS
    packets: list[bytes] = []
    for i in range(seconds_of_video * relay.FPS):
        unit = clip[i % len(clip)]
        packets += packetizer.packetize(unit.data, unit.timestamp + (i // len(clip)) * span)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for record in (False, True, False, True):
            relay_ = StreamRelay()
            relay_.add_viewer(RelayViewer(2, 96, lambda data: None))
            recording = SessionRecording(relay_, Path(tmp), "bench", "bench") if record else None
            feed = relay_.feed
            source = ("127.0.0.1", 5000)
            started = time.perf_counter()
            for i, packet in enumerate(packets):
                feed(packet, source)
                if i % 200 == 0:
                    await asyncio.sleep(0)  # the writer thread gets the GIL as it would between wake-ups
            elapsed = time.perf_counter() - started
            if recording is not None:
                await recording.close()
            results.append((record, elapsed / len(packets) * 1e6))
    off = statistics.median(v for r, v in results if not r)
    on = statistics.median(v for r, v in results if r)
    return off, on, len(packets)


async def main(args: argparse.Namespace) -> None:
    relay.BITRATE = BITRATE
    started = time.perf_counter()
    clip = relay.encode_clip()
    clip_mbps = sum(len(u.data) for u in clip) * 8 / relay.CLIP_SECONDS / 1e6
    print(f"clip encoded in {time.perf_counter() - started:.1f} s: {clip_mbps:.2f} Mbit/s of H.264", flush=True)
    off, on, count = await feed_cost(clip)
    print(f"relay feed, in process ({count} packets, one viewer): {off:.2f} µs/packet without a recording, "
          f"{on:.2f} µs/packet with one (+{(on - off) / off * 100:.0f} %)", flush=True)  # fmt: skip
    rows: dict[tuple[int, bool], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            for devices in args.devices:
                order = (False, True) if (run + devices) % 2 == 0 else (True, False)
                for record in order:
                    row = await run_server(record, devices, args, clip, Path(tmp))
                    rows.setdefault((devices, record), []).append(row)
                    print(f"  {devices} device(s), recording {'on' if record else 'off'}: {row}", flush=True)
    print(f"\nsource: {relay.SIZE[0]}x{relay.SIZE[1]} libx264, {clip_mbps:.2f} Mbit/s, {relay.FPS} fps, keyframe "
          f"every 1 s; one viewer per device; medians of {args.runs} run(s), {args.seconds:.0f} s windows")  # fmt: skip
    h264_mb_per_hour = clip_mbps * 1e6 / 8 * 3600 / 1e6
    print("\n| devices | CPU, recording off | CPU, recording on | added | of which the writer threads | RSS off / on "
          f"| disk per recorded hour and device (H.264: {h264_mb_per_hour:.0f} MB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for devices in args.devices:
        off_rows, on_rows = rows[(devices, False)], rows[(devices, True)]
        cpu_off = statistics.median(r["cpu_pct"] for r in off_rows)
        cpu_on = statistics.median(r["cpu_pct"] for r in on_rows)
        rss_off = statistics.median(r["rss_mb"] for r in off_rows)
        rss_on = statistics.median(r["rss_mb"] for r in on_rows)
        disk = statistics.median(r["disk_mb_per_hour"] for r in on_rows)
        writers = statistics.median(r["threads_cpu_pct"] for r in on_rows) - statistics.median(
            r["threads_cpu_pct"] for r in off_rows
        )
        print(
            f"| {devices} | {cpu_off:.1f} % | {cpu_on:.1f} % | {(cpu_on - cpu_off) / cpu_off * 100:+.1f} % | "
            f"{writers:.2f} % of a core ({writers / cpu_off * 100:.1f} %) | {rss_off:.0f} / {rss_on:.0f} MB | "
            f"{disk:.0f} MB ({(disk / h264_mb_per_hour - 1) * 100:+.1f} %) |"
        )
    complete = [r.get("complete_after_stop", 0) == d for (d, rec), rs in rows.items() if rec for r in rs]
    print(f"\nevery recording complete (renamed from .part) after the server's SIGTERM: {all(complete)}")


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="1,5,10", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--seconds", default=10.0, type=float, help="measuring window")
    parser.add_argument("--runs", default=1, type=int, help="repeat and report medians (for a shared machine)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin the server to its own core")
    asyncio.run(main(parser.parse_args()))
