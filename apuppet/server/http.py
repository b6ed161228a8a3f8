"""Janus REST transport on aiohttp: a thin adapter that moves bytes between HTTP and the `Gateway`.

What clients rely on (spec §2, §9.4): ids from the path win over string copies in the body; a long poll without
`maxev` returns exactly one JSON object (the Android agent crashes on arrays and empty bodies), with `maxev` an
array; an idle poll ends with `{"janus":"keepalive"}` after `poll_timeout`; CORS like Janus; any content type
(janus.js sends `destroy` with `sendBeacon`, i.e. text/plain).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from ..api.errors import ErrorCode, JanusError
from ..api.gateway import Gateway, error_reply, parse_id
from ..api.longpoll import wait_events
from ..api.session import Session
from .routing import Routing, SingleNode

log = logging.getLogger(__name__)

CORS_HEADERS = {"Access-Control-Allow-Origin": "*"}
#: Janus holds an idle long poll this long before answering with a keepalive.
POLL_TIMEOUT = 30.0
MAX_EVENTS_PER_POLL = 100
#: A request body must arrive within this many seconds (a client dribbling bytes holds a connection otherwise).
BODY_TIMEOUT = 30.0
#: ...and may not stop for this long before it is complete. A Janus request is a few KB, sent in one go; a body
#: that stops short is one whose length lied (a `Content-Length` above what was sent, a chunk size of 2^64-1,
#: which aiohttp's parser waits for without telling its size), and it is answered 408 now rather than at the end
#: of `BODY_TIMEOUT`.
BODY_STALL = 5.0


def remote_of(request: web.BaseRequest) -> str:
    return request.remote or ""


async def read_body(request: web.BaseRequest, timeout: float = BODY_TIMEOUT) -> bytes:
    """The request body within `timeout` seconds and without a pause of `BODY_STALL` (`TimeoutError`), and no
    larger than the application's `client_max_size` (`HTTPRequestEntityTooLarge`, at once when the
    `Content-Length` says so)."""
    limit = request.client_max_size
    declared = request.content_length
    if limit and declared is not None and declared > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
    content = request.content
    if content.is_eof():
        # All of it came with the head (a Janus request, nearly always): no timer to set.
        whole = content.read_nowait()
        if limit and len(whole) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(whole))
        return whole
    body = bytearray()
    async with asyncio.timeout(timeout):
        while True:
            async with asyncio.timeout(min(BODY_STALL, timeout)):
                chunk = await content.readany()
            if not chunk:
                return bytes(body)
            body += chunk
            if limit and len(body) > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))


def json_response(payload: Any, status: int = 200) -> web.Response:
    if isinstance(payload, dict) and payload.get("janus") == "error" and status == 200:
        if payload["error"]["code"] == ErrorCode.TOO_MANY_REQUESTS:
            status = 429
    return web.Response(
        body=json.dumps(payload, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=CORS_HEADERS,
    )


class RestTransport:
    def __init__(
        self, gateway: Gateway, poll_timeout: float = POLL_TIMEOUT, body_timeout: float = BODY_TIMEOUT
    ) -> None:
        self.gateway = gateway
        self.poll_timeout = poll_timeout
        self.body_timeout = body_timeout
        #: Where requests and long polls go: a cluster node's router (apuppet.cluster, `redis_url`), or this node.
        self.router: Routing = SingleNode(gateway)

    def add_routes(self, app: web.Application, websocket_handler: Any = None) -> None:
        app.router.add_route("OPTIONS", "/janus{tail:.*}", self.preflight)
        app.router.add_post("/janus", self.post)
        app.router.add_post("/janus/{session}", self.post)
        app.router.add_post("/janus/{session}/{handle}", self.post)
        app.router.add_get("/janus/info", self.info)
        app.router.add_get("/janus/{session}", self.poll)
        if websocket_handler is not None:
            app.router.add_get("/janus", websocket_handler)

    async def preflight(self, request: web.Request) -> web.Response:
        headers = {
            **CORS_HEADERS,
            "Access-Control-Allow-Methods": request.headers.get("Access-Control-Request-Method", "GET, POST, OPTIONS"),
            "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "Content-Type"),
            "Access-Control-Max-Age": "86400",
        }
        return web.Response(status=200, headers=headers)

    async def info(self, request: web.Request) -> web.Response:
        return json_response(self.gateway.info(None))

    async def post(self, request: web.Request) -> web.Response:
        session_id, handle_id = self._path_ids(request)
        if session_id == -1 or handle_id == -1:
            return json_response(error_reply(ErrorCode.INVALID_REQUEST_PATH, "Invalid path"), status=404)
        try:
            data = await read_body(request, self.body_timeout)
        except (web.HTTPRequestEntityTooLarge, TimeoutError) as exc:
            status, reason = 408, "Request body too slow"
            if isinstance(exc, web.HTTPRequestEntityTooLarge):
                status, reason = 413, "Request too large"
            response = json_response(error_reply(ErrorCode.TRANSPORT_SPECIFIC, reason), status=status)
            # Not kept alive for another request (aiohttp reads and drops the rest for up to 10 s, then closes).
            response.force_close()
            return response
        except ConnectionResetError:
            # The client hung up in the middle of its body: nobody is left to answer, and nothing went wrong here.
            return web.Response(status=499)
        remote = remote_of(request)
        reply = await self.router.receive(data, session_id=session_id, handle_id=handle_id, remote=remote)
        return json_response(reply)

    async def poll(self, request: web.Request) -> web.StreamResponse:
        session_id, _ = self._path_ids(request)
        query = request.query
        relayed = await self.router.poll(
            session_id, query.get("apisecret"), remote_of(request), self._maxev(query), lambda: _closed(request)
        )
        if relayed is not None:
            status, payload = relayed
            return web.Response(status=499) if payload is None else json_response(payload, status=status)
        try:
            session = self.gateway.poll_session(session_id, query.get("apisecret"), remote_of(request))
        except JanusError as exc:
            status = 404 if exc.code == ErrorCode.SESSION_NOT_FOUND else 200
            return json_response(error_reply(exc.code, exc.reason), status=status)
        maxev = self._maxev(query)
        remote = remote_of(request)
        try:
            self.gateway.open_poll(session, remote)
        except JanusError as exc:
            return json_response(error_reply(exc.code, exc.reason))
        try:
            return await self._wait_events(request, session, maxev)
        finally:
            self.gateway.close_poll(session, remote)

    @staticmethod
    def _maxev(query: Mapping[str, str]) -> int | None:
        text = query.get("maxev")
        return None if text is None else min(parse_id(text) or 1, MAX_EVENTS_PER_POLL)

    async def _wait_events(self, request: web.Request, session: Session, maxev: int | None) -> web.StreamResponse:
        def closed() -> bool:
            return _closed(request)

        def touch() -> None:
            session.touch(self.gateway.clock())

        outcome = await wait_events(session, maxev, self.poll_timeout, closed=closed, touch=touch)
        if outcome is None:
            # The client vanished: its events stay queued for the next poll.
            return web.Response(status=499)
        return json_response(outcome[1], status=outcome[0])

    @staticmethod
    def _path_ids(request: web.Request) -> tuple[int | None, int | None]:
        """Path ids as ints; -1 marks a path segment that is not an id."""
        ids: list[int | None] = []
        for key in ("session", "handle"):
            text = request.match_info.get(key)
            if text is None:
                ids.append(None)
            else:
                value = parse_id(text)
                ids.append(value if value is not None else -1)
        return ids[0], ids[1]


def _closed(request: web.Request) -> bool:
    """Whether the client of a waiting request went away."""
    transport = request.transport
    return transport is None or transport.is_closing()
