"""The Redis side of the cluster's guessing limits (`guessing.py` says what the keys and the script mean): one
task reports the failures the node's `SharedThrottle`s queued, hands Redis' answers back to them and tells the
other live nodes of each new block; a node reads the blocks current when it starts and when Redis comes back.

Nothing here is on a request's way: a request only queues a failure and wakes the reporter. The queue is bounded
by the throttle (`max_keys` clients while Redis is away, `REPORTED_PER_SECOND` new clients a second), so what one
node can add to Redis is too, however many addresses guess. While Redis does not answer, the queued failures
are dropped after one try (the node's own count keeps them) and the reporter tries again at most once a second.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..api.limits import LogLimiter
from ..api.throttle import Throttle
from .bus import REDIS_ERRORS, RedisBus
from .directory import Directory
from .guessing import (
    BLOCKED_SCRIPT,
    FAIL_SCRIPT,
    MAX_LISTED,
    SharedThrottle,
    blocked_key,
    blocks_messages,
    guess_key,
    parse_blocks,
)

log = logging.getLogger(__name__)

#: Seconds the reporter waits after Redis failed it before trying again.
RETRY_AFTER = 1.0
#: Clients counted per pipeline at most.
PIPELINE = 1000


class SharedGuesses:
    def __init__(self, bus: RedisBus, directory: Directory) -> None:
        self.bus = bus
        self.directory = directory
        self.throttles: dict[str, SharedThrottle] = {}
        self._fail = bus.client.register_script(FAIL_SCRIPT)
        self._blocked = bus.client.register_script(BLOCKED_SCRIPT)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._logged = LogLimiter(lines=1)

    def share(self, kind: str, local: Throttle) -> SharedThrottle:
        """The throttle of `kind` ("api", "admin") for this node, with the policy of its own `local` one."""
        throttle = SharedThrottle.like(kind, local)
        throttle.on_failure = self._wake.set
        self.throttles[kind] = throttle
        return throttle

    async def start(self) -> None:
        try:
            await self.load()
        except REDIS_ERRORS as exc:  # the node started: Redis answered; the heartbeat will tell if it is gone
            self._warn(exc)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"cluster-guesses-{self.bus.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def load(self) -> None:
        """Learn the blocks current in Redis (a node starting, or finding Redis again, missed their messages)."""
        for kind, throttle in self.throttles.items():
            found = await self._blocked(keys=[blocked_key(kind)], args=[MAX_LISTED])
            for client, ms in zip(found[::2], found[1::2], strict=True):
                throttle.learn(str(client), int(ms) / 1000)

    def on_blocked(self, message: dict[str, Any]) -> None:
        """Another node's message: addresses the cluster blocked just now."""
        for kind, client, seconds in parse_blocks(message):
            throttle = self.throttles.get(kind)
            if throttle is not None:
                throttle.learn(client, seconds)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.report()
            except REDIS_ERRORS as exc:  # counted on this node meanwhile; the next failures try again
                self.bus.reachable = False
                self._warn(exc)
                await asyncio.sleep(RETRY_AFTER)
            except Exception as exc:  # a bug of ours must not end the reporting
                log.warning("cluster: reporting wrong secrets failed: %s", type(exc).__name__)
                await asyncio.sleep(RETRY_AFTER)

    async def report(self) -> None:
        """Count the queued failures in Redis, learn the blocks that follow, tell the other nodes."""
        batch = [(kind, client, n) for kind, t in self.throttles.items() for client, n in t.take().items()]
        for start in range(0, len(batch), PIPELINE):
            await self._report(batch[start : start + PIPELINE])

    async def _report(self, batch: list[tuple[str, str, int]]) -> None:
        pipe = self.bus.client.pipeline(transaction=False)
        for kind, client, n in batch:
            t = self.throttles[kind]
            policy = [n, t.free, round(t.base_delay * 1000), round(t.max_delay * 1000), round(t.forget_after * 1000)]
            keys = [guess_key(kind, client), blocked_key(kind)]
            await self._fail(keys=keys, args=[*policy, MAX_LISTED, client], client=pipe)
        delays = await pipe.execute()
        blocks: dict[str, list[tuple[str, int]]] = {}
        for (kind, client, _), ms in zip(batch, delays, strict=True):
            if int(ms) > 0:
                self.throttles[kind].learn(client, int(ms) / 1000)
                blocks.setdefault(kind, []).append((client, int(ms)))
        if not blocks:
            return
        try:  # asked now rather than the heartbeat's: a node that joined within the second must hear it too
            live = await self.bus.live_nodes()
        except REDIS_ERRORS:
            live = self.directory.live
        others = [node for node in live if node != self.directory.me]
        for message in blocks_messages(blocks):
            for node in others:
                self.bus.send(node, message)

    def _warn(self, exc: BaseException) -> None:
        suppressed = self._logged.allow("redis")
        if suppressed is not None:
            more = f" ({suppressed} more)" if suppressed else ""
            log.warning(
                "cluster: Redis unreachable (%s); wrong secrets count on this node only%s", type(exc).__name__, more
            )
