"""Request routing of a cluster node, in front of the sans-I/O `Gateway`: what is held here is answered here,
what another node holds is relayed to it through Redis and answered as if local.

- A request for a session held by another node goes to that node (`request`), a long poll too (`poll`).
- A local session's fresh handle whose first message names a mountpoint or room held by another node is *bound*
  to that node: this message and every later one of the handle go there (`handle`), where a *guest* session with
  the same id and a handle with the same id run the plugin. So the viewer's WebRTC is the owner's (its offer,
  its candidates, its ports) and media never crosses nodes; the guest's events come back here (`event`) into
  the real session, where its long poll or WebSocket picks them up.
- Handles detached here are dropped there (`drop`); each heartbeat tells the nodes keeping guests how long
  each session has been idle (`idle`), so that reclaiming an agent's resources judges the real client.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from ..api.errors import ErrorCode, JanusError
from ..api.gateway import Gateway, error_reply, parse_id
from ..api.limits import LogLimiter
from ..api.longpoll import wait_events
from ..api.session import Connection, Handle, Session
from .bus import REDIS_ERRORS, RedisBus
from .directory import ClusterUnavailable, Directory

log = logging.getLogger(__name__)

JSON = dict[str, Any]
HANDLE_VERBS = {"message", "trickle", "hangup", "detach"}
#: Seconds a relayed request may take (a plugin's synchronous reply is immediate; this is a dead-node bound).
CALL_TIMEOUT = 10.0
#: Added to the poll timeout for a relayed long poll.
POLL_MARGIN = 10.0
#: A long poll that cannot learn where its session is (Redis lost) is answered after this pause.
UNAVAILABLE_PAUSE = 1.0


class NodeGone(Exception):
    """The node a request was for is not there (it died, or stopped)."""


def unavailable(transaction: Any, session_id: int | None) -> JSON:
    return error_reply(ErrorCode.UNKNOWN, "Cluster unavailable, retry later", transaction, session_id)


class Router:
    """Answers the transports' requests for one node (`receive`, `poll`) and other nodes' calls (`on_message`)."""

    def __init__(self, gateway: Gateway, directory: Directory, bus: RedisBus, poll_timeout: float = 30.0) -> None:
        self.gateway = gateway
        self.directory = directory
        self.bus = bus
        self.poll_timeout = poll_timeout
        #: Resources the plugins hold here, as (kind, key); refreshed in Redis by the heartbeat.
        self.resources: set[tuple[str, str]] = set()
        self._pending: dict[str, tuple[str, asyncio.Future[JSON]]] = {}
        #: Long polls served here for other nodes (call id), and those of them their origin cancelled.
        self._polling: set[str] = set()
        self._cancelled: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._placements: set[asyncio.Future[None]] = set()
        #: Resources taken or let go of since the last flush: a burst (a node stopping) is one Redis call.
        self._to_claim: set[tuple[str, str]] = set()
        self._to_release: set[tuple[str, str]] = set()
        self._flushing: asyncio.Future[None] | None = None
        self._logged = LogLimiter(lines=1)
        self.relayed = 0
        self.relay_seconds = 0.0
        self.relay_failures = 0
        #: What other parts serve to other nodes: request/reply services (op → handler, through `ask`) and
        #: one-way messages (type → handler); the console's live view, ending and logins use them.
        self.services: dict[str, Callable[[JSON], Awaitable[JSON]]] = {}
        self.handlers: dict[str, Callable[[JSON], None]] = {}
        #: Each guest session's client transport at its origin (the guest itself has none), for the console.
        self.transports: weakref.WeakKeyDictionary[Session, str] = weakref.WeakKeyDictionary()
        gateway.detach_hooks.append(self._detached)
        for plugin in gateway.plugins.values():
            plugin.placement = self._placed

    # -- the transports' entry points ------------------------------------------------------------------------
    async def receive(
        self,
        data: bytes | str,
        *,
        session_id: int | None = None,
        handle_id: int | None = None,
        remote: str = "",
        connection: Connection | None = None,
        relayed: bool = False,
    ) -> JSON:
        """`Gateway.receive`, across the cluster. `relayed`: the request already came from another node."""
        msg, refused = self.gateway.parse(data)
        if refused is not None:
            return refused
        if not isinstance(msg, dict):
            return self.gateway.handle(msg, session_id=session_id, handle_id=handle_id, remote=remote)
        return await self.handle(
            msg, session_id=session_id, handle_id=handle_id, remote=remote, connection=connection, relayed=relayed
        )

    async def handle(
        self,
        msg: JSON,
        *,
        session_id: int | None = None,
        handle_id: int | None = None,
        remote: str = "",
        connection: Connection | None = None,
        relayed: bool = False,
    ) -> JSON:
        gateway = self.gateway
        if session_id is None:
            # The gateway's rule: body ids only when the path has none (WebSocket clients).
            session_id = parse_id(msg.get("session_id"))
            if handle_id is None:
                handle_id = parse_id(msg.get("handle_id"))
        verb = msg.get("janus")
        transaction = msg.get("transaction")

        def local() -> JSON:
            return gateway.handle(msg, session_id=session_id, handle_id=handle_id, remote=remote, connection=connection)

        if not session_id:
            reply = local()
            if verb == "create" and reply.get("janus") == "success":
                await self._claim([("session", str(reply["data"]["id"]))])
            return reply
        session = gateway.sessions.get(session_id)
        guest = session_id in self.directory.guests
        if session is None or guest:
            # A guest stands for another node's session inside this node only: clients never reach it here.
            gone = error_reply(ErrorCode.SESSION_NOT_FOUND, f"No such session {session_id}", transaction, session_id)
            if relayed or connection is not None or session_id in gateway.timed_out:
                return gone if guest else local()
            try:
                holder = await self._holder("session", session_id)
            except REDIS_ERRORS as exc:  # Any Redis failure: what is here is still served
                self._redis_failed(exc)
                return gone if guest else unavailable(transaction, session_id)
            if holder is None:
                return gone if guest else local()
            # The secret is checked here and never crosses Redis: the holder learns only that it was right.
            secret = msg.get("apisecret")
            try:
                if secret:
                    gateway.check_secret(secret, remote)
            except JanusError as exc:
                return error_reply(exc.code, exc.reason, transaction, session_id)
            call = {"op": "request", "msg": _stripped(msg), "trusted": bool(secret), "remote": remote}
            return await self._relay(
                holder, {**call, "sid": session_id, "hid": handle_id}, transaction, session_id, handle_id
            )
        if not handle_id or verb not in HANDLE_VERBS:
            return local()
        handle = session.handles.get(handle_id)
        if handle is None:
            return local()
        key = (session_id, handle_id)
        node = self.directory.bound.get(key)
        if node is None and verb == "message" and self.directory.fresh(session_id, handle_id):
            node = await self._place(session, handle, msg.get("body"))
        if node is None:
            reply = local()
            if verb == "message":
                self.directory.used.add(key)
                await self._settle()
            return reply
        try:
            gateway.admit(msg, session_id, remote, connection)
        except JanusError as exc:
            return error_reply(exc.code, exc.reason, transaction, session_id)
        self.directory.bound[key] = node
        call = {
            "op": "handle",
            "msg": _stripped(msg),
            "sid": session_id,
            "hid": handle_id,
            "remote": remote,
            "guest": {
                "trusted": session.trusted,
                "creator": session.creator,
                "plugin": handle.plugin.name,
                "opaque_id": handle.opaque_id,
                # For the console's view and the time limits there: the session's age and its client's transport.
                "age": round(gateway.clock() - session.created, 3),
                "transport": "websocket" if session.connection is not None else "http",
            },
        }
        reply = await self._relay(node, call, transaction, session_id, handle_id)
        if verb == "detach" or _handle_lost(reply):
            self.directory.bound.pop(key, None)
            if handle_id in session.handles:
                lost = verb != "detach"
                if lost:  # its guest there is gone (the node restarted, the guest timed out): the client learns it
                    handle.push_hangup("Node gone")
                gateway.detach_handle(handle, notify=lost)
        return reply

    async def poll(
        self, session_id: int | None, secret: Any, remote: str, maxev: int | None, closed: Callable[[], bool]
    ) -> tuple[int, Any] | None:
        """A long poll for a session held by another node: that node waits for the events. None: not another
        node's session (the transport polls locally); (499, None): the client went away."""
        guest = session_id in self.directory.guests
        if session_id is None or session_id in self.gateway.timed_out:
            return None
        if session_id in self.gateway.sessions and not guest:
            return None
        gone = 404, error_reply(ErrorCode.SESSION_NOT_FOUND, f"No such session {session_id}")
        try:
            holder = await self._holder("session", session_id)
        except REDIS_ERRORS as exc:  # Any Redis failure
            self._redis_failed(exc)
            # Not at once: a client polls again as soon as it is answered.
            await asyncio.sleep(UNAVAILABLE_PAUSE)
            return gone if guest else (200, unavailable(None, session_id))
        if holder is None:
            return gone if guest else None
        try:  # checked here, never sent
            if secret:
                self.gateway.check_secret(secret, remote)
        except JanusError as exc:
            return 200, error_reply(exc.code, exc.reason)
        call_id = secrets.token_hex(8)
        request = {"op": "poll", "sid": session_id, "trusted": bool(secret), "remote": remote, "maxev": maxev}
        task = asyncio.ensure_future(self._call(holder, request, self.poll_timeout + POLL_MARGIN, call_id))
        cancelled = False
        try:
            while not task.done():
                await asyncio.wait([task], timeout=1.0)
                if not cancelled and not task.done() and closed():
                    cancelled = True
                    self.bus.send(holder, {"type": "cancel", "id": call_id})
            reply = task.result()
        except NodeGone:
            return gone
        except (ClusterUnavailable, TimeoutError):
            self.relay_failures += 1
            return 200, unavailable(None, session_id)
        status, payload = int(reply.get("status", 200)), reply.get("payload")
        if closed() and status == 200 and _has_events(payload):
            # Popped there for a client that left meanwhile: back to the head of its queue.
            self.bus.send(holder, {"type": "requeue", "sid": session_id, "events": payload})
            return 499, None
        return status, payload

    async def _holder(self, kind: str, key: str | int) -> str | None:
        """The other live node holding a session or resource, or None. A node this one has not heard of yet (it
        joined since the last heartbeat) is asked about once, rather than taken for dead."""
        value = await self.bus.holder(kind, key)
        if self.directory.unknown(value):
            assert value is not None
            incarnation = await self.bus.node_alive(value)
            if incarnation is not None:
                self.directory.live[value] = incarnation
        return self.directory.holder(value)

    # -- relaying -------------------------------------------------------------------------------------------------
    async def _relay(
        self, node: str, call: JSON, transaction: Any, session_id: int | None, handle_id: int | None
    ) -> JSON:
        started = time.perf_counter()
        try:
            reply = await self._call(node, call, CALL_TIMEOUT)
        except NodeGone:
            if call["op"] == "handle":
                return error_reply(
                    ErrorCode.HANDLE_NOT_FOUND, f"No such handle {handle_id} in session {session_id}", transaction
                )
            return error_reply(ErrorCode.SESSION_NOT_FOUND, f"No such session {session_id}", transaction, session_id)
        except (ClusterUnavailable, TimeoutError):
            self.relay_failures += 1
            return unavailable(transaction, session_id)
        self.relayed += 1
        self.relay_seconds += time.perf_counter() - started
        payload = reply.get("reply")
        return payload if isinstance(payload, dict) else unavailable(transaction, session_id)

    async def _call(self, node: str, call: JSON, timeout: float, call_id: str | None = None) -> JSON:
        call_id = call_id or secrets.token_hex(8)
        future: asyncio.Future[JSON] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = (node, future)
        try:
            # The incarnation this node knows `node` by: a successor under the same name refuses what was meant
            # for the one that died.
            to = self.directory.live.get(node)
            message = {**call, "type": "call", "id": call_id, "from": self.bus.name, "to": to}
            receivers = await self.bus.publish(node, message)
            if receivers == 0:
                raise NodeGone(node)
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(call_id, None)

    async def ask(self, node: str, op: str, payload: JSON, timeout: float = CALL_TIMEOUT) -> JSON:
        """Another node's answer from its service `op`. Raises `NodeGone` (not there), `ClusterUnavailable` (Redis
        lost, or the service failed there) or `TimeoutError`."""
        reply = await self._call(node, {**payload, "op": op}, timeout)
        result = reply.get("result")
        if not isinstance(result, dict):
            raise ClusterUnavailable(f"no answer from node {node[:64]}")
        return result

    async def ask_all(
        self, op: str, payload: JSON, timeout: float = CALL_TIMEOUT, nodes: list[str] | None = None
    ) -> dict[str, JSON | None]:
        """Every other live node's answer (or those of `nodes`), asked at once; None for a node that is gone or
        did not answer."""
        if nodes is None:
            try:
                live = await self.bus.live_nodes()
            except REDIS_ERRORS as exc:  # Any Redis failure: the nodes of the last heartbeat
                self._redis_failed(exc)
                live = self.directory.live
            nodes = sorted(set(live) - {self.directory.me})

        async def one(node: str) -> JSON | None:
            try:
                return await self.ask(node, op, payload, timeout)
            except (NodeGone, TimeoutError):
                return None
            except REDIS_ERRORS:
                return None

        return dict(zip(nodes, await asyncio.gather(*(one(n) for n in nodes)), strict=True))

    # -- other nodes' messages --------------------------------------------------------------------------------
    def on_message(self, message: JSON) -> None:
        """Another node's message; whatever goes wrong with one is logged, never raised: it would end this node's
        subscription, and with it everything other nodes tell it."""
        kind = message.get("type")
        try:
            self._dispatch(str(kind), message)
        except Exception as exc:
            self.gateway.log_unexpected(exc, f"cluster {str(kind)[:32]} message", "")

    def _dispatch(self, kind: str, message: JSON) -> None:
        if kind == "reply":
            entry = self._pending.get(str(message.get("id")))
            if entry is not None and not entry[1].done():
                entry[1].set_result(message)
        elif kind == "call":
            self._spawn(self._answer(message))
        elif kind == "event":
            self._event(message)
        elif kind == "drop":
            self._drop(message)
        elif kind == "idle":
            self._idle(message)
        elif kind == "cancel":
            call_id = str(message.get("id"))
            if call_id in self._polling:  # a cancel for a poll answered already has nothing to stop
                self._cancelled.add(call_id)
        elif kind == "requeue":
            self._requeue(message)
        elif kind == "contest":
            self._contested(message)
        elif (handler := self.handlers.get(kind)) is not None:
            handler(message)

    async def _answer(self, call: JSON) -> None:
        origin, call_id = str(call.get("from")), call.get("id")
        try:
            result = await self._serve(call)
        except Exception as exc:
            self.gateway.log_unexpected(exc, "cluster call", "")
            result = {"reply": unavailable(None, None)}
        finally:
            self._cancelled.discard(str(call_id))
        reply = {"type": "reply", "id": call_id, **result}
        if call.get("op") != "poll" or not _has_events(result.get("payload")):
            self.bus.send(origin, reply)
            return
        # Events popped for this reply are lost with it: unless it reached the origin, they go back to the head
        # of the session's queue for the next poll.
        try:
            delivered = await self.bus.publish(origin, reply) > 0
        except REDIS_ERRORS:
            delivered = False
        if not delivered:
            self._requeue({"sid": call.get("sid"), "events": result.get("payload")})

    async def _serve(self, call: JSON) -> JSON:
        op = call.get("op")
        sid, hid = parse_id(call.get("sid")), parse_id(call.get("hid"))
        remote = str(call.get("remote", ""))
        msg = call.get("msg")
        if op in ("request", "handle") and not isinstance(msg, dict):
            return {"reply": error_reply(ErrorCode.INVALID_JSON_OBJECT, "Bad cluster call")}
        if op == "request":
            assert isinstance(msg, dict)
            if call.get("trusted") is True:  # the origin checked the secret
                msg = {**msg, "apisecret": self.gateway.api_secret}
            reply = await self.handle(msg, session_id=sid, handle_id=hid, remote=remote, relayed=True)
            return {"reply": reply}
        if op == "handle":
            assert isinstance(msg, dict)
            if sid is None or hid is None:
                return {"reply": error_reply(ErrorCode.INVALID_JSON_OBJECT, "Bad cluster call")}
            to = call.get("to")
            if to is not None and to != self.directory.incarnation:
                # Bound to this node's predecessor under the same name, whose guest died with it.
                reason = f"No such handle {hid} in session {sid}"
                return {"reply": error_reply(ErrorCode.HANDLE_NOT_FOUND, reason, msg.get("transaction"))}
            try:
                guest = self._guest_handle(str(call["from"]), sid, hid, call.get("guest") or {}).session
            except JanusError as exc:
                return {"reply": error_reply(exc.code, exc.reason, msg.get("transaction"), sid)}
            if guest.trusted:  # the origin checked the secret
                msg = {**msg, "apisecret": self.gateway.api_secret}
            reply = self.gateway.handle(msg, session_id=sid, handle_id=hid, remote=remote)
            self._release_guest(sid)
            await self._settle()
            return {"reply": reply}
        if op == "poll":
            return await self._serve_poll(call, sid, remote)
        service = self.services.get(str(op))
        if service is not None:
            return {"result": await service(call)}
        return {"reply": error_reply(ErrorCode.UNKNOWN_REQUEST, f"Unknown cluster call {str(op)[:32]}")}

    async def _serve_poll(self, call: JSON, sid: int | None, remote: str) -> JSON:
        gateway = self.gateway
        secret = gateway.api_secret if call.get("trusted") is True else None  # the origin checked it
        try:
            session = gateway.poll_session(sid, secret, remote)
        except JanusError as exc:
            status = 404 if exc.code == ErrorCode.SESSION_NOT_FOUND else 200
            return {"status": status, "payload": error_reply(exc.code, exc.reason)}
        maxev = call.get("maxev")
        try:
            gateway.open_poll(session, remote)
        except JanusError as exc:
            return {"status": 200, "payload": error_reply(exc.code, exc.reason)}
        call_id = str(call.get("id"))
        self._polling.add(call_id)
        try:
            outcome = await wait_events(
                session,
                maxev if isinstance(maxev, int) else None,
                self.poll_timeout,
                closed=lambda: call_id in self._cancelled,
                touch=lambda: session.touch(gateway.clock()),
            )
        finally:
            self._polling.discard(call_id)
            gateway.close_poll(session, remote)
        if outcome is None:
            return {"status": 499, "payload": None}
        return {"status": outcome[0], "payload": outcome[1]}

    def _guest_handle(self, origin: str, sid: int, hid: int, guest: JSON) -> Handle:
        """The guest session and handle standing here for `origin`'s session and handle, made on first use."""
        gateway = self.gateway
        session = gateway.sessions.get(sid)
        if session is None:
            age = guest.get("age")
            age = float(age) if isinstance(age, int | float) and 0 <= age < 1e9 else 0.0
            session = Session(sid, gateway.clock() - age, str(guest.get("creator", "")))
            self.transports[session] = "websocket" if guest.get("transport") == "websocket" else "http"
            session.trusted = bool(guest.get("trusted"))
            session.sink = lambda event: self.bus.send(origin, {"type": "event", "sid": sid, "event": event})
            gateway.adopt(session)
            self.directory.guests[sid] = origin
        elif self.directory.guests.get(sid) != origin:
            raise JanusError(ErrorCode.SESSION_CONFLICT, f"Session {sid} is held by another node")
        handle = session.handles.get(hid)
        if handle is None:
            plugin = gateway.plugins.get(str(guest.get("plugin")))
            if plugin is None:
                raise JanusError(ErrorCode.PLUGIN_NOT_FOUND, f"No such plugin '{guest.get('plugin')}'")
            opaque = guest.get("opaque_id")
            handle = Handle(hid, session, plugin, opaque if isinstance(opaque, str) else None)
            session.handles[hid] = handle
            plugin.attach(handle)
        return handle

    def _release_guest(self, sid: int) -> None:
        """A guest session without handles left has nothing to stand for."""
        session = self.gateway.sessions.get(sid)
        if session is not None and sid in self.directory.guests and not session.handles:
            self.directory.guests.pop(sid, None)
            self.gateway.destroy_session(session, reason="guest released")

    def _event(self, message: JSON) -> None:
        sid, event = parse_id(message.get("sid")), message.get("event")
        session = self.gateway.sessions.get(sid) if sid is not None else None
        if session is None or sid in self.directory.guests or not isinstance(event, dict):
            return
        if event.get("janus") == "timeout":
            # A guest timed out there (this node's idle reports stopped reaching it): the session here did not.
            return
        session.push(event)

    def _drop(self, message: JSON) -> None:
        sid, hid = parse_id(message.get("sid")), parse_id(message.get("hid"))
        if sid is None or self.directory.guests.get(sid) != message.get("from"):
            return
        session = self.gateway.sessions.get(sid)
        if session is None:  # the guest went here already (timed out)
            self.directory.guests.pop(sid, None)
            return
        handle = session.handles.get(hid) if hid is not None else None
        if handle is not None:
            self.gateway.detach_handle(handle, notify=False)
        self._release_guest(sid)

    def _idle(self, message: JSON) -> None:
        idle = message.get("sessions")
        if not isinstance(idle, dict):
            return
        now = self.gateway.clock()
        for text, seconds in idle.items():
            sid = parse_id(text)
            if sid is None or self.directory.guests.get(sid) != message.get("from"):
                continue
            session = self.gateway.sessions.get(sid)
            if session is not None and isinstance(seconds, int | float):
                session.last_activity = now - float(seconds)

    def _requeue(self, message: JSON) -> None:
        sid = parse_id(message.get("sid"))
        session = self.gateway.sessions.get(sid) if sid is not None else None
        events = message.get("events")
        if session is None or session.destroyed:
            return
        for event in reversed(events if isinstance(events, list) else [events]):
            if isinstance(event, dict):
                session.events.appendleft(event)
        session.wake_listeners()

    # -- placement ----------------------------------------------------------------------------------------------
    async def _place(self, session: Session, handle: Handle, body: Any) -> str | None:
        """Where a fresh handle goes: the node holding the resource its first message names, else where the
        session's other handles went; None: here."""
        located = handle.plugin.locate(body) if isinstance(body, dict) else None
        if located is None:
            return self.directory.affinity(session.id)
        try:
            return await self._holder(*located)
        except REDIS_ERRORS as exc:  # Any Redis failure: serve it here
            self._redis_failed(exc)
            return None

    def _placed(self, kind: str, key: str, present: bool) -> None:
        """A plugin took or let go of a resource: Redis learns it before the request's reply goes out. What a
        burst changes (a node stopping lets go of hundreds) goes in one call, not one each, which would exhaust
        redis-py's connection pool."""
        entry = (kind, key)
        if present:
            self.resources.add(entry)
            self._to_release.discard(entry)
            self._to_claim.add(entry)
        else:
            self.resources.discard(entry)
            self._to_claim.discard(entry)
            self._to_release.add(entry)
        if self._flushing is None:
            future = self._flushing = asyncio.ensure_future(self._flush())
            self._placements.add(future)
            future.add_done_callback(self._placements.discard)

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # the rest of the burst, made in this turn of the loop
            while self._to_claim or self._to_release:
                claims, releases = sorted(self._to_claim), sorted(self._to_release)
                self._to_claim.clear()
                self._to_release.clear()
                if releases:
                    await self._release(releases)
                if claims:
                    await self._claim(claims)
        finally:
            self._flushing = None

    async def _settle(self) -> None:
        if self._placements:
            await asyncio.gather(*list(self._placements))

    async def _claim(self, entries: list[tuple[str, str]]) -> None:
        try:
            lost = await self.bus.claim(entries)
        except REDIS_ERRORS as exc:  # Any Redis failure; the heartbeat claims again
            self._redis_failed(exc)
            return
        await self.contest(lost)

    async def contest(self, lost: list[tuple[str, str]]) -> None:
        """Resources made here that another live node holds too: ask it to let go of its copy if the creator is
        gone there (the heartbeat asks again each second until it does, or ours goes)."""
        for kind, key in lost:
            try:
                holder = await self._holder(kind, key)
            except REDIS_ERRORS as exc:  # Any Redis failure; the next heartbeat asks again
                self._redis_failed(exc)
                return
            if holder is not None:
                self.bus.send(holder, {"type": "contest", "kind": kind, "key": key, "from": self.bus.name})

    def _contested(self, message: JSON) -> None:
        kind, key = str(message.get("kind")), str(message.get("key"))
        if (kind, key) not in self.resources:
            return
        for plugin in self.gateway.plugins.values():
            if plugin.abandon(kind, key):
                log.info("cluster: a %s made anew on node %s; ours went", kind, str(message.get("from"))[:64])
                return

    async def _release(self, entries: list[tuple[str, str]]) -> None:
        try:
            await self.bus.release(entries)
        except REDIS_ERRORS as exc:  # Any Redis failure; the entry expires
            self._redis_failed(exc)

    # -- node lifecycle -----------------------------------------------------------------------------------------
    def _detached(self, handle: Handle) -> None:
        node = self.directory.forget_handle(handle.session.id, handle.id)
        if node is not None:
            self.bus.send(node, {"type": "drop", "sid": handle.session.id, "hid": handle.id, "from": self.bus.name})

    def nodes_gone(self, nodes: set[str]) -> None:
        """Nodes died: their guests here go (their peers and ports with them), the handles bound to them are
        hung up and detached, and the calls waiting for them fail."""
        for sid in self.directory.guests_of(nodes):
            session = self.gateway.sessions.get(sid)
            self.directory.guests.pop(sid, None)
            if session is not None:
                self.gateway.destroy_session(session, reason="origin node gone")
        for sid, hid in self.directory.bindings_to(nodes):
            self.directory.bound.pop((sid, hid), None)
            session = self.gateway.sessions.get(sid)
            handle = session.handles.get(hid) if session is not None else None
            if handle is not None:
                handle.push_hangup("Node gone")
                self.gateway.detach_handle(handle, notify=True)
        for node, future in list(self._pending.values()):
            if node in nodes and not future.done():
                future.set_exception(NodeGone(node))

    def report_idle(self) -> None:
        """Tell each node keeping guests for our sessions how long each has been idle."""
        per_node: dict[str, dict[str, float]] = {}
        for (sid, _), node in self.directory.bound.items():
            idle = self.gateway.idle_for(sid)
            if idle is not None:
                per_node.setdefault(node, {})[str(sid)] = round(idle, 1)
        for node, sessions in per_node.items():
            self.bus.send(node, {"type": "idle", "sessions": sessions, "from": self.bus.name})

    def forget_stale_guests(self) -> None:
        """Guest entries whose session went by itself (timed out, destroyed here) go too."""
        for sid in self.directory.stale_guests(self.gateway.sessions):
            self.directory.guests.pop(sid, None)

    def local_sessions(self) -> list[int]:
        return [sid for sid in self.gateway.sessions if sid not in self.directory.guests]

    def metrics(self) -> dict[str, float]:
        return {
            "cluster_nodes": len(self.directory.live),
            "cluster_relayed_total": self.relayed,
            "cluster_relayed_seconds_total": round(self.relay_seconds, 6),
            "cluster_relay_failures_total": self.relay_failures,
            "cluster_bound_handles": len(self.directory.bound),
            "cluster_guest_sessions": len(self.directory.guests),
            "cluster_redis_up": 1 if self.bus.reachable else 0,
            "cluster_messages_rejected_total": self.bus.rejected,
            "cluster_messages_replayed_total": self.bus.replayed,
            "cluster_messages_misdirected_total": self.bus.misdirected,
            "cluster_replay_ids_forgotten_total": self.bus.seen.forgotten,
            "cluster_batches_lost_total": self.bus.lost_batches,
        }

    def _redis_failed(self, exc: BaseException) -> None:
        self.bus.reachable = False
        suppressed = self._logged.allow("redis")
        if suppressed is not None:
            log.warning("cluster: Redis unreachable (%s); serving what this node holds", type(exc).__name__)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._placements, return_exceptions=True)
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(ClusterUnavailable("node stopping"))


def _stripped(msg: JSON) -> JSON:
    """A request without its API secret, to cross Redis."""
    return {k: v for k, v in msg.items() if k != "apisecret"}


def _handle_lost(reply: JSON) -> bool:
    return reply.get("janus") == "error" and reply.get("error", {}).get("code") in (
        ErrorCode.SESSION_NOT_FOUND,
        ErrorCode.HANDLE_NOT_FOUND,
    )


def _has_events(payload: Any) -> bool:
    if isinstance(payload, list):
        return bool(payload)
    return isinstance(payload, dict) and payload.get("janus") not in ("keepalive", "error")
