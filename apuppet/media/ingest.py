"""The I/O side of one mountpoint: its UDP ingest socket and the pump that sends viewers their packets.

Protocol work is `relay.StreamRelay`'s; this module only reads datagrams (all that are ready per wake-up),
and hands each viewer's packets to that viewer's `send` coroutine from one task per mountpoint. aiortc's
SRTP+ICE send path never suspends on UDP, so a slow or vanished viewer never holds back the others: its
packets are lost on the wire (and answered by NACK/PLI), the queue does not grow.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable

from .latch import DEFAULT_GRACE
from .relay import RelayViewer, StreamRelay
from .rtp import pack_pli
from .settings import MediaSettings
from .udp import bind_udp

log = logging.getLogger(__name__)

#: Most datagrams read per wake-up before yielding to the loop (keeps one busy mountpoint from starving others).
READ_BATCH = 64
#: Bound on packets waiting for the pump; past it the oldest go (a stalled loop must not grow memory).
MAX_OUTBOX = 20_000
#: Ask the source for a keyframe at most this often (only sources that read RTCP react; the Android agent does not).
PLI_INTERVAL = 1.0
SERVER_SSRC = 0x61707074  # "appt"

Sender = Callable[[bytes], Awaitable[None]]


class RtpIngest:
    """One mountpoint's UDP socket (inside `rtp_port_range` unless a port was asked for) and its relay.

    With `dual_stack`, a socket for all IPv4 addresses ("0.0.0.0") listens on "::" instead, so that an agent
    whose server name resolves to an IPv6 address reaches it too. `creator` (the IP address that created the
    mountpoint through the API) and `grace` decide which source is latched (`latch.SourceLatch`).
    """

    def __init__(
        self,
        host: str,
        port_range: tuple[int, int],
        port: int = 0,
        dual_stack: bool = False,
        creator: str | None = None,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        ports = (port, port) if port else port_range
        sock = None
        if dual_stack and host == "0.0.0.0" and socket.has_ipv6:
            try:
                sock = bind_udp("::", ports, dual_stack=True)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise
                # No IPv6 on this host: IPv4 only.
        self.sock: socket.socket = sock or bind_udp(host, ports)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.port: int = self.sock.getsockname()[1]
        self.relay = StreamRelay(creator, grace)
        self.relay.on_keyframe_needed = self._request_keyframe
        #: When the latched source's last RTP packet was accepted (garbage and strangers do not count: a dead
        #: device must not look live).
        self.last_packet_at: float | None = None
        self.dropped_out = 0
        #: (send, header, payload): joined only when sent (`RelayViewer` explains why).
        self._outbox: deque[tuple[Sender, bytes, bytes]] = deque()
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)
        self._pump = self._loop.create_task(self._run_pump(), name=f"rtp-pump-{self.port}")
        self._last_pli = 0.0
        self.closed = False

    @classmethod
    def open(cls, settings: MediaSettings, port: int = 0, creator: str | None = None) -> RtpIngest:
        """A mountpoint's ingest placed as the server's settings say: the streaming plugin knows ports and
        creators, not addresses, address families or latch timing."""
        return cls(
            settings.bind,
            settings.port_range,
            port,
            dual_stack=settings.use_ipv6,
            creator=creator,
            grace=settings.rtp_latch_grace,
        )

    # -- viewers -------------------------------------------------------------------------------------------
    def viewer(self, ssrc: int, payload_type: int, send: Sender) -> RelayViewer:
        """A relay output for one viewer; `send` is awaited per packet from the pump."""
        outbox = self._outbox

        def parts(header: bytes, payload: bytes) -> None:
            outbox.append((send, header, payload))

        return RelayViewer(ssrc, payload_type, parts=parts)

    def add_viewer(self, viewer: RelayViewer) -> None:
        self.relay.add_viewer(viewer)
        self._kick()

    def remove_viewer(self, viewer: RelayViewer) -> None:
        self.relay.remove_viewer(viewer)

    def resync(self, viewer: RelayViewer) -> None:
        self.relay.resync(viewer)
        self._kick()

    def send_now(self, send: Sender, data: bytes) -> None:
        """Queue one packet outside the relay (a NACK retransmission)."""
        self._outbox.append((send, data, b""))
        self._kick()

    # -- I/O ---------------------------------------------------------------------------------------------------
    def _readable(self) -> None:
        feed = self.relay.feed
        recv = self.sock.recvfrom
        now = time.monotonic()
        accepted = False
        latch = self.relay.latch
        fell_back, taken_over = latch.fell_back, latch.taken_over
        for _ in range(READ_BATCH):
            try:
                data, addr = recv(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ICMP port unreachable reported on a later read
                log.debug("ingest %s: %s", self.port, exc)
                break
            accepted = feed(data, addr, now) or accepted
        if accepted:
            self.last_packet_at = now
        if latch.fell_back and not fell_back:
            log.warning(
                "RTP on port %s: nothing from the creator's address %s for %.0f s; latched to %s instead",
                self.port,
                latch.creator,
                latch.grace,
                _endpoint(latch.source),
            )
        if latch.taken_over and not taken_over:
            log.warning(
                "RTP on port %s: the creator's address sends now; latched to %s", self.port, _endpoint(latch.source)
            )
        self._kick()

    def _kick(self) -> None:
        if self._outbox:
            if len(self._outbox) > MAX_OUTBOX:
                for _ in range(len(self._outbox) - MAX_OUTBOX):
                    self._outbox.popleft()
                    self.dropped_out += 1
            self._wake.set()

    async def _run_pump(self) -> None:
        outbox = self._outbox
        while True:
            await self._wake.wait()
            self._wake.clear()
            while outbox:
                send, header, payload = outbox.popleft()
                try:
                    await send(header + payload)
                except Exception:  # one viewer's broken transport must not stop the others
                    self.dropped_out += 1

    def _request_keyframe(self, source_ssrc: int) -> None:
        now = time.monotonic()
        if self.relay.source is None or now - self._last_pli < PLI_INTERVAL:
            return
        self._last_pli = now
        pli = pack_pli(SERVER_SSRC, source_ssrc)
        try:
            self.sock.sendto(pli, self.relay.source)
        except OSError:
            pass

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        self._pump.cancel()
        self._outbox.clear()


def _endpoint(addr: tuple[str, int] | tuple[str, int, int, int] | None) -> str:
    if addr is None:
        return "nothing"
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
