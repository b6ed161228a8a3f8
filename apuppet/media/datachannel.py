"""One client's data-channel-only peer connection: the transport of the TextRoom plugin, without its protocol.

The plugin hands text in (`send`) and gets text out (`on_message`); everything aiortc is here. Two behaviours
of Janus' SCTP stack are reproduced because the aPuppet agent depends on them:

* the Android agent reads only channels that the *server* opened (it attaches its observer in
  `onDataChannel`), so requests are accepted on any channel but every message leaves on a channel this side
  opens, labelled ``JanusDataChannel``;
* that channel is opened when the first message has to go out (the agent continues its connect flow when it
  appears), and opened again if the client closed it.

A peer that does not read loses messages past `MAX_PENDING` / `MAX_BUFFERED` instead of growing the server's
memory; `dropped` counts them. Every callback given to aiortc is `contained`: neither a client's input nor a
bug in the plugin's `on_message` can end aiortc's receive loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .contain import CLOSE_TIMEOUT, contained
from .peers import Peers

if TYPE_CHECKING:
    from aiortc import RTCDataChannel

SERVER_LABEL = "JanusDataChannel"
#: Messages waiting for the server channel to open, and bytes queued in SCTP. Past them messages are dropped.
MAX_PENDING = 256
MAX_BUFFERED = 1 << 20


class NoOfferPending(Exception):
    """An answer came while no offer of ours waits for one."""


class DataChannelLink:
    """A server-offered peer connection with data channels only; created per `setup`, closed on hangup.

    The callbacks run inside aiortc's loops, through `contained`; `on_message_error` answers a message whose
    `on_message` raised. `on_up` runs once when the connection is up, `on_gone` when it failed or closed
    on its own (with the state's name); neither runs after `close()`.
    """

    def __init__(
        self,
        peers: Peers,
        on_message: Callable[[str | bytes], None],
        on_up: Callable[[], None],
        on_gone: Callable[[str], None],
        on_message_error: Callable[[Exception], None] | None = None,
        session: Any = None,
        address: str = "",
        name: str = "datachannel",
    ) -> None:
        # Counted against the client's caps (`peers.PeerBudget`); raises `TooManyPeerConnections`. `name` (e.g.
        # "handle 3f2a") prefixes the peer connection's log lines.
        self.pc = peers.create(session, address, name)
        # Fixed places, never per link: `contain` rate-limits and counts per place.
        self._on_message = contained(self._receive, "data channel message", on_error=on_message_error)
        self._deliver = on_message
        self._on_up = on_up
        self._on_gone = on_gone
        self.channel: RTCDataChannel | None = None
        self.pending: list[str] = []
        self.dropped = 0
        self.up = False
        self.closed = False
        #: The offer being made. aioice keeps binding sockets until gathering ends, even after a close, so the
        #: peer connection is only closed once this is done; and it is never cancelled halfway, for the same reason.
        self.gathering: asyncio.Task[None] | None = None

    # -- negotiation -----------------------------------------------------------------------------------------
    async def offer(self) -> dict[str, Any]:
        """Gather and return the offer (JSEP dict). Raises on failure; a `close()` meanwhile makes it fail too."""
        pc = self.pc
        # A channel closed before it was announced leaves no trace but the SCTP transport, which is what puts
        # the data m-line in the offer; the real server channel is opened on demand.
        pc.createDataChannel(SERVER_LABEL).close()
        pc.on("datachannel", contained(self._listen, "data channel announced"))
        pc.on("connectionstatechange", contained(self._state_changed, "data channel connection state"))
        gathering = self.gathering = asyncio.get_running_loop().create_task(self._gather())
        gathering.add_done_callback(_retrieve)
        await asyncio.shield(gathering)
        if self.closed:
            raise ConnectionError("closed while the offer was made")
        return self.pc.jsep()

    async def _gather(self) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())

    @property
    def awaiting_answer(self) -> bool:
        return not self.closed and self.pc.signalingState == "have-local-offer"

    async def answer(self, jsep: dict[str, Any]) -> None:
        """The client's answer; `NoOfferPending` out of turn, any other exception for a bad SDP."""
        if not self.awaiting_answer:
            raise NoOfferPending("no offer pending")
        await self.pc.accept_answer(jsep["sdp"])

    async def trickle(self, candidates: list[dict[str, Any]]) -> None:
        """The client's trickled candidates (janus.js form); checked, and kept until the answer if early."""
        if not self.closed:
            await self.pc.trickle(candidates)

    def _state_changed(self) -> None:
        if self.closed:
            return
        state = self.pc.connectionState
        if state == "connected" and not self.up:
            self.up = True
            self._on_up()
        elif state in ("failed", "closed"):
            self._on_gone(state)

    # -- data in ---------------------------------------------------------------------------------------------
    def _listen(self, channel: RTCDataChannel) -> None:
        channel.on("message", self._on_message)

    def _receive(self, data: Any) -> None:
        # A message still in flight from a closed link must not reach the plugin (it would rejoin a room).
        if not self.closed:
            self._deliver(data)

    # -- data out --------------------------------------------------------------------------------------------
    def send(self, text: str) -> None:
        """Send on the server channel, opening it if needed; queued until it opens, dropped past the bounds."""
        pc = self.pc
        if self.closed or pc.connectionState in ("failed", "closed"):
            return
        channel = self.channel
        if channel is None or channel.readyState in ("closing", "closed"):
            channel = self.channel = pc.createDataChannel(SERVER_LABEL)
            channel.on("open", contained(self._flush, "data channel open"))
            # janus.js adopts a server channel with its default label for sending: listen on it too.
            self._listen(channel)
        if channel.readyState != "open":
            if len(self.pending) >= MAX_PENDING:
                self.dropped += 1
                return
            self.pending.append(text)
            return
        if channel.bufferedAmount > MAX_BUFFERED:
            self.dropped += 1
            return
        channel.send(text)

    def _flush(self) -> None:
        channel = self.channel
        pending, self.pending = self.pending, []
        if channel is None or self.closed:
            return
        for text in pending:
            channel.send(text)

    # -- teardown --------------------------------------------------------------------------------------------
    def close(self) -> Coroutine[Any, Any, None]:
        """Silence the link at once (nothing more in or out, no callbacks) and return the closing of its peer
        connection, which waits for the offer's gathering to end. The caller runs that coroutine: it must
        outlive the handle that asked (`await link.close()` does both steps in one)."""
        self.closed = True
        self.channel = None
        self.pending.clear()
        return self._close_pc()

    async def _close_pc(self) -> None:
        gathering = self.gathering
        if gathering is not None and not gathering.done():
            await asyncio.wait([gathering], timeout=CLOSE_TIMEOUT)
        await self.pc.close()


def _retrieve(task: asyncio.Task[None]) -> None:
    # The offer's failure is reported by its caller; if that was cancelled, nobody else reads it.
    if not task.cancelled():
        task.exception()
