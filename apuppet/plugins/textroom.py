"""`janus.plugin.textroom`: the control channel between the agent and the web-admin, over Janus' API.

The room logic lives in `rooms.Rooms` and the WebRTC side in `apuppet.media.datachannel.DataChannelLink` (one
per handle that sent `setup`); this module turns Janus requests and data-channel text into calls on the one and
answers of the other. As in Janus, `setup` is answered by an event carrying the server's offer, `ack` carries
the client's answer, and room requests arrive either on the data channel or as Janus `message`s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from ..api.idtag import tag
from ..api.plugin import JSON, Intents, Plugin, PluginResult
from ..api.session import Handle
from ..config import Config
from ..media.contain import CLOSE_TIMEOUT, report_failure, spawn_owned
from ..media.datachannel import DataChannelLink, NoOfferPending
from ..media.peers import Peers, TooManyPeerConnections, WebRtcUnavailable
from .rooms import Outcome, Peer, Rooms, TextRoomError, error, room_key

log = logging.getLogger(__name__)

#: Largest data-channel request accepted; beyond it the request is refused unread.
MAX_REQUEST_BYTES = 64 * 1024


class TextRoomPlugin(Plugin):
    name = "janus.plugin.textroom"
    version = 1
    version_string = "0.0.1"
    description = "TextRoom: rooms of text messages over WebRTC data channels (aPuppet's control channel)"

    def __init__(self, config: Config, peers: Peers, rooms: Rooms | None = None) -> None:
        super().__init__(config)
        self.peers = peers
        self.rooms = Rooms(config.admin_secret) if rooms is None else rooms
        if self.rooms.access.owner_gone is None:
            self.rooms.access.owner_gone = lambda owner: isinstance(owner, Handle) and self.owner_gone(owner.session.id)
        #: The handles that sent `setup` and have not hung up: the participants and owners of `Rooms` that can
        #: be reached.
        self.links: dict[Peer, DataChannelLink] = {}
        #: The `setup` each handle has under way while the WebRTC stack loads; a hangup or detach takes it back.
        self._setups = Intents()
        #: Peer connections being closed; owned here because the handle (and its tasks) may already be gone.
        self._closing: set[asyncio.Task[Any]] = set()
        #: When (time.monotonic) each handle last sent a person's input: `viewer_idle_minutes`.
        self.inputs: dict[Handle, float] = {}
        self.invalid = 0
        self.dropped = 0

    # -- Janus API -------------------------------------------------------------------------------------------
    def attach(self, handle: Handle) -> None:
        self.peers.warm()  # `setup` follows: import the WebRTC stack meanwhile

    def message(self, handle: Handle, transaction: str, body: JSON, jsep: JSON | None) -> PluginResult | None:
        request = body.get("request")
        if request == "setup":
            handle.spawn(self._setup(handle, transaction), name="textroom-setup")
            return None
        if request == "ack":
            handle.spawn(self._answer(handle, jsep, transaction), name="textroom-answer")
            return None
        if request == "join" and handle not in self.links:
            # A participant without a PeerConnection could hear nothing and would never leave on hangup.
            return PluginResult(error(TextRoomError.INVALID_REQUEST, "Set up the PeerConnection before joining"))
        outcome = self.rooms.request(
            handle, body, remote=handle.session.remote, verb_key="request", trusted=handle.session.trusted
        )
        if outcome.input:
            self.inputs[handle] = time.monotonic()
        self._deliver(outcome.events)
        return None if outcome.reply is None else PluginResult(outcome.reply)

    def locate(self, body: JSON) -> tuple[str, str] | None:
        """`setup` may carry the room it is for (a placement hint: Janus ignores the key), so that a cluster node
        sets the data channel up where the room is; the room requests name theirs."""
        room = body.get("room")
        if isinstance(room, str | int) and not isinstance(room, bool):
            return "room", room_key(room)
        return None

    def abandon(self, kind: str, key: str) -> bool:
        room = self.rooms.rooms.get(key) if kind == "room" else None
        owner_gone = self.rooms.access.owner_gone
        if room is None or owner_gone is None or not owner_gone(room.owner):
            return False
        self._deliver(self.rooms.drop_owner(room.owner))
        return True

    def trickle(self, handle: Handle, candidates: list[JSON]) -> None:
        link = self.links.get(handle)
        if link is not None:
            handle.spawn(link.trickle(candidates), name="textroom-trickle")

    def hangup(self, handle: Handle) -> None:
        self.hang_up(handle, reason="Janus API hangup")

    def detach(self, handle: Handle) -> None:
        self._setups.take_back(handle)
        self.inputs.pop(handle, None)
        link = self.links.pop(handle, None)
        events = self.rooms.drop_peer(handle, "detached") + self.rooms.drop_owner(handle)
        self._deliver(events)
        if link is not None:
            self.close_link(link)

    async def close(self) -> None:
        for peer in list(self.links):
            if isinstance(peer, Handle):
                self.detach(peer)
        if self._closing:
            # Bounded: a PeerConnection that cannot say goodbye must not hold up the server's shutdown.
            await asyncio.wait(list(self._closing), timeout=CLOSE_TIMEOUT)

    def last_input(self, handle: Handle) -> float | None:
        return self.inputs.get(handle)

    def evict(self, handle: Handle, reason: str, message: str) -> None:
        """Kicked from its rooms with the reason, rooms it made destroyed; the data channel stays up until the
        session goes, so that the kick reaches the page."""
        self._deliver(self.rooms.evict(handle, reason, message))

    def snapshot(self) -> JSON:
        offset = time.time() - time.monotonic()

        def describe(peer: Peer) -> JSON:
            if not isinstance(peer, Handle):
                return {}
            last = self.inputs.get(peer)
            return {"session": tag(peer.session.id), "last_input": None if last is None else last + offset}

        return {"rooms": self.rooms.snapshot(describe)}

    def metrics(self) -> dict[str, float]:
        return {
            "rooms": len(self.rooms.rooms),
            "participants": sum(len(r.participants) for r in self.rooms.rooms.values()),
            "peer_connections": len(self.links),
            "messages_total": self.rooms.messages,
            "invalid_requests_total": self.invalid,
            "dropped_messages_total": self.dropped + sum(link.dropped for link in self.links.values()),
        }

    # -- negotiation -----------------------------------------------------------------------------------------
    async def _setup(self, handle: Handle, transaction: str) -> None:
        intent = self._setups.begin(handle)
        try:
            await self.peers.ready()
        except WebRtcUnavailable as exc:
            self._event_error(
                handle, TextRoomError.UNKNOWN_ERROR, f"Could not set up the PeerConnection: {exc}", transaction
            )
            return
        finally:
            wanted = self._setups.end(handle, intent)
        if not wanted:
            return  # hung up, detached or set up again while the stack loaded: nothing to make
        if handle in self.links:
            self._event_error(handle, TextRoomError.ALREADY_SETUP, "PeerConnection already set up", transaction)
            return
        try:
            link = DataChannelLink(
                self.peers,
                on_message=lambda data: self.receive(handle, data),
                on_message_error=lambda _exc: self._send(link, error(TextRoomError.UNKNOWN_ERROR, "Internal error")),
                on_up=handle.push_webrtcup,
                on_gone=lambda state: self._link_gone(handle, link, state),
                session=handle.session.id,
                address=handle.session.peer_cap_address,
                name=f"handle {tag(handle.id)}",
            )
        except TooManyPeerConnections as exc:  # the client's doing: told, not logged as a server problem
            self._event_error(handle, TextRoomError.UNKNOWN_ERROR, str(exc), transaction)
            return
        except Exception as exc:
            log.warning("handle %s: cannot create a PeerConnection: %s", tag(handle.id), exc)
            reason = f"Could not set up the PeerConnection: {exc}"
            self._event_error(handle, TextRoomError.UNKNOWN_ERROR, reason, transaction)
            return
        self.links[handle] = link
        try:
            offer = await link.offer()
        except Exception as exc:
            if self.links.get(handle) is not link:
                return  # hung up meanwhile: the close made the offer fail, nobody waits for it
            # The agent waits for this event without a timeout: it must hear about the failure.
            log.warning("handle %s: textroom offer failed: %s", tag(handle.id), exc)
            del self.links[handle]
            self.close_link(link)
            reason = f"Could not set up the PeerConnection: {exc}"
            self._event_error(handle, TextRoomError.UNKNOWN_ERROR, reason, transaction)
            return
        if self.links.get(handle) is link:
            handle.push_event({"textroom": "event", "result": "ok"}, offer, transaction)

    async def _answer(self, handle: Handle, jsep: JSON | None, transaction: str) -> None:
        link = self.links.get(handle)
        if link is None or not link.awaiting_answer:
            self._event_error(handle, TextRoomError.INVALID_REQUEST, "No offer pending (send setup first)", transaction)
            return
        if jsep is None or jsep.get("type") != "answer":
            reason = "Missing mandatory element (jsep answer)"
            self._event_error(handle, TextRoomError.MISSING_ELEMENT, reason, transaction)
            return
        try:
            await link.answer(jsep)
        except NoOfferPending:  # hung up or answered meanwhile
            self._event_error(handle, TextRoomError.INVALID_REQUEST, "No offer pending (send setup first)", transaction)
            return
        except Exception as exc:  # aiortc raises several types on bad SDP; all mean the same to the client
            self._event_error(handle, TextRoomError.INVALID_ELEMENT, f"Invalid SDP: {exc}", transaction)
            return
        handle.push_event({"textroom": "event", "result": "ok"}, transaction=transaction)

    def _event_error(self, handle: Handle, code: int, reason: str, transaction: str) -> None:
        handle.push_event({"textroom": "event", "error_code": int(code), "error": reason}, transaction=transaction)

    def _link_gone(self, handle: Handle, link: DataChannelLink, state: str) -> None:
        if self.links.get(handle) is link:
            self.hang_up(handle, reason=f"PeerConnection {state}")

    # -- data in ---------------------------------------------------------------------------------------------
    def receive(self, handle: Handle, data: object) -> None:
        """Text from one of `handle`'s data channels: a TextRoom request, answered on the server channel."""
        link = self.links.get(handle)
        if link is None:
            return
        if not isinstance(data, str | bytes):
            self.invalid += 1
            self._send(link, error(TextRoomError.INVALID_JSON, "JSON error: not text"))
            return
        if len(data) > MAX_REQUEST_BYTES:
            self.invalid += 1
            self._send(link, error(TextRoomError.INVALID_ELEMENT, f"Request larger than {MAX_REQUEST_BYTES} bytes"))
            return
        try:
            message = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            self.invalid += 1
            self._send(link, error(TextRoomError.INVALID_JSON, f"JSON error: {exc}"))
            return
        except RecursionError:
            self.invalid += 1
            self._send(link, error(TextRoomError.INVALID_JSON, "JSON error: nested too deeply"))
            return
        try:
            self.dispatch(handle.session.remote, handle, message)
        except Exception as exc:
            # A bug of ours, not the client's: the request still gets its answer, the channel stays.
            report_failure("textroom request", exc)
            given = message.get("transaction") if isinstance(message, dict) else None
            transaction = given if isinstance(given, str) else None
            self._send(link, error(TextRoomError.UNKNOWN_ERROR, "Internal error", transaction))

    def dispatch(self, remote: str, handle: Handle, message: Any) -> None:
        """A request that arrived on one of `handle`'s data channels."""
        outcome: Outcome = self.rooms.request(handle, message, remote=remote, trusted=handle.session.trusted)
        if outcome.input:
            self.inputs[handle] = time.monotonic()
        self._deliver(outcome.events)
        if outcome.reply is not None:
            self._deliver([(handle, outcome.reply)])

    # -- data out and teardown -------------------------------------------------------------------------------
    def hang_up(self, handle: Handle, reason: str) -> None:
        """The handle's PeerConnection is gone or going: it leaves its rooms (it still owns the ones it made)."""
        self._setups.take_back(handle)
        if handle not in self.links:
            return
        log.debug("handle %s: textroom PeerConnection gone (%s)", tag(handle.id), reason)
        self._deliver(self.rooms.drop_peer(handle))
        link = self.links.pop(handle, None)
        if link is not None:
            self.close_link(link)
        handle.push_hangup(reason)

    def _deliver(self, events: list[tuple[Peer, JSON]]) -> None:
        for name, fields in self.rooms.take_reports():
            if name in ("room_created", "room_destroyed"):
                self.placed("room", fields["room"], name == "room_created")
            self.emit(name, **fields)
        for peer, message in events:
            link = self.links.get(peer)
            if link is not None:
                self._send(link, message)

    @staticmethod
    def _send(link: DataChannelLink, message: JSON) -> None:
        link.send(json.dumps(message, separators=(",", ":")))

    def close_link(self, link: DataChannelLink) -> None:
        """Silence a link now and close its peer connection in a task of ours (the handle may be going)."""
        self.dropped += link.dropped
        link.dropped = 0
        spawn_owned(link.close(), "textroom close", self._closing)
