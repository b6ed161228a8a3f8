"""`janus.plugin.textroom` on aiortc data channels: the control channel between the agent and the web-admin.

The room logic lives in `room.Rooms`; this module only moves its messages over WebRTC and Janus' API. One
quirk shapes it: the Android agent reads only channels that the *server* opened (it attaches its observer in
`onDataChannel`), so requests are accepted on any channel but every reply and event leaves on a channel this
side opens, labelled ``JanusDataChannel`` as Janus' SCTP stack names it. That channel is opened when the
first message has to go out, again as Janus does: the agent continues its connect flow when it appears.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiortc import RTCDataChannel, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from ..api.idtag import tag
from ..api.plugin import JSON, Plugin, PluginResult
from ..api.session import Handle
from ..config import Config
from ..media.peer import TooManyPeerConnections, add_remote_candidate, create_peer_connection, local_description
from .contain import contained, report_failure
from .room import Outcome, Peer, Rooms, TextRoomError, error

log = logging.getLogger(__name__)

SERVER_LABEL = "JanusDataChannel"
#: Largest data-channel request accepted; beyond it the request is refused unread.
MAX_REQUEST_BYTES = 64 * 1024
#: Messages waiting for the server channel to open, and bytes queued in SCTP, per participant. A peer
#: that does not read loses messages past these bounds instead of growing the server's memory.
MAX_PENDING = 256
MAX_BUFFERED = 1 << 20
CLOSE_TIMEOUT = 5.0
#: Trickled candidates kept until the answer arrives (janus.js may trickle before the `ack` is processed).
MAX_EARLY_CANDIDATES = 64


def parse_candidate(candidate: JSON) -> RTCIceCandidate | None:
    """A trickled janus.js candidate, or None for what is ignored.

    Ignored: `{"completed": true}` (signalling end-of-candidates would let ICE give up before the client's own
    checks reveal its address, which is how candidate-less clients connect), mDNS `.local` host names (the
    browser's checks reveal the address behind them anyway) and anything unparsable.
    """
    text = candidate.get("candidate")
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = candidate_from_sdp(text.removeprefix("candidate:"))
    except (AssertionError, ValueError, IndexError):
        return None
    if parsed.ip.endswith(".local"):
        return None
    mid, index = candidate.get("sdpMid"), candidate.get("sdpMLineIndex")
    parsed.sdpMid = mid if isinstance(mid, str) else None
    # The offer has one m-line: a candidate naming neither belongs to it.
    parsed.sdpMLineIndex = index if isinstance(index, int) and not isinstance(index, bool) else 0
    return parsed


class Link:
    """One handle's PeerConnection and channels; created by `setup`, gone on hangup or detach."""

    def __init__(self, plugin: TextRoomPlugin, handle: Handle) -> None:
        self.plugin = plugin
        self.handle = handle
        self.pc: RTCPeerConnection | None = None
        self.channel: RTCDataChannel | None = None
        self.pending: list[str] = []
        self.dropped = 0
        self.up = False
        self.early_candidates: list[RTCIceCandidate] = []
        #: The offer being made. aioice keeps binding sockets until gathering ends, even after a close, so a
        #: PeerConnection is only closed once this is done; and it is never cancelled halfway, for the same reason.
        self.gathering: asyncio.Task[None] | None = None

    # -- negotiation -----------------------------------------------------------------------------------------
    async def offer(self, transaction: str) -> None:
        if self.pc is not None:
            self._event_error(TextRoomError.ALREADY_SETUP, "PeerConnection already set up", transaction)
            return
        try:
            session = self.handle.session
            pc = self.pc = create_peer_connection(self.plugin.config, session.id, session.remote)
        except TooManyPeerConnections as exc:  # the client's doing: told, not logged as a server problem
            self._event_error(TextRoomError.UNKNOWN_ERROR, str(exc), transaction)
            return
        except Exception as exc:
            log.warning("handle %s: cannot create a PeerConnection: %s", tag(self.handle.id), exc)
            self._event_error(TextRoomError.UNKNOWN_ERROR, f"Could not set up the PeerConnection: {exc}", transaction)
            return
        try:
            # A channel closed before it was announced leaves no trace but the SCTP transport, which is what
            # puts the data m-line in the offer; the real server channel is opened on demand.
            pc.createDataChannel(SERVER_LABEL).close()
            pc.on("datachannel", contained(lambda channel: self._listen(pc, channel), "textroom datachannel"))
            pc.on("connectionstatechange", contained(self._state_changed, "textroom connection state"))
            gathering = self.gathering = asyncio.get_running_loop().create_task(self._gather(pc))
            gathering.add_done_callback(_retrieve)
            await asyncio.shield(gathering)
        except Exception as exc:
            if self.pc is not pc:
                return  # hung up meanwhile: the close made the offer fail, nobody waits for it
            # The agent waits for this event without a timeout: it must hear about the failure.
            log.warning("handle %s: textroom offer failed: %s", tag(self.handle.id), exc)
            self.plugin.close_link(self)
            self._event_error(TextRoomError.UNKNOWN_ERROR, f"Could not set up the PeerConnection: {exc}", transaction)
            return
        if self.pc is not pc:
            return
        self.handle.push_event(
            {"textroom": "event", "result": "ok"}, local_description(pc, self.plugin.config), transaction
        )

    @staticmethod
    async def _gather(pc: RTCPeerConnection) -> None:
        await pc.setLocalDescription(await pc.createOffer())

    async def answer(self, jsep: JSON | None, transaction: str) -> None:
        pc = self.pc
        if pc is None or pc.signalingState != "have-local-offer":
            self._event_error(TextRoomError.INVALID_REQUEST, "No offer pending (send setup first)", transaction)
            return
        if jsep is None or jsep.get("type") != "answer":
            self._event_error(TextRoomError.MISSING_ELEMENT, "Missing mandatory element (jsep answer)", transaction)
            return
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type="answer"))
        except Exception as exc:  # aiortc raises several types on bad SDP; all mean the same to the client
            self._event_error(TextRoomError.INVALID_ELEMENT, f"Invalid SDP: {exc}", transaction)
            return
        self.handle.push_event({"textroom": "event", "result": "ok"}, transaction=transaction)
        early, self.early_candidates = self.early_candidates, []
        await self._add_candidates(pc, early)

    def trickle(self, candidates: list[JSON]) -> None:
        pc = self.pc
        parsed = [c for c in map(parse_candidate, candidates) if c is not None]
        if pc is None or not parsed:
            return
        if pc.remoteDescription is None:
            room = MAX_EARLY_CANDIDATES - len(self.early_candidates)
            self.early_candidates += parsed[: max(room, 0)]
            return
        self.handle.spawn(self._add_candidates(pc, parsed), name="textroom-trickle")

    async def _add_candidates(self, pc: RTCPeerConnection, candidates: list[RTCIceCandidate]) -> None:
        for candidate in candidates:
            if self.pc is not pc:
                return
            try:
                # Checked first: loopback, multicast or unspecified addresses, and too many (media/ice.py).
                refused = await add_remote_candidate(pc, candidate)
            except Exception as exc:  # a candidate for a transport already gone; the others may still help
                refused = str(exc)
            if refused is not None:
                log.debug("handle %s: remote candidate refused: %s", tag(self.handle.id), refused)

    def _event_error(self, code: int, reason: str, transaction: str) -> None:
        self.handle.push_event({"textroom": "event", "error_code": int(code), "error": reason}, transaction=transaction)

    def _state_changed(self) -> None:
        pc = self.pc
        if pc is None:
            return
        if pc.connectionState == "connected" and not self.up:
            self.up = True
            self.handle.push_webrtcup()
        elif pc.connectionState in ("failed", "closed"):
            self.plugin.hang_up(self.handle, reason=f"PeerConnection {pc.connectionState}")

    # -- data in ---------------------------------------------------------------------------------------------
    def _listen(self, pc: RTCPeerConnection, channel: RTCDataChannel) -> None:
        # Bound to its PeerConnection: a message still in flight from a hung-up one must not rejoin a room.
        channel.on(
            "message",
            contained(
                lambda data: self.receive(data) if self.pc is pc else None,
                "textroom data channel message",
                on_error=lambda _exc: self.send(error(TextRoomError.UNKNOWN_ERROR, "Internal error")),
            ),
        )

    def receive(self, data: str | bytes) -> None:
        if not isinstance(data, str | bytes):
            self.plugin.invalid += 1
            self.send(error(TextRoomError.INVALID_JSON, "JSON error: not text"))
            return
        if len(data) > MAX_REQUEST_BYTES:
            self.plugin.invalid += 1
            self.send(error(TextRoomError.INVALID_ELEMENT, f"Request larger than {MAX_REQUEST_BYTES} bytes"))
            return
        try:
            message = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            self.plugin.invalid += 1
            self.send(error(TextRoomError.INVALID_JSON, f"JSON error: {exc}"))
            return
        except RecursionError:
            self.plugin.invalid += 1
            self.send(error(TextRoomError.INVALID_JSON, "JSON error: nested too deeply"))
            return
        try:
            self.plugin.dispatch(self.handle.session.remote, self.handle, message)
        except Exception as exc:
            # A bug of ours, not the client's: the request still gets its answer, the channel stays.
            report_failure("textroom request", exc)
            given = message.get("transaction") if isinstance(message, dict) else None
            transaction = given if isinstance(given, str) else None
            self.send(error(TextRoomError.UNKNOWN_ERROR, "Internal error", transaction))

    # -- data out --------------------------------------------------------------------------------------------
    def send(self, message: JSON) -> None:
        pc = self.pc
        if pc is None or pc.connectionState in ("failed", "closed"):
            return
        text = json.dumps(message, separators=(",", ":"))
        channel = self.channel
        if channel is None or channel.readyState in ("closing", "closed"):
            # Opened on first use, and again if the client closed it, as Janus' SCTP stack does.
            channel = self.channel = pc.createDataChannel(SERVER_LABEL)
            channel.on("open", contained(self._flush, "textroom channel open"))
            # janus.js adopts a server channel with its default label for sending: listen on it too.
            self._listen(pc, channel)
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
        if channel is None:
            return
        for text in pending:
            channel.send(text)

    def release(self) -> tuple[RTCPeerConnection | None, asyncio.Task[None] | None]:
        """Forget the PeerConnection (the caller closes it), so that a new `setup` may start afresh."""
        pc, self.pc = self.pc, None
        gathering, self.gathering = self.gathering, None
        self.channel = None
        self.pending.clear()
        self.early_candidates.clear()
        self.up = False
        return pc, gathering


class TextRoomPlugin(Plugin):
    name = "janus.plugin.textroom"
    version = 1
    version_string = "0.0.1"
    description = "TextRoom: rooms of text messages over WebRTC data channels (aPuppet's control channel)"

    def __init__(self, config: Config, rooms: Rooms | None = None) -> None:
        super().__init__(config)
        self.rooms = Rooms(config.admin_secret) if rooms is None else rooms
        if self.rooms.access.owner_gone is None:
            self.rooms.access.owner_gone = lambda owner: isinstance(owner, Handle) and self.owner_gone(owner.session.id)
        #: Keyed by handle: handles are the participants and owners of `Rooms`.
        self.links: dict[Peer, Link] = {}
        #: PeerConnections being closed; owned here because the handle (and its tasks) may already be gone.
        self._closing: set[asyncio.Task[None]] = set()
        self.invalid = 0
        self.dropped = 0

    # -- Janus API -------------------------------------------------------------------------------------------
    def attach(self, handle: Handle) -> None:
        self.links[handle] = handle.state = Link(self, handle)

    def message(self, handle: Handle, transaction: str, body: JSON, jsep: JSON | None) -> PluginResult | None:
        link: Link = handle.state
        request = body.get("request")
        if request == "setup":
            handle.spawn(link.offer(transaction), name="textroom-setup")
            return None
        if request == "ack":
            handle.spawn(link.answer(jsep, transaction), name="textroom-answer")
            return None
        if request == "join" and link.pc is None:
            # A participant without a PeerConnection could hear nothing and would never leave on hangup.
            return PluginResult(error(TextRoomError.INVALID_REQUEST, "Set up the PeerConnection before joining"))
        outcome = self.rooms.request(
            handle, body, remote=handle.session.remote, verb_key="request", trusted=handle.session.trusted
        )
        self._deliver(outcome.events)
        return None if outcome.reply is None else PluginResult(outcome.reply)

    def trickle(self, handle: Handle, candidates: list[JSON]) -> None:
        link = self.links.get(handle)
        if link is not None:
            link.trickle(candidates)

    def hangup(self, handle: Handle) -> None:
        self.hang_up(handle, reason="Janus API hangup")

    def detach(self, handle: Handle) -> None:
        link = self.links.pop(handle, None)
        events = self.rooms.drop_peer(handle, "detached") + self.rooms.drop_owner(handle)
        self._deliver(events)
        if link is not None:
            self.dropped += link.dropped
            self.close_link(link)

    async def close(self) -> None:
        for peer in list(self.links):
            if isinstance(peer, Handle):
                self.detach(peer)
        if self._closing:
            # Bounded: a PeerConnection that cannot say goodbye must not hold up the server's shutdown.
            await asyncio.wait(list(self._closing), timeout=CLOSE_TIMEOUT)

    def metrics(self) -> dict[str, float]:
        return {
            "rooms": len(self.rooms.rooms),
            "participants": sum(len(r.participants) for r in self.rooms.rooms.values()),
            "peer_connections": sum(1 for link in self.links.values() if link.pc is not None),
            "messages_total": self.rooms.messages,
            "invalid_requests_total": self.invalid,
            "dropped_messages_total": self.dropped + sum(link.dropped for link in self.links.values()),
        }

    # -- glue ------------------------------------------------------------------------------------------------
    def dispatch(self, remote: str, handle: Handle, message: Any) -> None:
        """A request that arrived on one of `handle`'s data channels."""
        outcome: Outcome = self.rooms.request(handle, message, remote=remote, trusted=handle.session.trusted)
        self._deliver(outcome.events)
        if outcome.reply is not None:
            self._deliver([(handle, outcome.reply)])

    def hang_up(self, handle: Handle, reason: str) -> None:
        """The handle's PeerConnection is gone or going: it leaves its rooms (it still owns the ones it made)."""
        link = self.links.get(handle)
        if link is None or link.pc is None:
            return
        log.debug("handle %s: textroom PeerConnection gone (%s)", tag(handle.id), reason)
        self._deliver(self.rooms.drop_peer(handle))
        self.close_link(link)
        handle.push_hangup(reason)

    def _deliver(self, events: list[tuple[Peer, JSON]]) -> None:
        for name, fields in self.rooms.take_reports():
            self.emit(name, **fields)
        for peer, message in events:
            link = self.links.get(peer)
            if link is not None:
                link.send(message)

    def close_link(self, link: Link) -> None:
        pc, gathering = link.release()
        if pc is None:
            return
        task = asyncio.get_running_loop().create_task(_close(pc, gathering), name="textroom-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


async def _close(pc: RTCPeerConnection, gathering: asyncio.Task[None] | None) -> None:
    if gathering is not None and not gathering.done():
        await asyncio.wait([gathering], timeout=CLOSE_TIMEOUT)
    await pc.close()


def _retrieve(task: asyncio.Task[None]) -> None:
    # The offer's failure is reported by `Link.offer`; if that was cancelled, nobody else reads it.
    if not task.cancelled():
        task.exception()
