"""TextRoom rooms and participants, sans-I/O: a request goes in, a reply and "send this to them" comes out.

The requests, replies, events and error codes are Janus' TextRoom ones, because the aPuppet agent and the
web-admin parse exactly those. Where Janus trusts everybody, this core does not: only a room's creator (or a
holder of its `secret`, or of the server's admin secret) may destroy it or kick, `list` hides protected rooms
from strangers, and wrong pins are slowed down per address and per room.

Participants and owners are opaque hashable keys (the plugin uses its handles); the caller decides how an
outgoing message reaches a key. A request's events come before its reply, as Janus sends them. What operators
care about (joins, leaves, wrong pins) queues up as reports for the caller to drain with `take_reports`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from ..api.throttle import Throttle
from .access import Access
from .fields import Fields, RequestError

JSON = dict[str, Any]
RoomId = str | int
Peer = Hashable

#: Text carried by one message or announcement; aPuppet's commands are a few dozen bytes, pastes a few KiB.
MAX_TEXT = 16 * 1024
MAX_NAME = 128
MAX_DESCRIPTION = 256
MAX_ROOM_ID = 2**63 - 1
#: Bounds that keep one client from filling the server with rooms or a room with names.
MAX_ROOMS = 10_000
MAX_ROOMS_PER_OWNER = 16
MAX_PARTICIPANTS = 64
#: Usernames that speak for the device: agents obey them and `apuppet sessions` names the device after them.
DEVICE_PREFIX = "device:"
#: What a viewer session (one created without the API secret) may ask: reaching a device with its password.
VIEWER_REQUESTS = frozenset({"join", "message", "leave"})
#: Texts that keep the link alive rather than carry a person's input (aPuppet's `ping,<ms>` every 2 s and its
#: answer): they do not reset `viewer_idle_minutes`.
HEARTBEATS = ("ping,", "pong,")


class TextRoomError(IntEnum):
    """Janus' TextRoom error codes; the web-admin branches on 417 and shows the text of the others."""

    NO_MESSAGE = 411
    INVALID_JSON = 412
    MISSING_ELEMENT = 413
    INVALID_ELEMENT = 414
    INVALID_REQUEST = 415
    ALREADY_SETUP = 416
    NO_SUCH_ROOM = 417
    ROOM_EXISTS = 418
    UNAUTHORIZED = 419
    USERNAME_EXISTS = 420
    ALREADY_IN_ROOM = 421
    NOT_IN_ROOM = 422
    NO_SUCH_USER = 423
    UNKNOWN_ERROR = 499


@dataclass(slots=True)
class Outcome:
    """What a request produced: `events` to deliver first, then `reply` for the requester (None: no reply)."""

    reply: JSON | None
    events: list[tuple[Peer, JSON]] = field(default_factory=list)
    #: The request was a person's input (a message other than a heartbeat).
    input: bool = False


@dataclass(slots=True, eq=False)
class Participant:
    peer: Peer
    username: str
    display: str | None
    remote: str = ""
    #: When it joined (UNIX seconds, the rooms' clock).
    joined: float = 0.0

    def describe(self) -> JSON:
        info: JSON = {"username": self.username}
        if self.display is not None:
            info["display"] = self.display
        return info


@dataclass(slots=True, eq=False)
class Room:
    id: RoomId
    owner: Peer
    description: str
    pin: str
    secret: str
    is_private: bool
    #: When it was created (UNIX seconds, the rooms' clock).
    created: float = 0.0
    #: Username → participant, in join order.
    participants: dict[str, Participant] = field(default_factory=dict)

    def member(self, peer: Peer) -> Participant | None:
        for participant in self.participants.values():
            if participant.peer == peer:
                return participant
        return None

    def protected(self) -> bool:
        return self.is_private or bool(self.pin)


def error(code: int, reason: str, transaction: Any = None) -> JSON:
    reply: JSON = {"textroom": "error", "error_code": code, "error": reason}
    if transaction is not None:
        reply["transaction"] = transaction
    return reply


def janus_date(now: float) -> str:
    """Janus' `date` format (strftime "%Y-%m-%dT%H:%M:%S%z", UTC here), which the web-admin prints."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(now))


def room_key(value: RoomId) -> str:
    """`"42"` and `42` name the same room: the agent sends strings, other Janus clients numbers."""
    return str(value)


class Rooms:
    """Every room of the server and who is in it."""

    def __init__(
        self,
        admin_secret: str = "",
        *,
        clock: Callable[[], float] = time.time,
        address_throttle: Throttle | None = None,
        room_throttle: Throttle | None = None,
        owner_gone: Callable[[Peer], bool] | None = None,
    ) -> None:
        self.clock = clock
        self.rooms: dict[str, Room] = {}
        self.reports: list[tuple[str, JSON]] = []
        self.messages = 0
        self.access = Access(
            "textroom",
            unauthorized=TextRoomError.UNAUTHORIZED,
            admin_secret=admin_secret,
            report=lambda name, fields: self._report(name, **fields),
            field="room",
            noun="room",
            viewer_requests=VIEWER_REQUESTS,
            by_address=address_throttle,
            by_resource=room_throttle,
            owner_gone=owner_gone,
        )

    # -- entry points ----------------------------------------------------------------------------------------
    def request(
        self, peer: Peer, message: Any, *, remote: str = "", verb_key: str = "textroom", trusted: bool = True
    ) -> Outcome:
        """One request from `peer` (a data-channel message, or an HTTP body with `verb_key="request"`).

        An untrusted peer (a viewer session, without the API secret) may only join with a pin, talk and leave;
        its joins of rooms that do not exist count as guesses, so room ids cannot be enumerated quickly."""
        if not isinstance(message, dict):
            return Outcome(error(TextRoomError.INVALID_JSON, "JSON error: not an object"))
        given = message.get("transaction")
        # Only a string is echoed back: anything else (a deeply nested list…) would have to be serialized again.
        transaction = given if isinstance(given, str) else None
        if verb_key == "textroom" and transaction is None:
            # Janus requires a string transaction on the data channel; a reply without one can't be matched.
            code = TextRoomError.MISSING_ELEMENT if given is None else TextRoomError.INVALID_ELEMENT
            return Outcome(error(code, "Missing or invalid element (transaction)"))
        verb = message.get(verb_key)
        try:
            if not isinstance(verb, str):
                raise RequestError(TextRoomError.MISSING_ELEMENT, f"Missing mandatory element ({verb_key})")
            handler = self._handlers.get(verb.lower())
            if handler is None:
                raise RequestError(TextRoomError.INVALID_REQUEST, f"Unsupported request {verb[:32]}")
            if not trusted:
                self.access.check_viewer(verb.lower())
            outcome = handler(self, peer, message, remote)
        except RequestError as exc:
            refusal = exc
            if not trusted and exc.code == TextRoomError.NO_SUCH_ROOM:
                try:
                    self.access.viewer_missed(remote)
                except RequestError as blocked:
                    refusal = blocked
            return Outcome(error(refusal.code, refusal.reason, transaction))
        if outcome.reply is not None and transaction is not None:
            outcome.reply["transaction"] = transaction
        return outcome

    def drop_peer(self, peer: Peer, reason: str = "hangup") -> list[tuple[Peer, JSON]]:
        """The peer's connection is gone: it leaves every room it is in, the others get a `leave`."""
        events: list[tuple[Peer, JSON]] = []
        for room in list(self.rooms.values()):
            participant = room.member(peer)
            if participant is not None:
                events.extend(self._leave_events(room, participant, reason))
        return events

    def drop_owner(self, owner: Peer) -> list[tuple[Peer, JSON]]:
        """The creator is gone (detach, session destroyed or timed out): its rooms go with it."""
        events: list[tuple[Peer, JSON]] = []
        for room in [r for r in self.rooms.values() if r.owner == owner]:
            events.extend(self._destroy(room, "creator gone"))
        return events

    def evict(self, peer: Peer, reason: str, message: str) -> list[tuple[Peer, JSON]]:
        """The peer's session is ended by an operator or a limit. Where it is a participant it is kicked: it gets a
        `kicked` carrying `reason` and `message` (Janus' event plus two keys clients may ignore), the others a
        `leave`, which the aPuppet agent understands (it ignores `kicked`) and stops sharing on. Rooms it created
        are destroyed, their participants told why in the `destroyed` event."""
        told: JSON = {"reason": reason, "message": message}
        events: list[tuple[Peer, JSON]] = []
        for room in self.rooms_of(peer):
            events.extend((p, {**event, **told}) for p, event in self._destroy(room, reason))
        for room in list(self.rooms.values()):
            participant = room.member(peer)
            if participant is None:
                continue
            kicked: JSON = {"textroom": "kicked", "room": room.id, "username": participant.username, **told}
            events.append((peer, kicked))
            events.extend(self._leave_events(room, participant, reason))
        return events

    def snapshot(self, describe: Callable[[Peer], JSON]) -> list[JSON]:
        """Every room and its participants for the operator console, `describe(peer)` adding what the caller
        knows of a peer (its session's tag). Never a pin or secret: only whether the room has them."""
        return [
            {
                "room": room_key(room.id),
                "description": room.description,
                "since": room.created,
                "protected": room.protected(),
                "owner": describe(room.owner),
                "participants": [
                    {
                        "username": p.username,
                        "display": p.display,
                        "address": p.remote,
                        "since": p.joined,
                        "device": p.username.lower().startswith(DEVICE_PREFIX),
                        **describe(p.peer),
                    }
                    for p in room.participants.values()
                ],
            }
            for room in self.rooms.values()
        ]

    def take_reports(self) -> list[tuple[str, JSON]]:
        """Operator events since the last call: (name, fields), never carrying a pin or secret."""
        reports, self.reports = self.reports, []
        return reports

    def rooms_of(self, owner: Peer) -> list[Room]:
        return [r for r in self.rooms.values() if r.owner == owner]

    # -- requests -----------------------------------------------------------------------------------------------
    def _list(self, peer: Peer, msg: JSON, remote: str) -> Outcome:
        admin = self.access.is_admin(msg, remote)
        listed = [
            {
                "room": room.id,
                "description": room.description,
                "pin_required": bool(room.pin),
                "num_participants": len(room.participants),
            }
            for room in self.rooms.values()
            if admin or not room.protected() or room.owner == peer or room.member(peer) is not None
        ]
        return Outcome({"textroom": "success", "list": listed})

    def _exists(self, peer: Peer, msg: JSON, remote: str) -> Outcome:
        room_id = _room_id(msg)
        return Outcome({"textroom": "success", "room": room_id, "exists": room_key(room_id) in self.rooms})

    def _create(self, peer: Peer, msg: JSON, remote: str) -> Outcome:
        if msg.get("permanent") is True:
            raise RequestError(TextRoomError.INVALID_ELEMENT, "Permanent rooms are not supported")
        room_id: RoomId
        if msg.get("room") is None:
            room_id = secrets.randbelow(2**53 - 1) + 1
            while room_key(room_id) in self.rooms:
                room_id = secrets.randbelow(2**53 - 1) + 1
        else:
            room_id = _room_id(msg)
        reclaimed: list[tuple[Peer, JSON]] = []
        existing = self.rooms.get(room_key(room_id))
        if existing is not None:
            if not self.access.reclaimable(existing, peer, msg):
                raise RequestError(TextRoomError.ROOM_EXISTS, f"Room {room_id} already exists")
            # The creator is gone (an agent reconnecting after a network loss): the old room goes first.
            reclaimed = self._destroy(existing, "reclaimed")
        if len(self.rooms) >= MAX_ROOMS or len(self.rooms_of(peer)) >= MAX_ROOMS_PER_OWNER:
            raise RequestError(TextRoomError.UNKNOWN_ERROR, "Too many rooms")
        room = Room(
            id=room_id,
            owner=peer,
            description=_text(msg, "description", MAX_DESCRIPTION) or f"Room {room_id}",
            pin=_text(msg, "pin", MAX_NAME) or "",
            secret=_text(msg, "secret", MAX_NAME) or "",
            is_private=_flag(msg, "is_private", False),
            created=self.clock(),
        )
        self.rooms[room_key(room_id)] = room
        self._report("room_created", room=room_key(room_id), remote=remote, protected=room.protected())
        verb = "success" if "textroom" in msg else "created"
        return Outcome({"textroom": verb, "room": room_id, "permanent": False}, reclaimed)

    def _join(self, peer: Peer, msg: JSON, remote: str) -> Outcome:
        room = self._room(msg)
        username = _text(msg, "username", MAX_NAME)
        if not username:
            raise RequestError(TextRoomError.MISSING_ELEMENT, "Missing mandatory element (username)")
        display = _text(msg, "display", MAX_NAME)
        self.access.check_pin(room, room_key(room.id), msg, remote)
        if username.lower().startswith(DEVICE_PREFIX) and room.owner != peer:
            # The pin lets a viewer in, not speak as the device (which obeys everybody but itself).
            reason = f"Unauthorized (the '{DEVICE_PREFIX}' names are the room creator's)"
            raise RequestError(TextRoomError.UNAUTHORIZED, reason)
        if room.member(peer) is not None:
            raise RequestError(TextRoomError.ALREADY_IN_ROOM, f"Already in room {room.id}")
        if username in room.participants:
            raise RequestError(TextRoomError.USERNAME_EXISTS, f"Username '{username}' already taken")
        if len(room.participants) >= MAX_PARTICIPANTS:
            raise RequestError(TextRoomError.UNKNOWN_ERROR, "Room is full")
        others = [p.describe() for p in room.participants.values()]
        joined = Participant(peer, username, display, remote, self.clock())
        room.participants[username] = joined
        self._report("participant_joined", room=room_key(room.id), username=username, display=display, remote=remote)
        # Everybody, the joiner included, hears the join before the joiner gets its reply (Janus' order; the
        # agent relies on its `joined` flag to drop its own echo).
        event: JSON = {"textroom": "join", "room": room.id, **joined.describe()}
        events = [(p.peer, dict(event)) for p in room.participants.values()]
        return Outcome({"textroom": "success", "participants": others}, events)

    def _message(self, peer: Peer, msg: JSON, remote: str) -> Outcome:
        room = self._room(msg)
        sender = room.member(peer)
        if sender is None:
            raise RequestError(TextRoomError.NOT_IN_ROOM, f"Not in room {room.id}")
        text = msg.get("text")
        if not isinstance(text, str):
            raise RequestError(TextRoomError.MISSING_ELEMENT, "Missing mandatory element (text)")
        if len(text) > MAX_TEXT:
            raise RequestError(TextRoomError.INVALID_ELEMENT, f"Text too long (more than {MAX_TEXT} characters)")
        event: JSON = {"textroom": "message", "room": room.id, "from": sender.username, "date": self._date()}
        recipients = _recipients(msg)
        if recipients is None:
            targets = list(room.participants.values())
        else:
            event["whisper"] = True
            targets = [room.participants[name] for name in recipients if name in room.participants]
        event["text"] = text
        events = [(p.peer, dict(event)) for p in targets]
        self.messages += 1
        ack = _flag(msg, "ack", True)
        return Outcome({"textroom": "success"} if ack else None, events, input=not text.startswith(HEARTBEATS))

    def _announcement(self, peer: Peer, msg: JSON, remote: str) -> Outcome:
        room = self._room(msg)
        self.access.check_authority(room, room_key(room.id), peer, msg, remote)
        text = msg.get("text")
        if not isinstance(text, str):
            raise RequestError(TextRoomError.MISSING_ELEMENT, "Missing mandatory element (text)")
        if len(text) > MAX_TEXT:
            raise RequestError(TextRoomError.INVALID_ELEMENT, f"Text too long (more than {MAX_TEXT} characters)")
        event: JSON = {"textroom": "announcement", "room": room.id, "date": self._date(), "text": text}
        return Outcome({"textroom": "success"}, [(p.peer, dict(event)) for p in room.participants.values()])

    def _leave_request(self, peer: Peer, msg: JSON, remote: str) -> Outcome:
        room = self._room(msg)
        participant = room.member(peer)
        if participant is None:
            raise RequestError(TextRoomError.NOT_IN_ROOM, f"Not in room {room.id}")
        return Outcome({"textroom": "success"}, self._leave_events(room, participant, "left"))

    def _kick(self, peer: Peer, msg: JSON, remote: str) -> Outcome:
        room = self._room(msg)
        self.access.check_authority(room, room_key(room.id), peer, msg, remote)
        username = _text(msg, "username", MAX_NAME)
        if not username:
            raise RequestError(TextRoomError.MISSING_ELEMENT, "Missing mandatory element (username)")
        victim = room.participants.get(username)
        if victim is None:
            raise RequestError(TextRoomError.NO_SUCH_USER, f"No such user {username} in room {room.id}")
        event: JSON = {"textroom": "kicked", "room": room.id, "username": username}
        events = [(p.peer, dict(event)) for p in room.participants.values()]
        del room.participants[username]
        self._report("participant_left", room=room_key(room.id), username=username, reason="kicked")
        return Outcome({"textroom": "success"}, events)

    def _destroy_request(self, peer: Peer, msg: JSON, remote: str) -> Outcome:
        room = self._room(msg)
        self.access.check_authority(room, room_key(room.id), peer, msg, remote)
        verb = "success" if "textroom" in msg else "destroyed"
        return Outcome({"textroom": verb, "room": room.id, "permanent": False}, self._destroy(room, "destroyed"))

    def _listparticipants(self, peer: Peer, msg: JSON, remote: str) -> Outcome:
        room = self._room(msg)
        if room.protected() and not (room.owner == peer or room.member(peer) or self.access.is_admin(msg, remote)):
            self.access.check_pin(room, room_key(room.id), msg, remote)
        participants = [p.describe() for p in room.participants.values()]
        return Outcome({"textroom": "success", "room": room.id, "participants": participants})

    _handlers: dict[str, Callable[[Rooms, Peer, JSON, str], Outcome]] = {
        "list": _list,
        "exists": _exists,
        "create": _create,
        "join": _join,
        "message": _message,
        "announcement": _announcement,
        "leave": _leave_request,
        "kick": _kick,
        "destroy": _destroy_request,
        "listparticipants": _listparticipants,
    }

    # -- helpers ------------------------------------------------------------------------------------------------
    def _room(self, msg: JSON) -> Room:
        room_id = _room_id(msg)
        room = self.rooms.get(room_key(room_id))
        if room is None:
            raise RequestError(TextRoomError.NO_SUCH_ROOM, f"No such room ({room_id})")
        return room

    def _leave_events(self, room: Room, participant: Participant, reason: str) -> list[tuple[Peer, JSON]]:
        room.participants.pop(participant.username, None)
        self._report("participant_left", room=room_key(room.id), username=participant.username, reason=reason)
        event: JSON = {"textroom": "leave", "room": room.id, "username": participant.username}
        return [(p.peer, dict(event)) for p in room.participants.values()]

    def _destroy(self, room: Room, reason: str) -> list[tuple[Peer, JSON]]:
        self.rooms.pop(room_key(room.id), None)
        self._report("room_destroyed", room=room_key(room.id), reason=reason)
        event: JSON = {"textroom": "destroyed", "room": room.id}
        events = [(p.peer, dict(event)) for p in room.participants.values()]
        room.participants.clear()
        return events

    def _report(self, name: str, **fields: Any) -> None:
        self.reports.append((name, fields))

    def _date(self) -> str:
        return janus_date(self.clock())


def _recipients(msg: JSON) -> list[str] | None:
    """`to` (one username) or `tos` (several) make a private message; None means everybody."""
    if msg.get("to") is not None:
        to = msg["to"]
        if not isinstance(to, str):
            raise RequestError(TextRoomError.INVALID_ELEMENT, "Invalid element (to should be a string)")
        return [to]
    if msg.get("tos") is not None:
        tos = msg["tos"]
        if not isinstance(tos, list) or not all(isinstance(t, str) for t in tos) or len(tos) > MAX_PARTICIPANTS:
            raise RequestError(TextRoomError.INVALID_ELEMENT, "Invalid element (tos should be a list of usernames)")
        return list(dict.fromkeys(tos))
    return None


FIELDS = Fields(TextRoomError.MISSING_ELEMENT, TextRoomError.INVALID_ELEMENT)
_text = FIELDS.text
_flag = FIELDS.flag


def _room_id(msg: JSON) -> RoomId:
    return FIELDS.identifier(msg, "room", MAX_ROOM_ID, MAX_NAME)
