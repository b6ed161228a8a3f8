"""The agent's side of the Janus REST API: requests and the long-poll loop, as the aPuppet Android agent does it.

Same wire shape as the Android agent (spec §2): `POST /janus[/S[/H]]` with `apisecret`, 12-digit decimal
transactions and the ids repeated as strings in message bodies; `GET /janus/S?apisecret=` without `maxev`.
Two things differ on purpose: events are routed to the handle that sent them (not by plugin name), and a lost
session is *noticed* (HTTP 404 or error 458 on the poll, or the server unreachable for `lost_after` seconds)
and reported through `lost`, so the agent can start over instead of polling a dead session for ever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

JSON = dict[str, Any]
log = logging.getLogger(__name__)

#: Events kept per handle for a later `event()` call.
MAX_QUEUED_EVENTS = 100
#: Janus error "No such session".
SESSION_NOT_FOUND = 458


class JanusReplyError(Exception):
    """A request of ours failed: the server answered with a Janus or plugin error, or with something we cannot use
    (code 0). Not `apuppet.api.errors.JanusError`, which is the server raising an error reply to send."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} ({code})")
        self.code = code
        self.reason = reason


class SessionLost(Exception):
    """The server forgot our session (restart, timeout) or stayed unreachable."""


def api_url(server_url: str) -> str:
    """The REST root: only scheme://host[:port] of the server URL counts, the path is dropped (spec §2.1)."""
    parts = urlsplit(server_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"server URL must look like http(s)://host[:port]/, got {server_url!r}")
    return f"{parts.scheme}://{parts.netloc}/janus"


def transaction() -> str:
    """12 random decimal digits, like the Android agent."""
    return "".join(secrets.choice("0123456789") for _ in range(12))


class JanusClient:
    """One Janus session over REST. Use `create()` first; `close()` destroys the session and stops polling."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        server_url: str,
        secret: str,
        request_timeout: float = 15.0,
        poll_retry: float = 0.5,
        lost_after: float = 10.0,
    ) -> None:
        self.http = http
        self.url = api_url(server_url)
        self.secret = secret
        self.request_timeout = request_timeout
        self.poll_retry = poll_retry
        self.lost_after = lost_after
        self.session_id: int | None = None
        self.lost = asyncio.Event()
        self._queues: dict[int, asyncio.Queue[JSON]] = {}
        self._poller: asyncio.Task[None] | None = None
        #: Called for every polled event before it is queued (e.g. to log); must not block.
        self.on_event: Callable[[JSON], None] | None = None

    # -- requests ---------------------------------------------------------------------------------------------
    async def request(self, body: JSON, handle: int | None = None, session: bool = True) -> JSON:
        url = self.url
        if session:
            if self.session_id is None:
                raise SessionLost("no session")
            url += f"/{self.session_id}"
            if handle is not None:
                url += f"/{handle}"
        payload = {**body, "transaction": transaction(), "apisecret": self.secret}
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        # json.dumps builds the body: names and pins can hold any character without breaking the JSON.
        async with self.http.post(
            url, data=json.dumps(payload), headers={"Content-Type": "application/json"}, timeout=timeout
        ) as resp:
            if resp.status == 404:
                self.lost.set()
                raise SessionLost(f"HTTP 404 from {url}")
            resp.raise_for_status()
            reply = json.loads(await resp.text())
        if not isinstance(reply, dict):
            raise JanusReplyError(0, "reply is not a JSON object")
        if reply.get("janus") == "error":
            error = reply.get("error") or {}
            code, reason = int(error.get("code", 0)), str(error.get("reason", "error"))
            if code == SESSION_NOT_FOUND:
                self.lost.set()
                raise SessionLost(reason)
            raise JanusReplyError(code, reason)
        return reply

    async def create(self) -> int:
        reply = await self.request({"janus": "create"}, session=False)
        self.session_id = int(reply["data"]["id"])
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name=f"janus-poll-{self.session_id}")
        return self.session_id

    async def attach(self, plugin: str) -> int:
        reply = await self.request({"janus": "attach", "plugin": plugin})
        handle = int(reply["data"]["id"])
        self._queues[handle] = asyncio.Queue(MAX_QUEUED_EVENTS)
        return handle

    async def message(self, handle: int, body: JSON, jsep: JSON | None = None) -> JSON:
        """A plugin message; returns the reply (`success` with plugindata, or `ack`). Plugin errors raise."""
        msg: JSON = {"janus": "message", "session_id": str(self.session_id), "handle_id": str(handle), "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        reply = await self.request(msg, handle)
        data = reply.get("plugindata", {}).get("data", {})
        if isinstance(data, dict) and "error_code" in data:
            raise JanusReplyError(int(data["error_code"]), str(data.get("error", "plugin error")))
        return reply

    async def event(self, handle: int, predicate: Callable[[JSON], bool] | None = None, timeout: float = 15.0) -> JSON:
        """The next polled event for `handle` that matches `predicate` (others are dropped)."""
        queue = self._queues[handle]
        async with asyncio.timeout(timeout):
            while True:
                lost = asyncio.ensure_future(self.lost.wait())
                got = asyncio.ensure_future(queue.get())
                try:
                    await asyncio.wait((lost, got), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    lost.cancel()
                    if not got.done():
                        got.cancel()
                if not got.done() or got.cancelled():
                    raise SessionLost("session lost while waiting for an event")
                event = got.result()
                if predicate is None or predicate(event):
                    return event

    def events(self, handle: int) -> asyncio.Queue[JSON]:
        return self._queues[handle]

    async def close(self, destroy: bool = True) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        if destroy and self.session_id is not None and not self.lost.is_set():
            try:
                await self.request({"janus": "destroy"})
            except (aiohttp.ClientError, OSError, TimeoutError, JanusReplyError, SessionLost, ValueError) as exc:
                log.debug("session destroy failed: %s", exc)
        self.session_id = None

    # -- long poll --------------------------------------------------------------------------------------------
    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        url = f"{self.url}/{self.session_id}"
        # The server holds an idle poll 30 s; allow more before calling the connection dead.
        timeout = aiohttp.ClientTimeout(total=60, sock_connect=self.request_timeout)
        failing_since: float | None = None
        while True:
            try:
                async with self.http.get(url, params={"apisecret": self.secret}, timeout=timeout) as resp:
                    if resp.status == 404:
                        log.warning("the server no longer knows our session (restarted or timed out)")
                        self.lost.set()
                        return
                    resp.raise_for_status()
                    payload = json.loads(await resp.text())
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                now = loop.time()
                failing_since = failing_since or now
                if now - failing_since > self.lost_after:
                    log.warning("server unreachable for %.0f s: %s", now - failing_since, exc)
                    self.lost.set()
                    return
                await asyncio.sleep(self.poll_retry)
                continue
            failing_since = None
            for event in payload if isinstance(payload, list) else [payload]:
                if not isinstance(event, dict):
                    continue
                if event.get("janus") == "error" and (event.get("error") or {}).get("code") == SESSION_NOT_FOUND:
                    self.lost.set()
                    return
                self._dispatch(event)

    def _dispatch(self, event: JSON) -> None:
        if event.get("janus") == "keepalive":
            return
        if self.on_event is not None:
            self.on_event(event)
        sender = event.get("sender")
        queue = self._queues.get(sender) if isinstance(sender, int) else None
        if queue is not None:
            if queue.full():  # nobody waits on this handle any more: keep the newest, bounded
                queue.get_nowait()
            queue.put_nowait(event)
        elif event.get("janus") != "keepalive":
            log.debug("event for no known handle: %s", event.get("janus"))
