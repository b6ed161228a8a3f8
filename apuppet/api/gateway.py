"""The Janus API core, sans-I/O: a parsed request (plus the ids a transport took from its path) goes in, a
reply comes out, and events are queued on sessions. Transports only move bytes.

Request levels follow Janus: the root accepts `create`, `info`, `ping`; a session `attach`, `keepalive`,
`destroy`; a handle `message`, `trickle`, `hangup`, `detach`.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import __version__
from ..netaddr import client_key
from .errors import ErrorCode, JanusError
from .idtag import ID_FIELDS, tag
from .limits import Limits, LogLimiter, Slots, TokenBucket
from .plugin import JSON, Plugin, PluginResult
from .session import Connection, Handle, Session
from .throttle import Throttle

log = logging.getLogger(__name__)

ROOT_VERBS = {"create", "info", "ping"}
SESSION_VERBS = {"attach", "keepalive", "destroy", "claim"}
HANDLE_VERBS = {"message", "trickle", "hangup", "detach"}
#: Verbs answered without the API secret, as in Janus.
OPEN_VERBS = {"info", "ping"}

#: Janus issues ids below 2^53 so that JavaScript numbers hold them exactly.
MAX_ID = 2**53 - 1
#: Nesting the JSON parser refuses before Python's recursion limit would (a RecursionError is not a reply).
MAX_JSON_DEPTH = 64
#: Sessions whose `timeout` event waits for the next long poll (the client was between two polls): how many,
#: and for how long at least (the session timeout if longer).
MAX_TIMED_OUT_KEPT = 1000
TIMED_OUT_KEPT_FOR = 60.0


def new_id(taken: Iterable[int] | dict[int, Any]) -> int:
    while True:
        candidate = secrets.randbelow(MAX_ID) + 1
        if candidate not in taken:
            return candidate


def parse_id(value: Any) -> int | None:
    """Ids arrive as JSON numbers from janus.js and as strings from the aPuppet agent. Only ASCII digits count:
    `str.isdigit` also accepts '²', which `int()` then refuses."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 20:
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_ID:
        return value
    return None


def json_depth_exceeds(data: bytes | str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit`; cheap enough to run before parsing."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def error_reply(code: int, reason: str, transaction: Any = None, session_id: int | None = None) -> JSON:
    reply: JSON = {"janus": "error"}
    if session_id:
        reply["session_id"] = session_id
    if transaction is not None:
        reply["transaction"] = transaction
    reply["error"] = {"code": int(code), "reason": reason}
    return reply


class Gateway:
    """Sessions, handles and request dispatch for every transport."""

    def __init__(
        self,
        plugins: Iterable[Plugin],
        *,
        api_secret: str = "",
        session_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        secret_throttle: Throttle | None = None,
        viewer_access: bool = True,
        limits: Limits | None = None,
        ice_servers: Callable[[str], list[JSON]] | None = None,
    ) -> None:
        self.plugins: dict[str, Plugin] = {p.name: p for p in plugins}
        self.api_secret = api_secret
        self.viewer_access = viewer_access
        self.session_timeout = session_timeout
        self.clock = clock
        self.sessions: dict[int, Session] = {}
        # `is None`, not `or`: an injected throttle with no entries yet is falsy (it has __len__).
        self.throttle = Throttle(clock=clock) if secret_throttle is None else secret_throttle
        self.limits = Limits() if limits is None else limits
        self.sessions_by_address = Slots()
        self.viewers_by_address = Slots()
        #: Long polls and WebSockets open now, per address (and polls per session): `open_poll`, `open_websocket`.
        self.held = Slots()
        self.viewer_rate = TokenBucket(self.limits.viewer_session_rate, self.limits.viewer_session_burst, clock)
        #: Destroyed sessions whose `timeout` event has not reached a long poll yet.
        self.timed_out: dict[int, Session] = {}
        self._errors_logged = LogLimiter(lines=1, clock=clock)
        #: Callbacks for operators' logs and metrics: (event name, fields).
        self.observers: list[Callable[[str, JSON], None]] = []
        #: Called with every handle detached (by request, session destroy, timeout or a closed WebSocket).
        self.detach_hooks: list[Callable[[Handle], None]] = []
        #: The ICE servers (with fresh TURN credentials) a new session is handed, given the session's log tag.
        self.ice_servers = ice_servers
        for plugin in self.plugins.values():
            plugin.observer = self._observe
            plugin.idle_for = self.idle_for

    # -- entry points for transports -----------------------------------------------------------------------
    def receive(
        self,
        data: bytes | str,
        *,
        session_id: int | None = None,
        handle_id: int | None = None,
        remote: str = "",
        connection: Connection | None = None,
    ) -> JSON:
        """Parse raw bytes and dispatch; malformed JSON gets Janus' 454 and changes nothing."""
        message, refused = self.parse(data)
        if refused is not None:
            return refused
        return self.handle(message, session_id=session_id, handle_id=handle_id, remote=remote, connection=connection)

    @staticmethod
    def parse(data: bytes | str) -> tuple[Any, JSON | None]:
        """A request's JSON, or the error reply for bytes that are none (too deep, not JSON): the transports'
        parsing, shared by a cluster node's router."""
        if json_depth_exceeds(data, MAX_JSON_DEPTH):
            refused = error_reply(ErrorCode.INVALID_JSON, f"JSON error: nested deeper than {MAX_JSON_DEPTH} levels")
            return None, refused
        try:
            return json.loads(data), None
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return None, error_reply(ErrorCode.INVALID_JSON, f"JSON error: {str(exc)[:200]}")

    def handle(
        self,
        message: Any,
        *,
        session_id: int | None = None,
        handle_id: int | None = None,
        remote: str = "",
        connection: Connection | None = None,
    ) -> JSON:
        """Dispatch one request. Path ids (HTTP) win over body ids, which only WebSocket clients rely on."""
        if not isinstance(message, dict):
            return error_reply(ErrorCode.INVALID_JSON_OBJECT, "JSON error: not an object")
        transaction = message.get("transaction")
        try:
            return self._dispatch(message, transaction, session_id, handle_id, remote, connection)
        except JanusError as exc:
            sid = session_id if session_id is not None else parse_id(message.get("session_id"))
            return error_reply(exc.code, exc.reason, transaction, sid)
        except Exception as exc:
            # A request nobody foresaw must not take the transport down nor write a traceback per request.
            self.log_unexpected(exc, "request", remote)
            return error_reply(ErrorCode.UNKNOWN, "Unexpected error while handling the request", transaction)

    def log_unexpected(self, exc: BaseException, what: str, remote: str) -> None:
        """One short line per place and address, rate-limited: a client that triggers a bug again and again
        must not fill the disk."""
        frame = exc.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        where = f"{frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}" if frame else "?"
        suppressed = self._errors_logged.allow((where, remote))
        if suppressed is not None:
            more = f" ({suppressed} more not logged)" if suppressed else ""
            log.warning("%s from %s failed: %s at %s%s", what, remote, type(exc).__name__, where, more)

    def check_secret(self, secret: Any, remote: str = "") -> None:
        """Constant-time API secret check; wrong secrets are counted and slowed down per address.

        The right secret always passes, even from a throttled address: hundreds of phones share one carrier-NAT
        address, and one misconfigured agent must not lock out all of them. Generated secrets are far too long
        to guess, so the throttle only has to slow guessing down, which refusing wrong answers does."""
        if not self.api_secret:
            return
        if isinstance(secret, str) and hmac.compare_digest(
            secret.encode("utf-8", "surrogatepass"), self.api_secret.encode()
        ):
            return
        key = ("apisecret", client_key(remote))
        wait = self.throttle.blocked_for(key)
        if wait > 0:
            raise JanusError(ErrorCode.UNAUTHORIZED, f"Too many failed attempts, retry in {wait:.0f} s")
        self.throttle.failure(key)
        self._observe("unauthorized", {"remote": remote})
        raise JanusError(ErrorCode.UNAUTHORIZED, "Unauthorized request (wrong or missing secret/token)")

    def authorize(self, secret: Any, remote: str, session: Session | None = None) -> bool:
        """Whether a request is trusted (it carries the API secret).

        aPuppet had to publish its API secret in the web-admin, opening the whole API to anyone. Here the secret
        stays with the agents: a request *without* one may create a viewer session (`viewer_access`), which can
        watch and control a device only with that device's password — plugins refuse it everything else. A
        *wrong* secret is always refused (and throttled); a trusted session must keep sending the secret."""
        if not self.api_secret:
            return True
        if secret is None or secret == "":
            if session is not None and not session.trusted:
                return False
            if session is None and self.viewer_access:
                return False
            raise JanusError(ErrorCode.UNAUTHORIZED, "Unauthorized request (wrong or missing secret/token)")
        self.check_secret(secret, remote)
        return True

    def poll_session(self, session_id: int | None, secret: Any, remote: str = "") -> Session:
        """Check a long poll (GET /janus/S): the secret, the session; a poll keeps the session alive.

        A session that timed out since the client's last poll is returned once more, destroyed, holding only
        its `timeout` event, so that the client learns why (as in Janus) instead of a bare "no such session"."""
        if secret:
            self.check_secret(secret, remote)
        session = self._find(session_id, remote, None)
        if session is None and session_id is not None:
            gone = self.timed_out.get(session_id)
            if gone is not None and self._reachable(gone, remote, None):
                del self.timed_out[session_id]
                return gone
        if session is None:
            raise JanusError(ErrorCode.SESSION_NOT_FOUND, f"No such session {session_id}")
        self.authorize(secret, remote, session)
        session.touch(self.clock(), remote)
        return session

    def _find(self, session_id: int | None, remote: str, connection: Connection | None) -> Session | None:
        session = self.sessions.get(session_id) if session_id is not None else None
        return session if session is not None and self._reachable(session, remote, connection) else None

    @staticmethod
    def _reachable(session: Session, remote: str, connection: Connection | None) -> bool:
        """Whether a request may address the session at all.

        Session ids are bearer tokens. A viewer session (no API secret behind it) is bound to where it was made:
        its WebSocket if it has one, else its creator's address (an IPv6 /64: a browser's temporary addresses
        rotate); from elsewhere it does not exist (458), so a leaked id is no use. Trusted sessions stay reachable
        from anywhere: agents roam between networks."""
        if session.trusted:
            return True
        if session.connection is not None:
            return connection is session.connection
        return connection is None and client_key(remote) == client_key(session.creator)

    def idle_for(self, session_id: int) -> float | None:
        """Seconds since the session was last heard from; 0 while its WebSocket is open (a live connection is
        not a vanished creator, however quiet)."""
        session = self.sessions.get(session_id)
        if session is None:
            return None
        if session.connection is not None:
            return 0.0
        return self.clock() - session.last_activity

    def expire(self) -> list[int]:
        """Destroy sessions idle for longer than `session_timeout`; transports call this periodically."""
        now = self.clock()
        expired = [s for s in self.sessions.values() if now - s.last_activity > self.session_timeout]
        for session in expired:
            self.destroy_session(session, reason="timeout")
        cutoff = now - max(TIMED_OUT_KEPT_FOR, self.session_timeout)
        for sid in [sid for sid, s in self.timed_out.items() if s.last_activity < cutoff]:
            del self.timed_out[sid]
        return [s.id for s in expired]

    def destroy_session(self, session: Session, reason: str = "destroy") -> None:
        """Release a session and everything its handles own; safe to call twice."""
        if session.destroyed:
            return
        for handle in list(session.handles.values()):
            self._detach(handle, notify=False)
        session.destroyed = True
        session.events.clear()
        if self.sessions.pop(session.id, None) is not None and session.counted:
            self.sessions_by_address.release(client_key(session.creator))
            if not session.trusted:
                self.viewers_by_address.release(client_key(session.creator))
        if reason == "timeout":
            # Janus tells the client why its session went; a long-poll client gets it on its waiting (or next)
            # poll, which finds the destroyed session here.
            timeout = {"janus": "timeout", "session_id": session.id}
            if session.sink is not None:
                session.sink(timeout)
            else:
                session.events.append(timeout)
                session.last_activity = self.clock()
                if len(self.timed_out) >= MAX_TIMED_OUT_KEPT:
                    del self.timed_out[next(iter(self.timed_out))]
                self.timed_out[session.id] = session
        session.wake_listeners()
        self._observe("session_destroyed", {"session": session.id, "reason": reason, "remote": session.remote})

    def connection_closed(self, connection: Connection) -> None:
        """A WebSocket closed: its sessions go with it, as in Janus (no session reclaiming)."""
        for session in [s for s in self.sessions.values() if s.connection is connection]:
            self.destroy_session(session, reason="transport closed")

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            self.destroy_session(session, reason="shutdown")
        for plugin in self.plugins.values():
            await plugin.close()

    # -- dispatch ------------------------------------------------------------------------------------------
    def _dispatch(
        self,
        msg: JSON,
        transaction: Any,
        session_id: int | None,
        handle_id: int | None,
        remote: str,
        connection: Connection | None,
    ) -> JSON:
        verb = msg.get("janus")
        if not isinstance(verb, str) or not verb:
            raise JanusError(ErrorCode.MISSING_REQUEST, "Missing mandatory element (janus)")
        if transaction is None:
            raise JanusError(ErrorCode.MISSING_MANDATORY_ELEMENT, "Missing mandatory element (transaction)")
        if not isinstance(transaction, str):
            raise JanusError(ErrorCode.INVALID_ELEMENT_TYPE, "Invalid element type (transaction should be a string)")
        if session_id is None:
            session_id = parse_id(msg.get("session_id"))
            if handle_id is None:
                handle_id = parse_id(msg.get("handle_id"))
        if verb not in ROOT_VERBS | SESSION_VERBS | HANDLE_VERBS:
            raise JanusError(ErrorCode.UNKNOWN_REQUEST, f"Unknown request '{verb}'")

        if not session_id:
            if verb not in ROOT_VERBS:
                raise JanusError(ErrorCode.INVALID_REQUEST_PATH, f"Unhandled request '{verb}' at this path")
            if verb == "ping":
                return {"janus": "pong", "transaction": transaction}
            if verb == "info":
                return self.info(transaction)
            trusted = self.authorize(msg.get("apisecret"), remote)
            return self._create(transaction, remote, connection, trusted)

        if verb in OPEN_VERBS:
            raise JanusError(ErrorCode.INVALID_REQUEST_PATH, f"Unhandled request '{verb}' at this path")
        session = self.admit(msg, session_id, remote, connection)
        base: JSON = {"session_id": session.id, "transaction": transaction}
        if session.ending is not None and verb in ("attach", "message", "trickle"):
            # Ended on purpose (api.ending) and told why: until it goes it may poll, hang up and destroy, no more.
            raise JanusError(ErrorCode.UNAUTHORIZED, f"Session ended ({session.ending[1]})")

        if not handle_id:
            if verb not in SESSION_VERBS:
                raise JanusError(ErrorCode.INVALID_REQUEST_PATH, f"Unhandled request '{verb}' at this path")
            if verb == "keepalive":
                return {"janus": "ack", **base}
            if verb == "destroy":
                self.destroy_session(session)
                return {"janus": "success", **base}
            if verb == "claim":
                if connection is not None:
                    session.bind(connection)
                return {"janus": "success", **base}
            return self._attach(session, msg, base)

        handle = session.handles.get(handle_id)
        if handle is None:
            raise JanusError(ErrorCode.HANDLE_NOT_FOUND, f"No such handle {handle_id} in session {session.id}")
        if verb not in HANDLE_VERBS:
            raise JanusError(ErrorCode.INVALID_REQUEST_PATH, f"Unhandled request '{verb}' at this path")
        if verb == "detach":
            self._detach(handle, notify=True)
            return {"janus": "success", **base}
        if verb == "hangup":
            handle.plugin.hangup(handle)
            return {"janus": "success", **base}
        if verb == "trickle":
            return self._trickle(handle, msg, base)
        return self._message(handle, msg, transaction, base)

    def admit(self, msg: JSON, session_id: int | None, remote: str, connection: Connection | None) -> Session:
        """The session a request below the root addresses, after its secret and reach are checked; the request
        counts as activity. A cluster node checks a request this way before sending it on to another node."""
        secret = msg.get("apisecret")
        if secret:
            self.check_secret(secret, remote)
        session = self._find(session_id, remote, connection)
        if session is None:
            raise JanusError(ErrorCode.SESSION_NOT_FOUND, f"No such session {session_id}")
        self.authorize(secret, remote, session)
        session.touch(self.clock(), remote)
        return session

    def adopt(self, session: Session) -> None:
        """Keep a session made elsewhere (a cluster node's guest of another node's session): not counted against
        the per-address caps here, since its client was counted where it created the session."""
        session.counted = False
        self.sessions[session.id] = session

    def detach_handle(self, handle: Handle, notify: bool = True) -> None:
        """Detach a handle from outside a request (a cluster node whose peer went away)."""
        self._detach(handle, notify)

    def _create(self, transaction: str, remote: str, connection: Connection | None, trusted: bool) -> JSON:
        limits = self.limits
        client = client_key(remote)
        # Caps first, the rate last: a refused request must not spend a token.
        if not trusted and self.viewers_by_address.held(client) >= limits.viewer_sessions_per_address:
            self._refuse(remote, "viewer_sessions_per_address")
        if self.sessions_by_address.held(client) >= limits.sessions_per_address:
            self._refuse(remote, "sessions_per_address")
        if not trusted and not self.viewer_rate.take(client):
            self._refuse(remote, "viewer_session_rate")
        self.sessions_by_address.acquire(client, limits.sessions_per_address)
        if not trusted:
            self.viewers_by_address.acquire(client, limits.viewer_sessions_per_address)
        session = Session(new_id(self.sessions), self.clock(), remote, connection)
        session.trusted = trusted
        self.sessions[session.id] = session
        self._observe("session_created", {"session": session.id, "remote": remote, "viewer_only": not trusted})
        data: JSON = {"id": session.id}
        if self.ice_servers is not None:
            # In the reply, not in the page or its URL: a viewer session needs them too (its browser may be
            # behind a UDP-blocking firewall), and Janus clients ignore what they do not know.
            servers = self.ice_servers(tag(session.id))
            if servers:
                data["ice_servers"] = servers
        return {"janus": "success", "transaction": transaction, "data": data}

    def _attach(self, session: Session, msg: JSON, base: JSON) -> JSON:
        name = msg.get("plugin")
        if not isinstance(name, str):
            raise JanusError(ErrorCode.MISSING_MANDATORY_ELEMENT, "Missing mandatory element (plugin)")
        plugin = self.plugins.get(name)
        if plugin is None:
            raise JanusError(ErrorCode.PLUGIN_NOT_FOUND, f"No such plugin '{name}'")
        if len(session.handles) >= self.limits.handles_per_session:
            self._refuse(session.remote, "handles_per_session")
        opaque = msg.get("opaque_id")
        handle = Handle(new_id(session.handles), session, plugin, opaque if isinstance(opaque, str) else None)
        session.handles[handle.id] = handle
        try:
            plugin.attach(handle)
        except Exception as exc:
            session.handles.pop(handle.id, None)
            self.log_unexpected(exc, f"attach to {name}", session.remote)
            raise JanusError(ErrorCode.PLUGIN_ATTACH, f"Couldn't attach to plugin: {exc}") from exc
        return {"janus": "success", **base, "data": {"id": handle.id}}

    def _detach(self, handle: Handle, notify: bool) -> None:
        if handle.detached:
            return
        try:
            handle.plugin.detach(handle)
        except Exception as exc:
            self.log_unexpected(exc, f"detach from {handle.plugin.name}", handle.session.remote)
        if notify:
            handle._push({"janus": "detached", "session_id": handle.session.id, "sender": handle.id})
        handle.detached = True
        handle.cancel_tasks()
        handle.session.handles.pop(handle.id, None)
        for hook in self.detach_hooks:
            hook(handle)

    def _trickle(self, handle: Handle, msg: JSON, base: JSON) -> JSON:
        if "candidate" in msg:
            candidates = [msg["candidate"]]
        elif "candidates" in msg:
            candidates = msg["candidates"]
        else:
            raise JanusError(ErrorCode.MISSING_MANDATORY_ELEMENT, "Missing mandatory element (candidate|candidates)")
        if not isinstance(candidates, list) or not all(isinstance(c, dict) for c in candidates):
            raise JanusError(ErrorCode.INVALID_ELEMENT_TYPE, "Invalid element type (candidate should be an object)")
        handle.plugin.trickle(handle, candidates)
        return {"janus": "ack", **base}

    def _message(self, handle: Handle, msg: JSON, transaction: str, base: JSON) -> JSON:
        body = msg.get("body")
        if body is None:
            raise JanusError(ErrorCode.MISSING_MANDATORY_ELEMENT, "Missing mandatory element (body)")
        if not isinstance(body, dict):
            raise JanusError(ErrorCode.INVALID_ELEMENT_TYPE, "Invalid element type (body should be an object)")
        jsep = msg.get("jsep")
        if jsep is not None:
            if not isinstance(jsep, dict):
                raise JanusError(ErrorCode.INVALID_ELEMENT_TYPE, "Invalid element type (jsep should be an object)")
            if jsep.get("type") not in ("offer", "answer"):
                raise JanusError(ErrorCode.JSEP_UNKNOWN_TYPE, f"JSEP error: unknown message type '{jsep.get('type')}'")
            if not isinstance(jsep.get("sdp"), str) or not jsep["sdp"].startswith("v="):
                raise JanusError(ErrorCode.JSEP_INVALID_SDP, "JSEP error: invalid SDP")
        try:
            result = handle.plugin.message(handle, transaction, body, jsep)
        except JanusError:
            raise
        except Exception as exc:
            self.log_unexpected(exc, f"message to {handle.plugin.name}", handle.session.remote)
            raise JanusError(ErrorCode.PLUGIN_MESSAGE, "Plugin error while handling the message") from exc
        if result is None:
            return {"janus": "ack", **base}
        assert isinstance(result, PluginResult)
        reply: JSON = {
            "janus": "success",
            **base,
            "sender": handle.id,
            "plugindata": {"plugin": handle.plugin.name, "data": result.data},
        }
        if result.jsep is not None:
            reply["jsep"] = result.jsep
        return reply

    def info(self, transaction: Any) -> JSON:
        reply: JSON = {
            "janus": "server_info",
            "name": "apuppet (Janus-compatible API)",
            "version": 1000,
            "version_string": __version__,
            "author": "apuppet",
            "data_channels": True,
            "ipv6": True,
            "session-timeout": int(self.session_timeout),
            "api_secret": bool(self.api_secret),
            "viewer_access": bool(self.api_secret) and self.viewer_access,
            "transports": {},
            "events": {},
            "loggers": {},
            "plugins": {
                p.name: {
                    "name": p.name,
                    "version": p.version,
                    "version_string": p.version_string,
                    "description": p.description,
                    "author": "apuppet",
                }
                for p in self.plugins.values()
            },
        }
        if transaction is not None:
            reply["transaction"] = transaction
        return reply

    # -- what transports hold open: counted here, so that every limit lives in one place ----------------------
    def open_poll(self, session: Session, remote: str) -> None:
        """A long poll starts waiting; 429 past `polls_per_address` or `polls_per_session`. Pair with
        `close_poll`."""
        client = ("address", client_key(remote))
        if not self.held.acquire(client, self.limits.polls_per_address):
            self._refuse(remote, "polls_per_address")
        if not self.held.acquire(("session", session.id), self.limits.polls_per_session):
            self.held.release(client)
            self._refuse(remote, "polls_per_session")

    def close_poll(self, session: Session, remote: str) -> None:
        self.held.release(("address", client_key(remote)))
        self.held.release(("session", session.id))

    def open_websocket(self, remote: str) -> None:
        """A WebSocket is accepted; 429 past `websockets_per_address`. Pair with `close_websocket`."""
        if not self.held.acquire(("websocket", client_key(remote)), self.limits.websockets_per_address):
            self._refuse(remote, "websockets_per_address")

    def close_websocket(self, remote: str) -> None:
        self.held.release(("websocket", client_key(remote)))

    def note_limit(self, limit: str, remote: str) -> None:
        """Report a request refused by a limit (transports call it for theirs); logged rate-limited."""
        self._observe("limit_reached", {"limit": limit, "remote": remote})

    def _refuse(self, remote: str, limit: str) -> None:
        self.note_limit(limit, remote)
        raise JanusError(ErrorCode.TOO_MANY_REQUESTS, f"Too many requests: over the limit {limit}")

    def _observe(self, event: str, fields: JSON) -> None:
        """Pass an operator event on, ids replaced by tags: the event stream is logged, and an id is a bearer
        token. Plugins' events come through here too."""
        if ID_FIELDS.intersection(fields):
            fields = {k: tag(v) if k in ID_FIELDS and isinstance(v, int | str) else v for k, v in fields.items()}
        for observer in self.observers:
            observer(event, fields)
