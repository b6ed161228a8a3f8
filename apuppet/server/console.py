"""The operator console at /console/: a thin aiohttp adapter over the logins, the live view, session endings, the
audit log and the recordings.

Every API route needs the login cookie (401 without it); the state-changing ones (POST) also need the request's
Origin to be this server and the login's CSRF token in `X-Console-Token`. Without an admin secret configured the
whole console answers 403 and the page says how to enable it. The live view is a Server-Sent Events stream: a
new state whenever an operator event arrives (at most every `DEBOUNCE` seconds), else every `REFRESH` seconds.

In a cluster (`join`) the console is the cluster's, whichever node answers: logins are kept in Redis, the live
view asks every other node for its devices (request/reply through the bus, so it costs nothing while nobody
watches) and names each device's node, and "end" goes to the node named with the session. The view is built once
for all: every live stream and `/console/api/state` share it, the other nodes asked at most once a
`CLUSTER_REFRESH` and this node's part made again only after an operator event or a `VIEW_TICK`, so that k open
pages cost what one does.

The event loop also relays the media: whatever may take long (the audit log's SQLite query, the recordings
folder) runs in a worker thread, and the recordings listing is kept while the folder is unchanged
(`RecordingIndex`).
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..api.ending import DEVICE_MESSAGE, OPERATOR, OPERATOR_MESSAGE, Endings
from ..api.gateway import Gateway
from ..api.throttle import Throttle
from ..config import Config
from ..netaddr import client_key
from ..ops.audit import AuditStore, Record
from ..ops.eventlog import SECRET_KEYS
from ..ops.liveview import devices, snapshot
from ..ops.logins import MAX_LOGINS, Login, LoginRefused, Logins
from ..ops.recordings import Listing, Recording, RecordingIndex, recording_at, recordings_dir
from .http import read_body, remote_of

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
#: The shared view is at most this old when a stream or a request is given it (a local event renews it sooner).
VIEW_TICK = 1.0
#: Operator events kept for the console's activity list.
ACTIVITY = 100
MAX_PAGE = 200
#: SQLite's integers are 64-bit: a larger offset would be an error, not an empty page.
MAX_OFFSET = 2**62
UNAVAILABLE = "the cluster's Redis cannot be reached; retry in a moment"
AUDIT_UNREADABLE = "the audit log cannot be read"
DISABLED = (
    "The console is disabled: no admin_secret is configured. Set admin_secret in config.yaml (or leave it empty in "
    "a server started with --config, which generates one into credentials_dir) and restart the server."
)


def _error(status: int, reason: str, **extra: Any) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status, headers={"Cache-Control": "no-store"})


def _closing(response: web.Response) -> web.Response:
    """For a body not read to its end: not kept alive for another request (aiohttp reads and drops the rest for
    up to 10 s, then closes)."""
    response.force_close()
    return response


def _data(payload: Any) -> web.Response:
    return web.json_response(payload, headers={"Cache-Control": "no-store"})


def _unreadable(folder: Path, exc: OSError) -> str:
    return f"the recordings folder {folder} cannot be read: {exc.strerror or exc} (is it the service user's?)"


@dataclass(frozen=True, slots=True)
class _View:
    """The console's state once built, and what every stream compares and sends of it."""

    state: dict[str, Any]
    #: The state's JSON without its time: equal for an unchanged view (built the same way, in the same order).
    seen: str
    #: The state's JSON (`/console/api/state`), and the Server-Sent Event carrying it: encoded once for all.
    body: bytes
    event: bytes
    #: `time.monotonic()` when built, and the local change count it shows.
    built: float
    generation: int


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
        self.index = RecordingIndex(self.recordings)
        #: The last listing and its JSON (made in the worker thread, reused while the folder is unchanged).
        self._listed: tuple[Listing, bytes] | None = None
        self.limits = {
            "max_session_minutes": config.max_session_minutes,
            "viewer_idle_minutes": config.viewer_idle_minutes,
        }
        self.activity: deque[dict[str, Any]] = deque(maxlen=ACTIVITY)
        self._streams: set[asyncio.Event] = set()
        self._closing = False
        #: The shared view: the latest, the one being built, the local changes seen so far, and the other nodes'
        #: answers with when they were asked (`time.monotonic()`).
        self._view: _View | None = None
        self._building: asyncio.Task[_View] | None = None
        self._generation = 0
        self._others: tuple[float, dict[str, Any]] = (-math.inf, {})
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
        building = self._building
        if building is not None and not building.done():
            # The streams waiting for it end with it; a node that does not answer ends it in SNAPSHOT_TIMEOUT.
            await asyncio.wait([building], timeout=SNAPSHOT_TIMEOUT + 1)
            building.cancel()
            await asyncio.gather(building, return_exceptions=True)

    # -- the operator event stream ---------------------------------------------------------------------------
    def _observe(self, event: str, fields: dict[str, Any]) -> None:
        """A gateway observer: no work here beyond a bounded append (it runs inside requests of every client)."""
        kept = {k: v for k, v in fields.items() if k.lower() not in SECRET_KEYS and isinstance(v, str | int | float)}
        self.activity.append({"time": time.time(), "event": event, **kept})
        self._generation += 1
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
            body = json.loads(await read_body(request))
        except (ValueError, UnicodeDecodeError):
            return _error(400, 'expected JSON: {"secret": "…"}')
        except TimeoutError:
            return _closing(_error(408, "request body too slow"))
        except web.HTTPRequestEntityTooLarge:
            return _closing(_error(413, "request too large"))
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
        return (await self.view()).state

    async def view(self) -> _View:
        """The shared view: the last one while it is younger than `VIEW_TICK` and no operator event came since,
        else a new one, built once for every caller waiting meanwhile."""
        view = self._view
        if view is not None and view.generation == self._generation and time.monotonic() - view.built < VIEW_TICK:
            return view
        if self._building is None or self._building.done():
            self._building = asyncio.create_task(self._build())
        # Shielded: a page that goes away leaves the view to the others waiting for it.
        return await asyncio.shield(self._building)

    async def _build(self) -> _View:
        found: list[dict[str, Any]] = []
        activity: list[dict[str, Any]] = []
        unreachable: list[str] = []
        for name, answer in (await self._ask_others()).items():
            if answer is None:
                unreachable.append(name)
                continue
            found += [{**d, "node": name} for d in answer.get("devices", []) if isinstance(d, dict)]
            activity += [{**a, "node": name} for a in answer.get("activity", []) if isinstance(a, dict)]
        # This node's part last, after any wait: it is as fresh as the generation it is stamped with.
        generation, here = self._generation, self._here()
        found += here["devices"]
        activity += here["activity"]
        if self.node is not None:
            found.sort(key=lambda d: d.get("since") or 0)
            activity.sort(key=lambda a: a.get("time") or 0)
        now = time.time()
        timeless = {"node": self.name, "devices": found, "activity": activity[-50:], "unreachable": unreachable}
        seen = json.dumps(timeless, separators=(",", ":"))
        body = f'{{"time":{json.dumps(now)},{seen[1:]}'.encode()
        view = _View(
            {"time": now, **timeless},
            seen,
            body,
            b"event: state\ndata: " + body + b"\n\n",
            time.monotonic(),
            generation,
        )
        self._view = view
        return view

    async def _ask_others(self) -> dict[str, Any]:
        """The other nodes' snapshots, asked at most once a `CLUSTER_REFRESH` (a local event does not ask again:
        it changed this node's part only)."""
        if self.node is None:
            return {}
        asked, answers = self._others
        if time.monotonic() - asked < CLUSTER_REFRESH:
            return answers
        asked = time.monotonic()
        answers = await self.node.router.ask_all("console.snapshot", {}, SNAPSHOT_TIMEOUT)
        self._others = (asked, answers)
        return answers

    async def _serve_snapshot(self, call: dict[str, Any]) -> dict[str, Any]:
        return self._here()

    async def _state(self, request: web.Request) -> web.Response:
        await self._login(request)
        body = (await self.view()).body
        return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-store"})

    async def _live(self, request: web.Request) -> web.StreamResponse:
        """A state on every local operator event, and in a cluster whenever another node's devices changed
        (looked for every `CLUSTER_REFRESH` s); an unchanged one at least every `REFRESH` s (the page's clocks)."""
        login = await self._login(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        changed = asyncio.Event()
        self._streams.add(changed)
        wait = REFRESH if self.node is None else CLUSTER_REFRESH
        sent, sent_at = "", 0.0
        try:
            while not self._closing and await self._still(login):
                changed.clear()
                view = await self.view()
                if view.seen != sent or time.monotonic() - sent_at >= REFRESH:
                    await response.write(view.event)
                    sent, sent_at = view.seen, time.monotonic()
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
        """One page of the audit log, each row with its session's recording, made in a worker thread: the query on
        a read-only connection of its own (a device filter scans the table), the rows matched with the listing.
        An unreadable recordings folder leaves the rows without recordings and says why (`recordings_error`)."""
        await self._login(request)
        store = self.audit()
        if store is None:
            return _data({"records": [], "total": 0, "enabled": False})
        q = request.query
        limit = int(min(MAX_PAGE, max(1, _number(q.get("limit"), "limit") or 50)))
        offset = int(min(MAX_OFFSET, max(0, _number(q.get("offset"), "offset") or 0)))
        since, until = _number(q.get("since"), "since"), _number(q.get("until"), "until")
        device, address = q.get("device") or None, q.get("address") or None
        path = store.path

        def page() -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
            reader = AuditStore.reader(path)
            try:
                records, total = reader.query(
                    device=device, address=address, since=since, until=until, limit=limit, offset=offset
                )
            finally:
                reader.close()
            extra: dict[str, Any] = {}
            try:
                listing = self.index.current()
            except OSError as exc:
                listing, extra["recordings_error"] = Listing(), _unreadable(self.recordings, exc)
            return [_audit_row(r, listing.find(r.room, r.started, r.ended)) for r in records], total, extra

        try:
            rows, total, extra = await asyncio.to_thread(page)
        except sqlite3.Error as exc:
            return _error(503, f"{AUDIT_UNREADABLE}: {exc}")
        return _data({"records": rows, "total": total, "offset": offset, "limit": limit, "enabled": True, **extra})

    async def _recordings(self, request: web.Request) -> web.Response:
        """The listing, made (and encoded) in a worker thread; 503 for a folder that cannot be read."""
        await self._login(request)
        try:
            body = await asyncio.to_thread(self._listing_json)
        except OSError as exc:
            return _error(503, _unreadable(self.recordings, exc))
        return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "no-store"})

    def _listing_json(self) -> bytes:
        """In a worker thread: the current listing as JSON, encoded again only when it changed."""
        listing = self.index.current()
        listed = self._listed
        if listed is None or listed[0] is not listing:
            recordings = [_recording_json(r) for r in listing.recordings]
            listed = (listing, json.dumps({"recordings": recordings}, separators=(",", ":")).encode())
            self._listed = listed
        return listed[1]

    async def _recording(self, request: web.Request) -> web.StreamResponse:
        """One recording, with Range (the `<video>` seeks): the file of that name in the folder, if the name is a
        recording's (which rules out any other path) and the file a regular one (not a symlink), looked up
        alone: a seeking player asks many times."""
        await self._login(request)
        try:
            recording = await asyncio.to_thread(recording_at, self.recordings, request.match_info["name"])
        except OSError as exc:
            return _error(503, _unreadable(self.recordings, exc))
        if recording is None:
            return _error(404, "no such recording")
        headers = {"Content-Type": "video/mp4", "Cache-Control": "no-store"}
        if request.query.get("download"):
            headers["Content-Disposition"] = f'attachment; filename="{recording.stem}"'
        return web.FileResponse(recording.path, headers=headers)


def _audit_row(r: Record, recording: Recording | None) -> dict[str, Any]:
    return {
        "room": r.room,
        "device": r.device,
        "viewer": r.viewer,
        "address": r.viewer_address,
        "started": r.started,
        "ended": r.ended,
        "reason": r.end_reason,
        "recording": recording.name if recording is not None else None,
    }


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
