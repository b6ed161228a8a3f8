"""Which address may feed a mountpoint, sans-I/O.

A mountpoint's UDP port is announced to its creator in the `create` reply, and the device starts sending a
moment later. Whoever sends first must not win that race: a stranger spraying one RTP packet per port of the
range would otherwise capture every new mountpoint and the device's own packets would be dropped as foreign.

So the latch prefers the creator: a phone's API connection (TCP) and its RTP (UDP) leave through the same NAT,
which maps both to the same public IP address (RFC 4787 §4.1 "paired" pooling; RFC 6888 REQ-2 asks it of
carrier-grade NATs across TCP and UDP). Valid RTP from the IP address
that created the mountpoint latches at once, whatever arrived before it. Only when that address has sent
nothing for `grace` seconds while other sources send valid RTP (a device whose UDP leaves by another route than
its API requests, e.g. behind an HTTP proxy) does the latch fall back, to the source that sent the most valid
RTP during that time, so that a stranger has to out-send the device to win even then.

Only datagrams that look like RTP carrying H.264 (`latchable`) are offered to the latch: garbage never latches.
"""

from __future__ import annotations

from ..netaddr import client_key
from .h264 import NAL_FU_A, NAL_STAP_A
from .rtp import RtpPacket

Address = tuple[str, int] | tuple[str, int, int, int]

#: Seconds the creator's address may stay silent, while others send, before the latch falls back to them.
DEFAULT_GRACE = 10.0
#: Distinct other sources counted during the grace period (a spray from many ports must not grow memory).
MAX_CANDIDATE_SOURCES = 64


def h264_payload_ok(payload: bytes) -> bool:
    """Whether an RTP payload is a well-formed RFC 6184 packetization-mode-1 unit (single NAL, STAP-A, FU-A)."""
    if not payload or payload[0] & 0x80:  # forbidden_zero_bit
        return False
    kind = payload[0] & 0x1F
    if 1 <= kind <= 23:
        return True
    if kind == NAL_FU_A:
        if len(payload) < 3:
            return False
        fu = payload[1]
        inner = fu & 0x1F
        start, end = fu & 0x80, fu & 0x40
        return 1 <= inner <= 23 and not (start and end) and not fu & 0x20
    if kind == NAL_STAP_A:
        pos, count = 1, 0
        while pos < len(payload):
            if pos + 2 > len(payload):
                return False
            size = (payload[pos] << 8) | payload[pos + 1]
            pos += 2
            if size == 0 or pos + size > len(payload) or payload[pos] & 0x80 or not 1 <= payload[pos] & 0x1F <= 23:
                return False
            pos += size
            count += 1
        return count > 0
    return False


def latchable(packet: RtpPacket) -> bool:
    """What may latch a mountpoint: RTP with a dynamic payload type (H.264 has no static one) and an H.264
    payload. Random datagrams pass this about once in fifty; well-formed strangers are the creator rule's job."""
    return 96 <= packet.payload_type <= 127 and h264_payload_ok(packet.payload)


class SourceLatch:
    """The one source address a mountpoint accepts, chosen as the module docstring explains.

    `creator` is the IP address that created the mountpoint through the API (None or "": unknown, the first
    latchable source wins, as does any source with `grace` 0). After a fall-back the creator's address may
    still take the mountpoint over, once: a device that is merely slow to start (its user still granting the
    screen capture) must not lose its mountpoint for good to whoever sprayed packets meanwhile.
    """

    def __init__(self, creator: str | None = None, grace: float = DEFAULT_GRACE) -> None:
        self.creator = client_key(creator) if creator else None
        self.grace = grace
        self.source: Address | None = None
        #: Set when the latch fell back to another address than the creator's (the adapter logs it once).
        self.fell_back = False
        #: Set when the creator's address took the mountpoint over after a fall-back.
        self.taken_over = False
        self._others: dict[Address, int] = {}
        self._others_since: float | None = None
        self._others_last = 0.0
        #: Hosts already judged by `from_creator`: a spray must not cost an address parse per packet.
        self._judged: dict[str, bool] = {}

    def from_creator(self, addr: Address) -> bool:
        if self.creator is None:
            return False
        host = addr[0]
        judged = self._judged.get(host)
        if judged is None:
            if len(self._judged) >= MAX_CANDIDATE_SOURCES:
                self._judged.clear()
            judged = self._judged[host] = client_key(host) == self.creator
        return judged

    def may_take_over(self, addr: Address) -> bool:
        """Whether a packet from `addr`, not the latched source, is still worth offering (`offer`)."""
        return self.fell_back and not self.taken_over and self.from_creator(addr)

    def offer(self, addr: Address, now: float) -> bool:
        """A latchable packet from `addr`, which is not the source: True if `addr` is now the source."""
        if self.source is not None:
            if not self.may_take_over(addr):
                return False
            self.source = addr
            self.taken_over = True
            return True
        if self.creator is None or self.grace <= 0 or self.from_creator(addr):
            self.source = addr
            return True
        if self._others_since is None or now - self._others_last > self.grace:
            # Counts are compared over one unbroken stretch of traffic: a stranger's packets from long ago must
            # not outweigh (or tie with) the source that is sending now.
            self._others.clear()
            self._others_since = now
        self._others_last = now
        if addr in self._others:
            self._others[addr] += 1
        elif len(self._others) < MAX_CANDIDATE_SOURCES:
            self._others[addr] = 1
        if now - self._others_since < self.grace or not self._others:
            return False
        self.source = max(self._others, key=self._others.__getitem__)
        self.fell_back = True
        self._others.clear()
        return addr == self.source
