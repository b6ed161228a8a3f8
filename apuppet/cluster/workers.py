"""`apuppet serve --workers N`: N nodes on one host, one process (one core) each, sharing the web port through
SO_REUSEPORT (the kernel spreads the connections) and Redis, each with its own slice of `rtp_port_range` (a device's
RTP goes to the port its node answered with).

The parent starts the children as `python -m apuppet serve --config … --worker i/N`, restarts one that dies (with
backoff, logged), and stops them all on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time

from ..config import Config

log = logging.getLogger(__name__)

#: Ports a worker needs at least: a mountpoint and a few viewers' and data channels' peer connections.
MIN_PORTS_PER_WORKER = 8
#: Restart backoff: the first restart waits this long, doubling up to `MAX_BACKOFF` while a child keeps dying
#: within `STABLE_AFTER` seconds of its start.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STABLE_AFTER = 30.0
STOP_TIMEOUT = 10.0


def parse_worker(text: str) -> tuple[int, int]:
    """`i/N` (1-based) as given to a child."""
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit()) or not 1 <= int(index) <= int(count):
        raise ValueError(f"--worker must look like 2/4, got {text!r}")
    return int(index), int(count)


def port_slices(port_range: tuple[int, int], count: int) -> list[tuple[int, int]]:
    """`count` disjoint, contiguous slices of the range, the first ones one port larger when it does not divide."""
    low, high = port_range
    size, extra = divmod(high - low + 1, count)
    if size < MIN_PORTS_PER_WORKER:
        raise ValueError(
            f"rtp_port_range {low}-{high} has {high - low + 1} ports: too few for {count} workers "
            f"({MIN_PORTS_PER_WORKER} each at least); widen it or start fewer workers"
        )
    slices, start = [], low
    for i in range(count):
        end = start + size + (1 if i < extra else 0) - 1
        slices.append((start, end))
        start = end + 1
    return slices


def worker_config(config: Config, index: int, count: int) -> Config:
    """A child's configuration: its slice of the range and its node name (`<node_name or host>-<i>`, the same
    after a restart, so that the directory shows which worker holds what)."""
    low, high = port_slices(config.port_range, count)[index - 1]
    base = config.node_name or socket.gethostname()
    return config.model_copy(update={"rtp_port_range": f"{low}-{high}", "node_name": f"{base}-{index}", "workers": 1})


class Supervisor:
    """The parent of `--workers`: keeps N children running until `stop`."""

    def __init__(self, config_path: str, count: int, extra_args: list[str] | None = None) -> None:
        self.config_path = config_path
        self.count = count
        self.extra_args = extra_args or []
        self.children: dict[int, asyncio.subprocess.Process] = {}
        self.restarts = 0
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for index in range(1, self.count + 1):
            await self._spawn(index)
            self._watchers.append(loop.create_task(self._watch(index), name=f"worker-{index}"))

    async def _spawn(self, index: int) -> None:
        self.children[index] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "apuppet",
            "serve",
            "--config",
            self.config_path,
            "--worker",
            f"{index}/{self.count}",
            *self.extra_args,
        )
        log.info("worker %d/%d started (pid %d)", index, self.count, self.children[index].pid)

    async def _watch(self, index: int) -> None:
        backoff = FIRST_BACKOFF
        while not self._stopping.is_set():
            started = time.monotonic()
            code = await self.children[index].wait()
            if self._stopping.is_set():
                return
            backoff = FIRST_BACKOFF if time.monotonic() - started > STABLE_AFTER else backoff
            log.warning("worker %d/%d exited with status %s; restarting in %.1f s", index, self.count, code, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)
            if not self._stopping.is_set():
                self.restarts += 1
                await self._spawn(index)

    def reload(self) -> None:
        """SIGHUP: every worker reloads its certificate."""
        for child in self.children.values():
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGHUP)

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        for child in self.children.values():
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)
        for index, child in self.children.items():
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await child.wait()
            except TimeoutError:
                log.warning("worker %d did not stop within %.0f s; killing it", index, STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
