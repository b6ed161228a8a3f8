"""The Redis adapter of a cluster node (redis-py asyncio): ownership keys, the heartbeat pipeline, and pub/sub
messages to other nodes. Everything here is I/O; what the keys mean is `directory.py`'s.

Outgoing messages go through one queue and one writer, so that what this node sends another node (an event,
then the reply of the request that caused it) arrives in the order it was sent.

Every message is signed (HMAC-SHA256 with a key derived from the API secret, which every node of a cluster shares
already since its clients use it on any node), stamped with the time, given a random id and addressed to the
channel it is published on: a message without a valid signature, signed for another node's channel, older than
`MAX_AGE`, stamped over `START_SKEW` before this process subscribed, or whose id this node has seen (`replay.py`),
is dropped and counted. Whoever can write to Redis can still disturb the cluster (ownership keys, floods), but
cannot make a node act on a forged call, event or trusted guest, nor twice on one it captured (not even after a
restart under the same name, unless the capture was stamped within `START_SKEW` before the new subscription), nor
at all on one captured on its way to another node (each node remembers only the ids it received: without the
address, a `contest` for node B published on node C's channel would make C drop what it holds).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..api.limits import LogLimiter
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
from .replay import ReplayGuard, Verdict

log = logging.getLogger(__name__)

JSON = dict[str, Any]
#: Seconds a Redis command may take before the node counts Redis as lost.
COMMAND_TIMEOUT = 2.0
#: Messages sent in one pipeline at most.
BATCH = 256
#: Seconds a signed message stays acceptable (nodes' clocks must agree within this: NTP).
MAX_AGE = 60.0
#: Seconds before its subscription a message may be stamped and still be taken. Redis delivers only what is
#: published after the subscription, so an earlier stamp is a capture published again (this process' memory of ids
#: starts empty: a worker restarted under its name) or a sender whose clock is behind ours, or whose message waited
#: in its queue. NTP keeps clocks within milliseconds, and a worker's restart takes longer than this
#: (`workers.FIRST_BACKOFF` and Python's start), so what a restarted worker lets through was stamped after its
#: predecessor stopped; only a node restarted by hand within a second could take once more one of its last messages.
START_SKEW = 1.0
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


def bus_key(api_secret: str) -> bytes:
    """The bus' signing key, derived from the API secret (never the secret itself, which never leaves a node).
    v3: messages carry their channel (v2: an id); a node of an older version fails the signature rather than being
    misread."""
    return hmac.new(api_secret.encode("utf-8", "surrogatepass"), b"apuppet cluster bus v3", hashlib.sha256).digest()


class Sealed(NamedTuple):
    stamp: float
    nonce: str
    #: The channel the sender published it on: the only one it is valid on.
    target: str
    message: JSON


def sign(key: bytes, message: JSON, target: str, now: float | None = None) -> str:
    """`<hmac hex> <time> <id> [<channel>,<json>]` for publishing on `target`: the signature covers the time, the
    id (single use), the channel (one receiver) and the message. Channel and message go in one JSON array so that a
    node name may hold any character."""
    stamp = time.time() if now is None else now
    sealed = json.dumps([target, message], separators=(",", ":"))
    body = f"{stamp:.3f} {secrets.token_urlsafe(12)} {sealed}"
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest() + " " + body


def unseal(key: bytes, wire: str) -> Sealed | None:
    """Stamp, id, channel and message of a text signed with `key`, or None: unsigned, badly signed, or not a
    channel and a JSON object. Whether it is fresh, and for this receiver, is the caller's question."""
    mac, _, body = wire.partition(" ")
    expected = hmac.new(key, body.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac.encode("utf-8", "surrogatepass"), expected.encode()):
        return None
    stamp, nonce, payload = (body.split(" ", 2) + ["", ""])[:3]
    try:
        when, sealed = float(stamp), json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not nonce or not isinstance(sealed, list) or len(sealed) != 2:
        return None
    target, message = sealed
    return Sealed(when, nonce, target, message) if isinstance(target, str) and isinstance(message, dict) else None


class RedisBus:
    """One node's connection to Redis: `start` checks that Redis answers, `listen` delivers this node's messages
    to `on_message`, `send`/`publish` reach other nodes."""

    def __init__(self, url: str, name: str, on_message: Callable[[JSON], None], key: bytes = b"") -> None:
        self.url = url
        self.name = name
        self.on_message = on_message
        self.key = key
        #: The channel this node listens on: messages signed for another are refused.
        self.inbox = channel(name)
        #: Messages dropped: a missing or wrong signature, signed for another channel (`misdirected`, also counted
        #: here), too old, or seen before or stamped before this process subscribed (`replayed`, also counted here);
        #: batches lost after their retry. All are on the node's /metrics (`router.metrics`).
        self.rejected = 0
        self.misdirected = 0
        self.replayed = 0
        self.lost_batches = 0
        #: Set again by `start`, with the time this process subscribes as its start.
        self.seen = ReplayGuard(MAX_AGE)
        self._rejects_logged = LogLimiter(lines=1)
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
        self._listener: asyncio.Task[None] | None = None

    def check_listener(self) -> bool:
        """The heartbeat's check that this node still hears other nodes: a listener that ended (a bug of ours)
        is started again. Returns whether it had to be."""
        if self._closing or self._listener is None or not self._listener.done():
            return False
        if not self._listener.cancelled() and self._listener.exception() is not None:
            failure = type(self._listener.exception()).__name__
            log.warning("cluster: the subscription ended (%s); subscribing again", failure)
        self._tasks.remove(self._listener)
        self._listener = asyncio.get_running_loop().create_task(self._listen(), name=f"cluster-listen-{self.name}")
        self._tasks.append(self._listener)
        return True

    async def start(self) -> None:
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:
            await self.client.aclose()
            raise ClusterUnavailable(f"cannot reach Redis at {redacted(self.url)}: {exc}") from None
        # Before the SUBSCRIBE is sent: whatever is delivered was published after it.
        self.seen = ReplayGuard(MAX_AGE, since=time.time() - START_SKEW)
        loop = asyncio.get_running_loop()
        self._listener = loop.create_task(self._listen(), name=f"cluster-listen-{self.name}")
        self._tasks = [self._listener, loop.create_task(self._write(), name=f"cluster-write-{self.name}")]
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
        if self._tasks:  # none on a second close (asyncio.wait refuses an empty list)
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
        target = channel(node)
        self._outbox.put_nowait((target, sign(self.key, message, target), None))

    async def publish(self, node: str, message: JSON) -> int:
        """Send a message and return how many subscribers got it: 0 means the node is not there."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        target = channel(node)
        self._outbox.put_nowait((target, sign(self.key, message, target), future))
        return await future

    async def _write(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < BATCH and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            try:
                counts = await self._publish_batch(batch)
            except (RedisError, OSError) as exc:
                self.reachable = False
                self.lost_batches += 1
                for _, _, future in batch:
                    if future is not None and not future.done():
                        future.set_exception(ClusterUnavailable(f"Redis unreachable: {exc}"))
                continue
            for (_, _, future), count in zip(batch, counts, strict=True):
                if future is not None and not future.done():
                    future.set_result(int(count))

    async def _publish_batch(self, batch: list[tuple[str, str, asyncio.Future[int] | None]]) -> list[Any]:
        """One pipeline, tried again once after a failure (a connection that broke since its last use); a
        message may then arrive twice, and the receiver drops the second copy as seen (same signed id)."""
        for attempt in (1, 2):
            pipe = self.client.pipeline(transaction=False)
            for target, payload, _ in batch:
                pipe.publish(target, payload)
            try:
                return list(await pipe.execute())
            except (RedisError, OSError):
                if attempt == 2:
                    raise
                await asyncio.sleep(0.1)
        raise AssertionError("unreachable")

    def _deliver(self, data: Any) -> None:
        sealed = unseal(self.key, data) if isinstance(data, str) else None
        if sealed is not None and sealed.target != self.inbox:
            # Before the id memory: what was meant for another node takes no room in this one's.
            self.rejected += 1
            self.misdirected += 1
            self._warn(
                "misdirected", "cluster: a message signed for another node was dropped (republished from Redis?)"
            )
            return
        forgotten = self.seen.forgotten
        verdict = self.seen.admit(sealed.nonce, sealed.stamp, time.time()) if sealed is not None else None
        if self.seen.forgotten > forgotten:
            text = "cluster: over %d messages within %.0f s: the replay window is shortened, older messages refused"
            self._warn("window", text, self.seen.cap, self.seen.window)
        if sealed is None or verdict is not Verdict.FRESH:
            self.rejected += 1
            if verdict is Verdict.REPLAYED:
                self.replayed += 1
                self._warn("replayed", "cluster: a message seen already was dropped (replayed from Redis?)")
            elif verdict is Verdict.EARLY:
                self.replayed += 1
                text = "cluster: a message stamped before this node started was dropped (replayed from Redis, or a "
                self._warn("early", text + "node's clock behind? use NTP)")
            elif verdict is Verdict.STALE:
                self._warn("stale", "cluster: a message too old was dropped (nodes' clocks apart? use NTP)")
            else:
                why = "wrong API secret, or an older version, on a node?"
                self._warn("unsigned", "cluster: a message without a valid signature was dropped (%s)", why)
            return
        try:
            self.on_message(sealed.message)
        except Exception as exc:  # the subscription outlives any message
            log.warning("cluster: a message failed: %s", type(exc).__name__)

    def _warn(self, kind: str, text: str, *args: object) -> None:
        """One line a minute per kind: a flood of bad messages must not fill the log."""
        suppressed = self._rejects_logged.allow(kind)
        if suppressed is not None:
            log.warning(text + (f" ({suppressed} more)" if suppressed else ""), *args)

    async def _listen(self) -> None:
        """Deliver this node's messages; resubscribe after Redis comes back."""
        while not self._closing:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.inbox)
                self.subscribed.set()
                # The flag as well as the cancellation: redis-py can swallow a cancellation that lands in its
                # read (redis/redis-py#2028, #2551), and the loop must end all the same (a node hung at stop).
                while not self._closing:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    self._deliver(message.get("data"))
            except Exception as exc:  # Redis lost, or anything else: subscribe again rather than go deaf
                if isinstance(exc, RedisError | OSError):
                    self.reachable = False
                log.debug("cluster: subscription lost: %s", type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    # -- keys -------------------------------------------------------------------------------------------------
    async def holder(self, kind: str, key: str | int) -> str | None:
        value = await self.client.get(own_key(kind, key))
        return value if isinstance(value, str) else None

    async def node_alive(self, name: str) -> str | None:
        """The incarnation of a node alive now, or None."""
        return incarnation(await self.client.get(node_key(name)))

    async def live_nodes(self) -> dict[str, str]:
        """The nodes alive now and their incarnations (the heartbeat's view may be a second old)."""
        names = sorted(str(n) for n in await self.client.smembers(NODES))
        return await self._alive(names)

    async def _alive(self, names: list[str]) -> dict[str, str]:
        records = await self.client.mget([node_key(n) for n in names]) if names else []
        alive = {n: incarnation(value) for n, value in zip(names, records, strict=True)}
        return {n: inc for n, inc in alive.items() if inc is not None}

    async def claim(self, entries: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Take ownership entries for this node; returns those that another live node holds."""
        named = {own_key(kind, key): (kind, key) for kind, key in entries}
        if not named:
            return []
        # One script call for the whole burst (a node stopping lets go of hundreds at once: one call each would
        # exhaust redis-py's connection pool).
        lost = await self._claim(keys=list(named), args=[self.name, OWN_TTL, node_key("")])
        return [named[str(k)] for k in lost if str(k) in named]

    async def release(self, entries: Iterable[tuple[str, str | int]]) -> None:
        keys = [own_key(kind, key) for kind, key in entries]
        if keys:
            await self._release(keys=keys, args=[self.name])

    async def heartbeat(
        self, record: JSON, sessions: Iterable[int], resources: Iterable[tuple[str, str]]
    ) -> tuple[dict[str, str], list[tuple[str, str]]]:
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
        live = await self._alive(names)
        dead = set(names) - set(live)
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


def incarnation(record: Any) -> str | None:
    """The incarnation in a node's announcement (its JSON record), or None: no announcement (the node is dead).
    A record without one (a node of an older version) counts as one incarnation."""
    if not isinstance(record, str):
        return None
    try:
        decoded = json.loads(record)
    except ValueError:
        return ""
    return str(decoded.get("inc", "")) if isinstance(decoded, dict) else ""
