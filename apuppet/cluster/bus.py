"""The Redis adapter of a cluster node (redis-py asyncio): ownership keys, the heartbeat pipeline, and pub/sub
messages to other nodes. Everything here is I/O; what the keys mean is `directory.py`'s.

Outgoing messages go through one queue and one writer, so that what this node sends another node (an event,
then the reply of the request that caused it) arrives in the order it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .directory import (
    CLAIM_SCRIPT,
    NODE_TTL,
    NODES,
    OWN_TTL,
    RELEASE_SCRIPT,
    ClusterUnavailable,
    channel,
    node_key,
    own_key,
)

log = logging.getLogger(__name__)

JSON = dict[str, Any]
#: Seconds a Redis command may take before the node counts Redis as lost.
COMMAND_TIMEOUT = 2.0
#: Messages sent in one pipeline at most.
BATCH = 256
#: What a Redis that is down, slow or gone raises (redis-py's errors, sockets', and ours).
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError, ClusterUnavailable)


def redacted(url: str) -> str:
    """The Redis URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisBus:
    """One node's connection to Redis: `start` checks that Redis answers, `listen` delivers this node's messages
    to `on_message`, `send`/`publish` reach other nodes."""

    def __init__(self, url: str, name: str, on_message: Callable[[JSON], None]) -> None:
        self.url = url
        self.name = name
        self.on_message = on_message
        self.client: aioredis.Redis = aioredis.from_url(
            url, decode_responses=True, socket_timeout=COMMAND_TIMEOUT, socket_connect_timeout=COMMAND_TIMEOUT
        )
        self._claim = self.client.register_script(CLAIM_SCRIPT)
        self._release = self.client.register_script(RELEASE_SCRIPT)
        self._outbox: asyncio.Queue[tuple[str, str, asyncio.Future[int] | None]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        #: Whether the last command reached Redis (the heartbeat keeps it up to date).
        self.reachable = True
        self.subscribed = asyncio.Event()
        self._closing = False

    async def start(self) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            await self.client.aclose()
            raise ClusterUnavailable(f"cannot reach Redis at {redacted(self.url)}: {exc}") from None
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen(), name=f"cluster-listen-{self.name}"),
            loop.create_task(self._write(), name=f"cluster-write-{self.name}"),
        ]
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT * 2):
                await self.subscribed.wait()
        except TimeoutError:
            await self.close()
            raise ClusterUnavailable(f"Redis at {redacted(self.url)} did not take this node's subscription") from None

    async def close(self) -> None:
        # What is queued (a guest's last events, a drop) still goes out if Redis answers at once.
        if self.reachable and not self._outbox.empty():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    while not self._outbox.empty():
                        await asyncio.sleep(0.01)
        self._closing = True
        for task in self._tasks:
            task.cancel()
        # Bounded: closing the subscription waits for its connection, which a stalled Redis may never release.
        await asyncio.wait(self._tasks, timeout=COMMAND_TIMEOUT)
        self._tasks = []
        while not self._outbox.empty():
            _, _, future = self._outbox.get_nowait()
            if future is not None and not future.done():
                future.set_exception(ClusterUnavailable("node stopping"))
        with contextlib.suppress(TimeoutError, RedisError, OSError):
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await self.client.aclose()

    # -- messages -------------------------------------------------------------------------------------------
    def send(self, node: str, message: JSON) -> None:
        """Queue a message for another node; not waited for (events, replies, drops)."""
        self._outbox.put_nowait((channel(node), json.dumps(message, separators=(",", ":")), None))

    async def publish(self, node: str, message: JSON) -> int:
        """Send a message and return how many subscribers got it: 0 means the node is not there."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._outbox.put_nowait((channel(node), json.dumps(message, separators=(",", ":")), future))
        return await future

    async def _write(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < BATCH and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            pipe = self.client.pipeline(transaction=False)
            for target, payload, _ in batch:
                pipe.publish(target, payload)
            try:
                counts = await pipe.execute()
            except (RedisError, OSError) as exc:
                self.reachable = False
                for _, _, future in batch:
                    if future is not None and not future.done():
                        future.set_exception(ClusterUnavailable(f"Redis unreachable: {exc}"))
                continue
            for (_, _, future), count in zip(batch, counts, strict=True):
                if future is not None and not future.done():
                    future.set_result(int(count))

    async def _listen(self) -> None:
        """Deliver this node's messages; resubscribe after Redis comes back."""
        while not self._closing:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel(self.name))
                self.subscribed.set()
                # The flag as well as the cancellation: redis-py can swallow a cancellation that lands in its
                # read (redis/redis-py#2028, #2551), and the loop must end all the same (a node hung at stop).
                while not self._closing:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        decoded = json.loads(message["data"])
                    except ValueError:
                        continue
                    if isinstance(decoded, dict):
                        self.on_message(decoded)
            except (RedisError, OSError) as exc:
                self.reachable = False
                log.debug("cluster: subscription lost: %s", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    # -- keys -------------------------------------------------------------------------------------------------
    async def holder(self, kind: str, key: str | int) -> str | None:
        value = await self.client.get(own_key(kind, key))
        return value if isinstance(value, str) else None

    async def node_alive(self, name: str) -> bool:
        return bool(await self.client.exists(node_key(name)))

    async def live_nodes(self) -> set[str]:
        """The names of the nodes alive now (the heartbeat's view may be a second old: a node that just joined)."""
        names = sorted(str(n) for n in await self.client.smembers(NODES))
        alive = await self.client.mget([node_key(n) for n in names]) if names else []
        return {n for n, value in zip(names, alive, strict=True) if value is not None}

    async def claim(self, entries: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Take ownership entries for this node; returns those that another live node holds."""
        named = {own_key(kind, key): (kind, key) for kind, key in entries}
        if not named:
            return []
        lost = await self._claim(keys=list(named), args=[self.name, OWN_TTL, node_key("")])
        return [named[str(k)] for k in lost if str(k) in named]

    async def release(self, entries: Iterable[tuple[str, str | int]]) -> None:
        keys = [own_key(kind, key) for kind, key in entries]
        if keys:
            await self._release(keys=keys, args=[self.name])

    async def heartbeat(
        self, record: JSON, sessions: Iterable[int], resources: Iterable[tuple[str, str]]
    ) -> tuple[set[str], list[tuple[str, str]]]:
        """Announce this node, refresh what it owns; returns the names of the live nodes and the resources another
        live node holds. Two round trips whatever the number of sessions."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(node_key(self.name), json.dumps(record), ex=NODE_TTL)
        pipe.sadd(NODES, self.name)
        for sid in sessions:
            pipe.set(own_key("session", sid), self.name, ex=OWN_TTL)
        named = {own_key(kind, key): (kind, key) for kind, key in resources}
        if named:
            await self._claim(keys=list(named), args=[self.name, OWN_TTL, node_key("")], client=pipe)
        pipe.smembers(NODES)
        results = await pipe.execute()
        lost = [named[str(k)] for k in results[-2] if str(k) in named] if named else []
        names = sorted(results[-1])
        alive = await self.client.mget([node_key(n) for n in names]) if names else []
        live = {n for n, value in zip(names, alive, strict=True) if value is not None}
        dead = set(names) - live
        if dead:
            # A node that comes back adds itself again; the set only lists names worth asking about.
            await self.client.srem(NODES, *dead)
        self.reachable = True
        return live, lost

    async def leave(self, sessions: Iterable[int], resources: Iterable[tuple[str, str]]) -> None:
        """A node stopping on purpose: its entries go at once rather than expiring."""
        await self.release([("session", sid) for sid in sessions] + list(resources))
        await self.client.delete(node_key(self.name))
        await self.client.srem(NODES, self.name)
