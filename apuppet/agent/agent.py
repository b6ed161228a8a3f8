"""The device agent: connects like the aPuppet Android agent, streams while watched, obeys the room's commands.

One connection = one Janus session with a textroom handle (room `<Session ID>`, joined as `device:<name>`) and
a streaming handle (RTP mountpoint with the same id). The agent keeps one going for as long as it runs: when
the server restarts, forgets the session, or the control peer fails, everything of the old connection is
released and a new one is made, keeping the same Session ID and password when the server allows it (a viewer
can simply reconnect), or new ones when the old room is still held (error 418).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from . import commands
from .commands import Command, CommandError, Copy, GlobalAction, Key, Paste, Ping, Resolution, Swipe, Tap
from .credentials import Credentials
from .janus import JanusClient, JanusReplyError, SessionLost, api_url
from .rtpsender import RtpSender
from .sources.base import Geometry, Source
from .streaming import Mountpoint
from .textroom import ROOM_EXISTS, TextRoomPeer
from .video import VideoSettings, VideoStreamer

log = logging.getLogger(__name__)

#: Commands waiting to run; more than this and the viewer is flooding: new ones are dropped.
MAX_PENDING_COMMANDS = 64
#: Janus error for a wrong or missing API secret.
UNAUTHORIZED = 403
#: Seconds after a viewer joins at which keyframes are sent.
KEYFRAMES_AFTER_JOIN = (0.0, 0.5, 1.5)
CONNECT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, JanusReplyError, SessionLost, ConnectionError, ValueError)


@dataclass(slots=True)
class AgentOptions:
    server_url: str
    secret: str
    name: str = "apuppet agent"
    credential_style: str = "strong"
    video: VideoSettings = field(default_factory=VideoSettings)
    max_size: int = 800
    #: PEM file of the CA (or self-signed certificate) to trust for an https server, besides the system's.
    ca_file: str | None = None
    request_timeout: float = 15.0
    retry_min: float = 0.25
    retry_max: float = 2.0


class Agent:
    def __init__(
        self, options: AgentOptions, source: Source, on_connected: Callable[[Agent], None] | None = None
    ) -> None:
        api_url(options.server_url)  # a malformed URL is an error now, not a retry loop later
        self.options = options
        self.source = source
        self.on_connected = on_connected
        self.credentials = Credentials.generate(options.credential_style)
        self.username = f"device:{options.name}"
        self.state = "disconnected"
        self.geometry: Geometry | None = None
        self.viewers: set[str] = set()
        #: Janus session ids of the latest connections (tests watch reconnects through it).
        self.sessions: deque[int] = deque(maxlen=16)
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._lost = asyncio.Event()
        self._janus: JanusClient | None = None
        self._room: TextRoomPeer | None = None
        self._mountpoint: Mountpoint | None = None
        self._sender: RtpSender | None = None
        self._video: VideoStreamer | None = None
        self._commands: asyncio.Queue[Command] = asyncio.Queue(MAX_PENDING_COMMANDS)
        self._joined = False
        self._room_created = False

    @property
    def link(self) -> str:
        return self.credentials.link(self.options.server_url)

    @property
    def info(self) -> dict[str, Any]:
        return {"session": self.credentials.session, "password": self.credentials.password, "url": self.link}

    # -- lifecycle --------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect and stay connected until `stop()`."""
        await self.source.start()
        self.geometry = Geometry.fit(self.source.width, self.source.height, self.options.max_size)
        self.source.on_clipboard = self._clipboard
        worker = asyncio.get_running_loop().create_task(self._execute(), name="agent-commands")
        delay = self.options.retry_min
        try:
            connector = None
            if self.options.ca_file:
                context = ssl.create_default_context()
                context.load_verify_locations(cafile=self.options.ca_file)
                connector = aiohttp.TCPConnector(ssl=context)
            async with aiohttp.ClientSession(connector=connector) as http:
                while not self._stop.is_set():
                    try:
                        await self._connect(http)
                    except CONNECT_ERRORS as exc:
                        if isinstance(exc, JanusReplyError) and exc.code == UNAUTHORIZED and not self.sessions:
                            # A wrong secret on the very first try is a setting to fix, not an outage to wait out.
                            raise PermissionError(f"the server refused the API secret: {exc.reason}") from None
                        log.warning("cannot connect to %s: %s", self.options.server_url, exc or type(exc).__name__)
                    else:
                        delay = self.options.retry_min
                        await self._wait_lost()
                    finally:
                        # Bounded: on a process-wide cancellation neither the server (maybe in this process)
                        # nor aiortc's own tasks may answer; then only local resources are released.
                        task = asyncio.current_task()
                        cancelling = task is not None and task.cancelling() > 0
                        try:
                            async with asyncio.timeout(2 if cancelling else 10):
                                await self._disconnect(remote=not cancelling)
                        except TimeoutError:
                            log.warning("clean-up of the connection timed out")
                    if self._stop.is_set():
                        break
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._stop.wait()
                    delay = min(delay * 2, self.options.retry_max)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await self.source.stop()

    def stop(self) -> None:
        self._stop.set()

    async def _connect(self, http: aiohttp.ClientSession) -> None:
        self.state = "connecting"
        self._lost.clear()
        self._joined = False
        self._room_created = False
        janus = self._janus = JanusClient(
            http, self.options.server_url, self.options.secret, request_timeout=self.options.request_timeout
        )
        self.sessions.append(await janus.create())
        room = self._room = TextRoomPeer(janus, self._event, timeout=self.options.request_timeout)
        # The server hanging up the control peer ends this connection as surely as a lost session.
        janus.on_event = lambda e: (
            room.failed.set() if e.get("janus") == "hangup" and e.get("sender") == room.handle else None
        )
        await room.connect()
        for _ in range(3):
            creds = self.credentials
            try:
                await room.checked(
                    {
                        "textroom": "create",
                        "is_private": False,
                        "permanent": False,
                        "room": creds.session,
                        "pin": creds.password,
                    }
                )
                self._room_created = True
                break
            except JanusReplyError as exc:
                if exc.code != ROOM_EXISTS:
                    raise
                # The old room is still held (our previous session has not expired yet): new identity.
                log.info("our Session ID is still taken on the server; choosing a new one")
                self.credentials = Credentials.generate(self.options.credential_style)
        else:
            raise JanusReplyError(ROOM_EXISTS, "could not find a free session ID")
        creds = self.credentials
        await room.checked(
            {
                "textroom": "join",
                "room": creds.session,
                "username": self.username,
                "display": self.options.name,
                "pin": creds.password,
            }
        )
        self._joined = True
        self._mountpoint = Mountpoint(janus)
        port = await self._mountpoint.create(creds.session, creds.password)
        host = urlsplit(self.options.server_url).hostname or "127.0.0.1"
        self._sender = await RtpSender.open(host, port)
        assert self.geometry is not None
        self._video = VideoStreamer(self.source, self.geometry, self._sender, self.options.video)
        self.state = "connected"
        # A viewer may join between our join and here (a page waiting for us to come back joins as soon as we
        # are in the room, while the mountpoint is still being made): it is counted, but nothing streams yet.
        if self.viewers:
            self._start_video()
        self.connected.set()
        # Janus session ids are bearer tokens for the API: they stay out of logs, like the pin.
        log.info("connected; video goes to %s:%d", host, port)
        if self.on_connected is not None:
            try:
                self.on_connected(self)
            except Exception:
                log.exception("the on_connected callback failed")

    async def _wait_lost(self) -> None:
        assert self._janus is not None and self._room is not None
        waits = [asyncio.ensure_future(e.wait()) for e in (self._stop, self._lost, self._janus.lost, self._room.failed)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if not self._stop.is_set():
            log.warning("connection lost; reconnecting")

    async def _disconnect(self, remote: bool = True) -> None:
        """Release everything of the current connection; remote clean-up only if the server still has it."""
        self.connected.clear()
        self.state = "disconnected"
        self._joined = False
        self.viewers.clear()
        if self._video is not None:
            await self._video.stop()
            self._video = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        janus, room, mountpoint = self._janus, self._room, self._mountpoint
        self._janus = self._room = self._mountpoint = None
        if remote and janus is not None and not janus.lost.is_set():
            try:
                async with asyncio.timeout(3):
                    # Only a room we created: with error 418 the id belongs to someone else's room.
                    if room is not None and self._room_created:
                        await room.destroy_room(self.credentials.session)
                    if mountpoint is not None:
                        await mountpoint.destroy()
            except CONNECT_ERRORS as exc:
                log.debug("clean-up on the server failed: %s", exc)
        if room is not None:
            await room.close()
        if janus is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    await janus.close(destroy=remote)
        while not self._commands.empty():
            self._commands.get_nowait()

    # -- room events ------------------------------------------------------------------------------------------
    def _event(self, msg: dict[str, Any]) -> None:
        kind = msg.get("textroom")
        ours = msg.get("room") == self.credentials.session and self._joined
        if ours and (kind == "destroyed" or (kind == "kicked" and msg.get("username") == self.username)):
            log.warning("the server closed our room (%s)", kind)
            self._lost.set()
            return
        # Before our own join succeeds, the server echoes that join back: not a viewer (spec §3.1).
        if not self._joined or msg.get("room") != self.credentials.session:
            return
        user = msg.get("username") if kind != "message" else msg.get("from")
        if user == self.username or not isinstance(user, str):
            return
        if kind == "join":
            self._viewer_joined(user)
        elif kind == "leave":
            self._viewer_left(user)
        elif kind == "message":
            text = msg.get("text")
            if isinstance(text, str):
                self._received(text)

    def _viewer_joined(self, user: str) -> None:
        log.info("viewer joined (%d watching)", len(self.viewers) + 1)
        self.viewers.add(user)
        assert self.geometry is not None
        self._say(str(Resolution(self.geometry.width, self.geometry.height)))
        if self._video is not None:
            self._start_video()
        self.state = "sharing"

    def _start_video(self) -> None:
        video = self._video
        assert video is not None
        video.start()
        # The viewer's PeerConnection comes up some time after its join, and a relay without a keyframe
        # cache (Janus: `videobufferkf: false`) needs one after that: send a few as it connects.
        loop = asyncio.get_running_loop()
        for delay in KEYFRAMES_AFTER_JOIN:
            loop.call_later(delay, lambda: video.request_keyframe() if video is self._video else None)
        self.state = "sharing"

    def _viewer_left(self, user: str) -> None:
        self.viewers.discard(user)
        log.info("viewer left (%d watching)", len(self.viewers))
        if not self.viewers:
            if self._video is not None:
                self._video.cancel()
            if self.state == "sharing":
                self.state = "connected"

    def _received(self, text: str) -> None:
        try:
            command = commands.parse(text)
        except CommandError as exc:
            log.warning("ignoring a malformed command: %s", exc)
            return
        if isinstance(command, Ping):
            self._say(f"pong,{command.timestamp}")
        elif isinstance(command, Tap | Swipe | GlobalAction | Key | Paste):
            try:
                self._commands.put_nowait(command)
            except asyncio.QueueFull:
                log.warning("too many pending commands; dropping %s", type(command).__name__)
        # Pong, Copy and Resolution come from other agents or echo ours: nothing to do.

    def _say(self, text: str) -> None:
        if self._room is None:
            return
        try:
            self._room.message(self.credentials.session, text)
        except ConnectionError as exc:
            log.warning("cannot send on the control channel: %s", exc)

    def _clipboard(self, text: str) -> None:
        if self.viewers:
            self._say(str(Copy(text)))

    # -- input ------------------------------------------------------------------------------------------------
    async def _execute(self) -> None:
        """Run commands one after the other, as gestures on a touch screen happen in order."""
        while True:
            command = await self._commands.get()
            try:
                await self._perform(command)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the source failed to perform %s", type(command).__name__)

    async def _perform(self, command: Command) -> None:
        g = self.geometry
        assert g is not None
        src = self.source
        if isinstance(command, Tap):
            x, y = g.to_source(command.x, command.y)
            await src.tap(x, y, command.duration)
        elif isinstance(command, Swipe):
            x1, y1 = g.to_source(command.x1, command.y1)
            x2, y2 = g.to_source(command.x2, command.y2)
            await src.swipe(x1, y1, x2, y2, command.duration)
        elif isinstance(command, GlobalAction):
            await src.global_action(command.action)
        elif isinstance(command, Key):
            await src.key(command.key)
        elif isinstance(command, Paste):
            await src.paste(command.text)
