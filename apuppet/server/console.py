"""The operator console at /console/: a thin aiohttp adapter over the logins, the live view, session endings, the
audit log and the recordings.

Every API route needs the login cookie (401 without it); the state-changing ones (POST) also need the request's
Origin to be this server and the login's CSRF token in `X-Console-Token`. Without an admin secret configured the
whole console answers 403 and the page says how to enable it. The live view is a Server-Sent Events stream: a
new state whenever an operator event arrives (at most every `DEBOUNCE` seconds), else every `REFRESH` seconds.

In a cluster (`join`) the console is the cluster's, whichever node answers: logins are kept in Redis, the live
view asks every other node for its devices (request/reply through the bus, so it is never stale and costs
nothing while nobody watches) and names each device's node, and "end" goes to the node named with the session.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..api.ending import DEVICE_MESSAGE, OPERATOR, OPERATOR_MESSAGE, Endings
from ..api.gateway import Gateway
from ..api.throttle import Throttle
from ..config import Config
from ..netaddr import client_key
from ..ops.audit import AuditStore
from ..ops.eventlog import SECRET_KEYS
from ..ops.liveview import devices, snapshot
from ..ops.logins import MAX_LOGINS, Login, LoginRefused, Logins
from ..ops.recordings import Recording, find_recording, list_recordings, recordings_dir
from .http import remote_of

if TYPE_CHECKING:
    from ..cluster.node import ClusterNode

CONSOLE_DIR = Path(__file__).parent.parent / "web" / "static" / "console"
COOKIE = "apuppet_console"
CSRF_HEADER = "X-Console-Token"
#: Seconds between two states on the live stream however busy the server, and without any event.
DEBOUNCE = 0.25
REFRESH = 5.0
#: In a cluster, other nodes' changes are looked for this often (a state goes out only when something changed).
CLUSTER_REFRESH = 1.0
#: Seconds another node has to send its devices; one that does not is left out of the view (and named).
SNAPSHOT_TIMEOUT = 2.0
#: Operator events kept for the console's activity list.
ACTIVITY = 100
MAX_PAGE = 200
#: SQLite's integers are 64-bit: a larger offset would be an error, not an empty page.
MAX_OFFSET = 2**62
UNAVAILABLE = "the cluster's Redis cannot be reached; retry in a moment"
DISABLED = (
    "The console is disabled: no admin_secret is configured. Set admin_secret in config.yaml (or leave it empty in "
    "a server started with --config, which generates one into credentials_dir) and restart the server."
)


def _error(status: int, reason: str, **extra: Any) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status, headers={"Cache-Control": "no-store"})


def _data(payload: Any) -> web.Response:
    return web.json_response(payload, headers={"Cache-Control": "no-store"})


def _number(value: str | None, what: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{what} must be a number\n") from None
    if not math.isfinite(number):
        raise web.HTTPBadRequest(text=f"{what} must be a number\n")
    return number


class Console:
    def __init__(
        self,
        config: Config,
        gateway: Gateway,
        endings: Endings,
        *,
        throttle: Throttle,
        audit: Callable[[], AuditStore | None],
        base_dir: Path | None = None,
    ) -> None:
        """`throttle` counts wrong admin secrets (the server's, shared with /metrics); `audit` returns the
        server's audit store while it has one; `base_dir` is where `recordings_dir` starts."""
        self.gateway = gateway
        self.endings = endings
        self.logins = Logins(config.admin_secret, throttle=throttle)
        self.audit = audit
        self.recordings = recordings_dir(config, base_dir)
        self.limits = {
            "max_session_minutes": config.max_session_minutes,
            "viewer_idle_minutes": config.viewer_idle_minutes,
        }
        self.activity: deque[dict[str, Any]] = deque(maxlen=ACTIVITY)
        self._streams: set[asyncio.Event] = set()
        self._closing = False
        #: In a cluster: this node and its name, and what a lost Redis raises.
        self.node: ClusterNode | None = None
        self.name = ""
        self._store_errors: tuple[type[Exception], ...] = ()
        gateway.observers.append(self._observe)

    def join(self, node: ClusterNode, endings: Endings) -> None:
        """Serve the cluster's console: logins in Redis, the other nodes' devices in the view, ends sent where the
        session is. `endings`: the node's (`ClusterNode.cluster_endings`)."""
        from ..cluster.bus import REDIS_ERRORS

        self.node = node
        self.name = node.name
        self.endings = endings
        self.logins.store = node.login_store(MAX_LOGINS)
        self._store_errors = REDIS_ERRORS
        node.router.services["console.snapshot"] = self._serve_snapshot
        node.router.services["console.end"] = self._serve_end

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/console", self._redirect)
        app.router.add_get("/console/", self._index)
        app.router.add_get("/console/api/login", self._whoami)
        app.router.add_post("/console/api/login", self._log_in)
        app.router.add_post("/console/api/logout", self._log_out)
        app.router.add_get("/console/api/state", self._state)
        app.router.add_get("/console/api/live", self._live)
        app.router.add_post("/console/api/sessions/{session}/end", self._end)
        app.router.add_get("/console/api/audit", self._audit)
        app.router.add_get("/console/api/recordings", self._recordings)
        app.router.add_get("/console/api/recordings/{name}", self._recording)
        if CONSOLE_DIR.is_dir():
            app.router.add_static("/console/assets/", CONSOLE_DIR, show_index=False, append_version=False)

    async def close(self) -> None:
        """Server shutdown: every live stream ends."""
        self._closing = True
        for changed in self._streams:
            changed.set()

    # -- the operator event stream ---------------------------------------------------------------------------
    def _observe(self, event: str, fields: dict[str, Any]) -> None:
        """A gateway observer: no work here beyond a bounded append (it runs inside requests of every client)."""
        kept = {k: v for k, v in fields.items() if k.lower() not in SECRET_KEYS and isinstance(v, str | int | float)}
        self.activity.append({"time": time.time(), "event": event, **kept})
        for changed in self._streams:
            changed.set()

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        """Console events go where the gateway's go (the event log, metrics, the activity list)."""
        for observer in self.gateway.observers:
            observer(event, fields)

    # -- pages -----------------------------------------------------------------------------------------------
    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/console/")

    async def _index(self, request: web.Request) -> web.StreamResponse:
        index = CONSOLE_DIR / "index.html"
        if not index.is_file():
            return web.Response(text="console not installed", status=404)
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    # -- logins ----------------------------------------------------------------------------------------------
    async def _login(self, request: web.Request, *, changes: bool = False) -> Login:
        """The request's login, or the HTTP error to answer; `changes`: a state-changing request (Origin and CSRF
        token checked too)."""
        if not self.logins.enabled:
            raise _refusal(403, DISABLED, disabled=True)
        try:
            login = await self.logins.check(request.cookies.get(COOKIE))
        except self._store_errors:
            raise _refusal(503, UNAVAILABLE) from None
        if login is None:
            raise _refusal(401, "log in first")
        if changes and not (_same_origin(request) and self.logins.csrf_ok(login, request.headers.get(CSRF_HEADER))):
            raise _refusal(403, "cross-site request refused")
        return login

    async def _whoami(self, request: web.Request) -> web.Response:
        login = await self._login(request)
        return _data({"csrf": login.csrf, "limits": self.limits})

    async def _log_in(self, request: web.Request) -> web.Response:
        if not self.logins.enabled:
            return _error(403, DISABLED, disabled=True)
        if not _same_origin(request):
            return _error(403, "cross-site request refused")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, 'expected JSON: {"secret": "…"}')
        secret = body.get("secret") if isinstance(body, dict) else None
        if not isinstance(secret, str):
            return _error(400, 'expected JSON: {"secret": "…"}')
        remote = remote_of(request)
        try:
            login = await self.logins.log_in(secret, remote, client_key(remote))
        except LoginRefused as exc:
            if exc.status == 401:
                self._emit("console_login_failed", {"remote": remote})
            return _error(exc.status, exc.reason)
        except self._store_errors:
            return _error(503, UNAVAILABLE)
        self._emit("console_login", {"remote": remote})
        response = _data({"csrf": login.csrf, "limits": self.limits})
        response.set_cookie(
            COOKIE,
            login.token,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/console/",
            max_age=int(self.logins.lifetime),
        )
        return response

    async def _log_out(self, request: web.Request) -> web.Response:
        login = await self._login(request, changes=True)
        try:
            await self.logins.log_out(login.token)
        except self._store_errors:
            return _error(503, UNAVAILABLE)
        for changed in self._streams:
            changed.set()  # its stream sees the login gone and ends
        response = _data({"logged_out": True})
        response.del_cookie(COOKIE, path="/console/")
        return response

    # -- live view -------------------------------------------------------------------------------------------
    def _here(self) -> dict[str, Any]:
        """This node's devices and recent operator events, each named with the node."""
        found = devices(snapshot(self.gateway, transports=self.node.router.transports if self.node else None))
        for device in found:
            device["node"] = self.name
        return {"devices": found, "activity": [{**a, "node": self.name} for a in self.activity][-50:]}

    async def state(self) -> dict[str, Any]:
        """The console's view: this node's, and in a cluster every live node's (`unreachable`: the nodes that did
        not answer in time)."""
        here = self._here()
        found, activity, unreachable = here["devices"], here["activity"], []
        if self.node is not None:
            for name, answer in (await self.node.router.ask_all("console.snapshot", {}, SNAPSHOT_TIMEOUT)).items():
                if answer is None:
                    unreachable.append(name)
                    continue
                found += [{**d, "node": name} for d in answer.get("devices", []) if isinstance(d, dict)]
                activity += [{**a, "node": name} for a in answer.get("activity", []) if isinstance(a, dict)]
            found.sort(key=lambda d: d.get("since") or 0)
            activity.sort(key=lambda a: a.get("time") or 0)
        return {
            "time": time.time(),
            "node": self.name,
            "devices": found,
            "activity": activity[-50:],
            "unreachable": unreachable,
        }

    async def _serve_snapshot(self, call: dict[str, Any]) -> dict[str, Any]:
        return self._here()

    async def _state(self, request: web.Request) -> web.Response:
        await self._login(request)
        return _data(await self.state())

    async def _live(self, request: web.Request) -> web.StreamResponse:
        """A state on every local operator event, and in a cluster whenever another node's devices changed
        (looked for every `CLUSTER_REFRESH` s); an unchanged one at least every `REFRESH` s (the page's clocks)."""
        login = await self._login(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        changed = asyncio.Event()
        self._streams.add(changed)
        wait = REFRESH if self.node is None else CLUSTER_REFRESH
        sent, sent_at = None, 0.0
        try:
            while not self._closing and await self._still(login):
                changed.clear()
                state = await self.state()
                seen = json.dumps({**state, "time": 0}, sort_keys=True)
                if seen != sent or time.monotonic() - sent_at >= REFRESH:
                    payload = json.dumps(state, separators=(",", ":"))
                    await response.write(f"event: state\ndata: {payload}\n\n".encode())
                    sent, sent_at = seen, time.monotonic()
                try:
                    await asyncio.wait_for(changed.wait(), wait)
                except TimeoutError:
                    continue
                await asyncio.sleep(DEBOUNCE)
            if not self._closing:
                await response.write(b"event: logout\ndata: {}\n\n")
        except (ConnectionResetError, ConnectionError):
            pass  # the page went away
        finally:
            self._streams.discard(changed)
        return response

    async def _still(self, login: Login) -> bool:
        try:
            return await self.logins.valid(login)
        except self._store_errors:
            return True  # Redis lost for a moment: the stream goes on, the next check decides

    async def _end(self, request: web.Request) -> web.Response:
        """End the session the view showed with that tag on that node (`?node=`, this one by default; in a
        cluster without it, wherever the tag is found)."""
        await self._login(request, changes=True)
        session_tag, node = request.match_info["session"], request.query.get("node", "")
        if not node or node == self.name or self.node is None:
            status, body = self._end_here(session_tag, remote_of(request))
            if status != 404 or self.node is None or node:
                return _data(body) if status == 200 else _error(status, body["error"])
        assert self.node is not None
        ask = {"tag": session_tag, "remote": remote_of(request)}
        answers = await self.node.router.ask_all("console.end", ask, nodes=[node] if node else None)
        results = [a for a in answers.values() if isinstance(a, dict)]
        for answer in sorted(results, key=lambda a: a.get("status") != 200):
            if answer.get("status") == 200:
                return _data(answer.get("body", {}))
            if answer.get("status") == 409:
                return _error(409, "the session is ending already")
        if node and not results:
            return _error(503, f"node {node[:64]} does not answer; its sessions end with it")
        return _error(404, "no such session (it may have ended already)")

    def _end_here(self, session_tag: str, remote: str) -> tuple[int, dict[str, Any]]:
        session = self.endings.find(session_tag)
        if session is None:
            return 404, {"error": "no such session (it may have ended already)"}
        device = any(d["session"] == session_tag for d in devices(snapshot(self.gateway)))
        if not self.endings.end(session, OPERATOR, DEVICE_MESSAGE if device else OPERATOR_MESSAGE):
            return 409, {"error": "the session is ending already"}
        self._emit("console_end_session", {"session": session_tag, "remote": remote})
        return 200, {"ended": session_tag, "device": device, "node": self.name}

    async def _serve_end(self, call: dict[str, Any]) -> dict[str, Any]:
        status, body = self._end_here(str(call.get("tag", ""))[:16], str(call.get("remote", ""))[:64])
        return {"status": status, "body": body}

    # -- audit log and recordings ----------------------------------------------------------------------------
    async def _audit(self, request: web.Request) -> web.Response:
        await self._login(request)
        store = self.audit()
        if store is None:
            return _data({"records": [], "total": 0, "enabled": False})
        q = request.query
        limit = int(min(MAX_PAGE, max(1, _number(q.get("limit"), "limit") or 50)))
        offset = int(min(MAX_OFFSET, max(0, _number(q.get("offset"), "offset") or 0)))
        records, total = store.query(
            device=q.get("device") or None,
            address=q.get("address") or None,
            since=_number(q.get("since"), "since"),
            until=_number(q.get("until"), "until"),
            limit=limit,
            offset=offset,
        )
        recordings = list_recordings(self.recordings)
        rows = []
        for r in records:
            recording = find_recording(recordings, r.room, r.started, r.ended)
            rows.append(
                {
                    "room": r.room,
                    "device": r.device,
                    "viewer": r.viewer,
                    "address": r.viewer_address,
                    "started": r.started,
                    "ended": r.ended,
                    "reason": r.end_reason,
                    "recording": recording.name if recording is not None else None,
                }
            )
        return _data({"records": rows, "total": total, "offset": offset, "limit": limit, "enabled": True})

    async def _recordings(self, request: web.Request) -> web.Response:
        await self._login(request)
        return _data({"recordings": [_recording_json(r) for r in list_recordings(self.recordings)]})

    async def _recording(self, request: web.Request) -> web.StreamResponse:
        """One recording, with Range (the `<video>` seeks); only a name `list_recordings` returns is served, never
        a path made from what the client sent."""
        await self._login(request)
        name = request.match_info["name"]
        recording = next((r for r in list_recordings(self.recordings) if r.name == name), None)
        if recording is None:
            return _error(404, "no such recording")
        headers = {"Content-Type": "video/mp4", "Cache-Control": "no-store"}
        if request.query.get("download"):
            headers["Content-Disposition"] = f'attachment; filename="{recording.stem}"'
        return web.FileResponse(recording.path, headers=headers)


def _recording_json(r: Recording) -> dict[str, Any]:
    return {
        "name": r.name,
        "device": r.device,
        "started": r.started.timestamp(),
        "duration": r.duration,
        "size": r.size,
        "complete": r.complete,
    }


def _refusal(status: int, reason: str, **extra: Any) -> web.HTTPException:
    kinds: dict[int, type[web.HTTPException]] = {401: web.HTTPUnauthorized, 503: web.HTTPServiceUnavailable}
    kind = kinds.get(status, web.HTTPForbidden)
    body = json.dumps({"error": reason, **extra})
    return kind(text=body, content_type="application/json", headers={"Cache-Control": "no-store"})


def _same_origin(request: web.Request) -> bool:
    """A browser names the page a request comes from in Origin; only this server's own pages may change state."""
    return request.headers.get("Origin") == f"{request.scheme}://{request.host}"
