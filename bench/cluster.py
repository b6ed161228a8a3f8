"""Scale-out figures (apuppet.cluster on Redis). Not a test: it prints.

* **workers**: D simulated devices (a Janus session and a mountpoint each, 1 Mbit/s of RTP/H.264 at 30 fps from a
  real UDP socket: bench/memory.py's clip and sender), each watched by V aiortc viewers (real ICE, DTLS, SRTP, no
  decoding; in a separate process), all through ONE web port served by W worker processes (`serve --worker i/W`
  with SO_REUSEPORT, the kernel spreading the connections: most viewers land on another node than their device
  and are served through Redis). Printed: CPU of all workers together (% of one core) and per device, RTP
  packets delivered to viewers against packets sent x viewers. W = 1 without Redis is today's single process; the
  control (`--separate 2`) is two separate servers without Redis, each with half the devices and their viewers:
  what two processes cost on this machine whatever the cluster does.
* **first packet**: two nodes on their own ports, one device on A; a viewer's `watch` → its first RTP packet
  (the kept GOP's keyframe), through A (local) and through B (the watch relayed to A, the guest made there):
  what a cross-node request adds.
* **Redis memory**: INFO memory before and after the devices registered, per 1 000 devices.

    python bench/cluster.py [--devices 20] [--viewers 1] [--workers 1,2,4] [--separate 2] [--seconds 8] [--first 10]

Needs Debian's redis-server (started here on a free loopback port, no persistence).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aioice.ice

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.memory import Source, encode_clip, pace  # noqa: E402
from bench.storm import (  # noqa: E402
    SERVE_ON_LOOPBACK,
    STREAMING,
    Api,
    Tally,
    Target,
    agent_create_body,
    keep_polling,
    loopback_config,
    only_loopback,
)

JSON = dict[str, Any]
RTP_RANGE = (43000, 43799)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    redis = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen(
        [redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, port


def redis_used_memory(port: int) -> int:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "info", "memory"], capture_output=True, text=True, check=False
    ).stdout
    for line in out.splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1])
    import redis as redis_py  # redis-cli is not always installed with the server

    info = redis_py.Redis(port=port).info("memory")
    return int(info["used_memory"])


def memory_usage(port: int, key: str) -> int:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "memory", "usage", key], capture_output=True, text=True, check=False
    ).stdout.strip()
    return int(out) if out.isdigit() else 0


def thousand_devices_kib(port: int) -> float:
    """used_memory growth for the entries 1 000 devices make (3 keys with a TTL each, as the nodes write them)."""
    import secrets

    import redis as redis_py

    client = redis_py.Redis(port=port)
    try:
        before = int(client.info("memory")["used_memory"])
        pipe = client.pipeline(transaction=False)
        for _ in range(1000):
            pipe.set(f"apuppet:own:s:{secrets.randbelow(2**53)}", "bench-node-1", ex=60)
            for kind in "mr":
                pipe.set(f"apuppet:own:{kind}:{secrets.randbelow(10**9)}", "bench-node-1", ex=60)
        pipe.execute()
        return (int(client.info("memory")["used_memory"]) - before) / 1024
    finally:
        client.close()


def write_config(folder: Path, port: int, rtp: tuple[int, int], redis_port: int | None, name: str = "") -> Path:
    path = folder / f"config-{name or 'single'}.yaml"
    config: JSON = {
        **loopback_config(folder, port, rtp),
        "log_level": "warning",
        "limit_sessions_per_address": 100000,
        "limit_polls_per_address": 100000,
        "limit_connections_per_address": 100000,
        "max_peers_per_address": 0,
    }
    if redis_port:
        config.update(redis_url=f"redis://127.0.0.1:{redis_port}/0", node_name=name or "bench")
    path.write_text(json.dumps(config))
    return path


def serve(config: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", SERVE_ON_LOOPBACK, "serve", "--config", str(config), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_http(port: int, timeout: float = 60) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/janus/info") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"nothing answers on port {port}")


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class CountingSocket:
    """A source's UDP socket that counts the datagrams sent (the packetizer's sequence number wraps)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent = 0

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self.sent += 1
        return self.sock.sendto(data, addr)

    def close(self) -> None:
        self.sock.close()


def spread(api: Api, source: str) -> None:
    """A new connection per request: the kernel spreads them over the workers sharing the port."""
    import aiohttp

    old = api.http
    api.http = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(source, 0), force_close=True), timeout=old.timeout
    )
    asyncio.get_running_loop().create_task(old.close())


def target_for(port: int) -> Target:
    return Target("apuppet", None, port, "", Path("/dev/null"), RTP_RANGE)  # type: ignore[arg-type]


async def make_device(api: Api, name: str) -> tuple[int, int]:
    """(session, video_port) of a device that created its mountpoint, as the agent does."""
    session, handle = await api.session(STREAMING)
    body = agent_create_body(name)
    body["pin"] = "pin"
    reply = await api.call(f"/{session}/{handle}", {"janus": "message", "body": body})
    port = reply.get("plugindata", {}).get("data", {}).get("stream", {}).get("video_port", 0)
    if not port:
        raise RuntimeError(f"mountpoint create failed: {reply}")
    return session, port


# -- viewers (child process) ----------------------------------------------------------------------------------------
def viewers_main(base: str, ids: list[str], per: int, packets: Any, watching: Any, stop: Any) -> None:
    """`per` aiortc viewers for every mountpoint of `ids`, each on its own connection; counts RTP packets."""
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

    async def run() -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        target = target_for(0)
        target.base = base
        api = Api(target, "127.0.0.2", Tally(), concurrency=len(ids) * per + 16)
        pcs: list[Any] = []
        tasks: list[asyncio.Task[None]] = []
        received = [0]
        receiving: set[int] = set()

        async def watch(mp: str, n: int) -> None:
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
                received[0] += 1
                receiving.add(n)

            pc.getTransceivers()[0].receiver._handle_rtp_packet = got  # type: ignore[method-assign]
            await pc.setLocalDescription(await pc.createAnswer())
            answer = {"type": "answer", "sdp": pc.localDescription.sdp}
            await api.call(f"/{session}/{handle}", {"janus": "message", "body": {"request": "start"}, "jsep": answer})
            tasks.append(asyncio.get_running_loop().create_task(keep_polling(api, session)))

        limit = asyncio.Semaphore(8)

        async def bounded(mp: str, n: int) -> None:
            async with limit:
                with contextlib.suppress(Exception):
                    await watch(mp, n)

        started = asyncio.gather(*(bounded(mp, i * per + k) for i, mp in enumerate(ids) for k in range(per)))
        while not stop.is_set():
            packets.value = received[0]
            watching.value = len(receiving)
            await asyncio.sleep(0.05)
        started.cancel()
        for task in tasks:
            task.cancel()
        for pc in pcs:
            await pc.close()
        await api.close()

    asyncio.run(run())


# -- the measurements -------------------------------------------------------------------------------------------------
async def run_workers(args: argparse.Namespace, workers: int, redis_port: int | None, folder: Path) -> str:
    port = free_port()
    config = write_config(folder, port, RTP_RANGE, redis_port, f"w{workers}" if redis_port else "")
    if redis_port:
        procs = [serve(config, "--worker", f"{i}/{workers}") for i in range(1, workers + 1)]
    else:
        procs = [serve(config)]
    api = None
    try:
        await wait_http(port)
        await asyncio.sleep(1.5)  # every worker listening and announced
        api = Api(target_for(port), "127.0.0.4", Tally(), concurrency=args.devices + 16)
        spread(api, "127.0.0.4")
        names = [f"dev{i}" for i in range(args.devices)]
        devices = [await make_device(api, name) for name in names]
        polls = [asyncio.get_running_loop().create_task(keep_polling(api, s)) for s, _ in devices]
        clip = encode_clip()
        sources = [Source(clip, video_port, "127.0.0.4") for _, video_port in devices]
        counters = [CountingSocket(source.sock) for source in sources]
        for source, counter in zip(sources, counters, strict=True):
            source.sock = counter  # type: ignore[assignment]
        ctx = multiprocessing.get_context("spawn")
        packets, watching, stop = ctx.Value("q", 0), ctx.Value("i", 0), ctx.Event()
        child = ctx.Process(
            target=viewers_main, args=(f"http://127.0.0.1:{port}/janus", names, args.viewers, packets, watching, stop)
        )
        child.start()
        sender = asyncio.get_running_loop().create_task(pace(sources, 3600))
        want = args.devices * args.viewers
        deadline = time.monotonic() + 120
        while watching.value < want and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)
        pids = [p.pid for p in procs]
        each0 = [cpu_seconds([pid]) for pid in pids]
        cpu0, sent0, got0, t0 = cpu_seconds(pids), sum(c.sent for c in counters), packets.value, time.monotonic()
        await asyncio.sleep(args.seconds)
        sender.cancel()
        cpu1, sent1, t1 = cpu_seconds(pids), sum(c.sent for c in counters), time.monotonic()
        each = [100 * (cpu_seconds([pid]) - before) / (t1 - t0) for pid, before in zip(pids, each0, strict=True)]
        await asyncio.sleep(1.0)  # what is still on its way arrives
        got1 = packets.value
        stop.set()
        child.join(30)
        for task in polls:
            task.cancel()
        for source in sources:
            source.close()
        cpu = 100 * (cpu1 - cpu0) / (t1 - t0)
        expected = (sent1 - sent0) * args.viewers
        delivered = 100 * (got1 - got0) / expected if expected else float("nan")
        label = f"{workers} worker{'s' if workers > 1 else ''}" + (" + Redis" if redis_port else " (no Redis)")
        return (
            f"{label:22s} {args.devices} devices x {args.viewers} viewer(s): {watching.value}/{want} watching, "
            f"CPU {cpu:5.1f} % of a core ({cpu / args.devices:.2f} % per device), "
            f"RTP delivered {delivered:5.1f} %"
            + (f"; per worker {' / '.join(f'{c:.1f}' for c in each)} %" if len(each) > 1 else "")
        )
    finally:
        if api is not None:
            await api.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                print(f"  (a node did not stop within 15 s of SIGTERM: killed, pid {proc.pid})", flush=True)
                proc.kill()
                proc.wait()


async def run_independent(args: argparse.Namespace, count: int, folder: Path) -> str:
    """The control for the workers' figures: `count` separate servers without Redis on ports of their own, device
    i and its viewers on server i % count. What they cost beyond one process is the price of several processes,
    not of the cluster."""
    ports = [free_port() for _ in range(count)]
    slices = [(RTP_RANGE[0] + i * 200, RTP_RANGE[0] + i * 200 + 199) for i in range(count)]
    procs = [serve(write_config(folder, ports[i], slices[i], None, f"solo{i}")) for i in range(count)]
    apis: list[Api] = []
    children: list[Any] = []
    try:
        for port in ports:
            await wait_http(port)
        apis = [Api(target_for(port), "127.0.0.4", Tally(), concurrency=args.devices + 16) for port in ports]
        names = [f"dev{i}" for i in range(args.devices)]
        devices = [await make_device(apis[i % count], name) for i, name in enumerate(names)]
        polls = [
            asyncio.get_running_loop().create_task(keep_polling(apis[i % count], s)) for i, (s, _) in enumerate(devices)
        ]
        clip = encode_clip()
        sources = [Source(clip, video_port, "127.0.0.4") for _, video_port in devices]
        counters = [CountingSocket(source.sock) for source in sources]
        for source, counter in zip(sources, counters, strict=True):
            source.sock = counter  # type: ignore[assignment]
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        counts = []
        for i, port in enumerate(ports):
            packets, watching = ctx.Value("q", 0), ctx.Value("i", 0)
            mine = names[i::count]
            child = ctx.Process(
                target=viewers_main,
                args=(f"http://127.0.0.1:{port}/janus", mine, args.viewers, packets, watching, stop),
            )
            child.start()
            children.append(child)
            counts.append((packets, watching))
        sender = asyncio.get_running_loop().create_task(pace(sources, 3600))
        want = args.devices * args.viewers
        deadline = time.monotonic() + 120
        while sum(w.value for _, w in counts) < want and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        await asyncio.sleep(2)
        pids = [p.pid for p in procs]
        cpu0, sent0, t0 = cpu_seconds(pids), sum(c.sent for c in counters), time.monotonic()
        got0 = sum(p.value for p, _ in counts)
        await asyncio.sleep(args.seconds)
        sender.cancel()
        cpu1, sent1, t1 = cpu_seconds(pids), sum(c.sent for c in counters), time.monotonic()
        await asyncio.sleep(1.0)
        got1 = sum(p.value for p, _ in counts)
        watching_now = sum(w.value for _, w in counts)
        stop.set()
        for child in children:
            child.join(30)
        for task in polls:
            task.cancel()
        for source in sources:
            source.close()
        cpu = 100 * (cpu1 - cpu0) / (t1 - t0)
        expected = (sent1 - sent0) * args.viewers
        delivered = 100 * (got1 - got0) / expected if expected else float("nan")
        return (
            f"{count} separate processes   {args.devices} devices x {args.viewers} viewer(s): {watching_now}/{want} "
            f"watching, CPU {cpu:5.1f} % of a core ({cpu / args.devices:.2f} % per device), "
            f"RTP delivered {delivered:5.1f} % (no Redis: the control)"
        )
    finally:
        for api in apis:
            await api.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def first_packet(api: Api, mp: str) -> float:
    """Seconds from a viewer's `watch` to its first RTP packet."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    session, handle = await api.session(STREAMING)
    first = asyncio.get_running_loop().create_future()
    started = time.perf_counter()
    await api.call(f"/{session}/{handle}", {"janus": "message", "body": {"request": "watch", "id": mp, "pin": "pin"}})
    offer = await api.poll_event(session, lambda e: "jsep" in e, 20)
    assert offer is not None
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=only_loopback(offer["jsep"]["sdp"]), type="offer"))

    async def got(packet: Any, arrival_time_ms: int) -> None:
        if not first.done():
            first.set_result(time.perf_counter())

    pc.getTransceivers()[0].receiver._handle_rtp_packet = got  # type: ignore[method-assign]
    await pc.setLocalDescription(await pc.createAnswer())
    answer = {"type": "answer", "sdp": pc.localDescription.sdp}
    await api.call(f"/{session}/{handle}", {"janus": "message", "body": {"request": "start"}, "jsep": answer})
    try:
        return await asyncio.wait_for(first, 20) - started
    finally:
        await pc.close()
        await api.call(f"/{session}", {"janus": "destroy"})


async def run_first(args: argparse.Namespace, redis_port: int, folder: Path) -> list[str]:
    ports = [free_port(), free_port()]
    half = (RTP_RANGE[1] - RTP_RANGE[0] + 1) // 2
    ranges = [(RTP_RANGE[0], RTP_RANGE[0] + half - 1), (RTP_RANGE[0] + half, RTP_RANGE[1])]
    procs = [serve(write_config(folder, ports[i], ranges[i], redis_port, f"node-{'ab'[i]}")) for i in range(2)]
    apis: list[Api] = []
    try:
        for port in ports:
            await wait_http(port)
        await asyncio.sleep(1.5)
        a, b = (Api(target_for(p), "127.0.0.3", Tally(), concurrency=args.devices + 16) for p in ports)
        apis += [a, b]
        before = redis_used_memory(redis_port)
        devices = [await make_device(a, f"first{i}") for i in range(max(args.devices, 1))]
        polls = [asyncio.get_running_loop().create_task(keep_polling(a, s)) for s, _ in devices]
        await asyncio.sleep(1.5)  # a heartbeat has refreshed every entry
        per_device = (redis_used_memory(redis_port) - before) / len(devices)
        keys = [f"apuppet:own:s:{devices[0][0]}", "apuppet:own:m:first0"]
        key_bytes = sum(memory_usage(redis_port, key) for key in keys)
        source = Source(encode_clip(), devices[0][1], "127.0.0.4")
        sender = asyncio.get_running_loop().create_task(pace([source], 3600))
        await asyncio.sleep(2)
        local, remote = [], []
        for _ in range(args.first):
            local.append(await first_packet(a, "first0"))
            remote.append(await first_packet(b, "first0"))
        sender.cancel()
        source.close()
        for task in polls:
            task.cancel()
        lm, rm = statistics.median(local) * 1000, statistics.median(remote) * 1000
        return [
            f"watch -> first RTP packet, median of {args.first}: through the device's node {lm:.1f} ms, "
            f"through another node {rm:.1f} ms (+{rm - lm:.1f} ms)",
            f"Redis: the entries of one device (session + mountpoint, MEMORY USAGE) {key_bytes} bytes; "
            f"used_memory grew {per_device:.0f} bytes per device with {len(devices)} devices (connections included)",
            f"Redis: used_memory for 1 000 devices' entries (session, room, mountpoint, with expiry) "
            f"{thousand_devices_kib(redis_port):.0f} KiB",
        ]
    finally:
        for api in apis:
            await api.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                print(f"  (a node did not stop within 15 s of SIGTERM: killed, pid {proc.pid})", flush=True)
                proc.kill()
                proc.wait()


async def main(args: argparse.Namespace) -> None:
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    redis, redis_port = start_redis()
    try:
        await asyncio.sleep(0.5)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            # The nodes share one audit log: made once here, as `serve --workers` does before its children start.
            from apuppet.ops.audit import AuditStore

            AuditStore(folder / "data" / "audit.sqlite3").close()
            print(f"apuppet scale-out, {os.cpu_count()} CPUs, {args.devices} devices x {args.viewers} viewer(s)")
            for line in await run_first(args, redis_port, folder):
                print(line, flush=True)
            if args.single:
                print(await run_workers(args, 1, None, folder), flush=True)
            for count in args.separate:
                print(await run_independent(args, count, folder), flush=True)
            for workers in args.workers:
                subprocess.run(["redis-cli", "-p", str(redis_port), "flushall"], capture_output=True, check=False)
                print(await run_workers(args, workers, redis_port, folder), flush=True)
    finally:
        redis.terminate()
        redis.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--viewers", type=int, default=1)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--first", type=int, default=10)
    parser.add_argument("--no-single", dest="single", action="store_false", help="skip W=1 without Redis")
    parser.add_argument(
        "--separate",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[2],
        help="the control: N separate servers without Redis, devices split between them (default: 2; '' for none)",
    )
    asyncio.run(main(parser.parse_args()))
