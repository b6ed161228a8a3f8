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
from .errors import ErrorCode, JanusError
from .plugin import JSON, Plugin, PluginResult
from .session import Handle, Owner, Session
from .throttle import Throttle

log = logging.getLogger(__name__)

ROOT_VERBS = {"create", "info", "ping"}
SESSION_VERBS = {"attach", "keepalive", "destroy", "claim"}
HANDLE_VERBS = {"message", "trickle", "hangup", "detach"}
#: Verbs answered without the API secret, as in Janus.
OPEN_VERBS = {"info", "ping"}

#: Janus issues ids below 2^53 so that JavaScript numbers hold them exactly.
MAX_ID = 2**53 - 1


def new_id(taken: Iterable[int] | dict[int, Any]) -> int:
    while True:
        candidate = secrets.randbelow(MAX_ID) + 1
        if candidate not in taken:
            return candidate


def parse_id(value: Any) -> int | None:
    """Ids arrive as JSON numbers from janus.js and as strings from the aPuppet agent."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 20:
        return int(value)
    return None


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
    ) -> None:
        self.plugins: dict[str, Plugin] = {p.name: p for p in plugins}
        self.api_secret = api_secret
        self.viewer_access = viewer_access
        self.session_timeout = session_timeout
        self.clock = clock
        self.sessions: dict[int, Session] = {}
        self.throttle = secret_throttle or Throttle(clock=clock)
        #: Callbacks for operators' logs and metrics: (event name, fields).
        self.observers: list[Callable[[str, JSON], None]] = []
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
        owner: Owner | None = None,
    ) -> JSON:
        """Parse raw bytes and dispatch; malformed JSON gets Janus' 454 and changes nothing."""
        try:
            message = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            return error_reply(ErrorCode.INVALID_JSON, f"JSON error: {exc}")
        return self.handle(message, session_id=session_id, handle_id=handle_id, remote=remote, owner=owner)

    def handle(
        self,
        message: Any,
        *,
        session_id: int | None = None,
        handle_id: int | None = None,
        remote: str = "",
        owner: Owner | None = None,
    ) -> JSON:
        """Dispatch one request. Path ids (HTTP) win over body ids, which only WebSocket clients rely on."""
        if not isinstance(message, dict):
            return error_reply(ErrorCode.INVALID_JSON_OBJECT, "JSON error: not an object")
        transaction = message.get("transaction")
        try:
            return self._dispatch(message, transaction, session_id, handle_id, remote, owner)
        except JanusError as exc:
            sid = session_id if session_id is not None else parse_id(message.get("session_id"))
            return error_reply(exc.code, exc.reason, transaction, sid)

    def check_secret(self, secret: Any, remote: str = "") -> None:
        """Constant-time API secret check, slowed down per address after repeated failures."""
        if not self.api_secret:
            return
        wait = self.throttle.blocked_for(("apisecret", remote))
        if wait > 0:
            raise JanusError(ErrorCode.UNAUTHORIZED, f"Too many failed attempts, retry in {wait:.0f} s")
        if not isinstance(secret, str) or not hmac.compare_digest(
            secret.encode("utf-8", "surrogatepass"), self.api_secret.encode()
        ):
            self.throttle.failure(("apisecret", remote))
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
        """Check a long poll (GET /janus/S): the secret, the session; a poll keeps the session alive."""
        if secret:
            self.check_secret(secret, remote)
        session = self.sessions.get(session_id) if session_id is not None else None
        if session is None:
            raise JanusError(ErrorCode.SESSION_NOT_FOUND, f"No such session {session_id}")
        self.authorize(secret, remote, session)
        session.touch(self.clock(), remote)
        return session

    def idle_for(self, session_id: int) -> float | None:
        session = self.sessions.get(session_id)
        return None if session is None else self.clock() - session.last_activity

    def expire(self) -> list[int]:
        """Destroy sessions idle for longer than `session_timeout`; transports call this periodically."""
        now = self.clock()
        expired = [s for s in self.sessions.values() if now - s.last_activity > self.session_timeout]
        for session in expired:
            log.info("session %s timed out", session.id)
            session.push({"janus": "timeout", "session_id": session.id})
            self.destroy_session(session, reason="timeout")
        return [s.id for s in expired]

    def destroy_session(self, session: Session, reason: str = "destroy") -> None:
        """Release a session and everything its handles own; safe to call twice."""
        if session.destroyed:
            return
        for handle in list(session.handles.values()):
            self._detach(handle, notify=False)
        session.destroyed = True
        session.events.clear()
        self.sessions.pop(session.id, None)
        session.wake_listeners()
        self._observe("session_destroyed", {"session": session.id, "reason": reason, "remote": session.remote})

    def transport_gone(self, owner: Owner) -> None:
        """A WebSocket closed: its sessions go with it, as in Janus (no session reclaiming)."""
        for session in [s for s in self.sessions.values() if s.owner is owner]:
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
        owner: Owner | None,
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
            return self._create(transaction, remote, owner, trusted)

        if verb in OPEN_VERBS:
            raise JanusError(ErrorCode.INVALID_REQUEST_PATH, f"Unhandled request '{verb}' at this path")
        secret = msg.get("apisecret")
        if secret:
            self.check_secret(secret, remote)
        session = self.sessions.get(session_id)
        if session is None:
            raise JanusError(ErrorCode.SESSION_NOT_FOUND, f"No such session {session_id}")
        self.authorize(secret, remote, session)
        session.touch(self.clock(), remote)
        base: JSON = {"session_id": session.id, "transaction": transaction}

        if not handle_id:
            if verb not in SESSION_VERBS:
                raise JanusError(ErrorCode.INVALID_REQUEST_PATH, f"Unhandled request '{verb}' at this path")
            if verb == "keepalive":
                return {"janus": "ack", **base}
            if verb == "destroy":
                self.destroy_session(session)
                return {"janus": "success", **base}
            if verb == "claim":
                if owner is not None:
                    session.bind(owner)
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

    def _create(self, transaction: str, remote: str, owner: Owner | None, trusted: bool) -> JSON:
        session = Session(new_id(self.sessions), self.clock(), remote, owner)
        session.trusted = trusted
        self.sessions[session.id] = session
        self._observe("session_created", {"session": session.id, "remote": remote, "viewer_only": not trusted})
        return {"janus": "success", "transaction": transaction, "data": {"id": session.id}}

    def _attach(self, session: Session, msg: JSON, base: JSON) -> JSON:
        name = msg.get("plugin")
        if not isinstance(name, str):
            raise JanusError(ErrorCode.MISSING_MANDATORY_ELEMENT, "Missing mandatory element (plugin)")
        plugin = self.plugins.get(name)
        if plugin is None:
            raise JanusError(ErrorCode.PLUGIN_NOT_FOUND, f"No such plugin '{name}'")
        opaque = msg.get("opaque_id")
        handle = Handle(new_id(session.handles), session, plugin, opaque if isinstance(opaque, str) else None)
        session.handles[handle.id] = handle
        try:
            plugin.attach(handle)
        except Exception as exc:
            session.handles.pop(handle.id, None)
            log.exception("plugin %s failed to attach", name)
            raise JanusError(ErrorCode.PLUGIN_ATTACH, f"Couldn't attach to plugin: {exc}") from exc
        return {"janus": "success", **base, "data": {"id": handle.id}}

    def _detach(self, handle: Handle, notify: bool) -> None:
        if handle.detached:
            return
        try:
            handle.plugin.detach(handle)
        except Exception:
            log.exception("plugin %s failed to detach handle %s", handle.plugin.name, handle.id)
        if notify:
            handle._push({"janus": "detached", "session_id": handle.session.id, "sender": handle.id})
        handle.detached = True
        handle.cancel_tasks()
        handle.session.handles.pop(handle.id, None)

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
            log.exception("plugin %s failed on a message", handle.plugin.name)
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

    def _observe(self, event: str, fields: JSON) -> None:
        for observer in self.observers:
            observer(event, fields)
