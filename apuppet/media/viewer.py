"""One viewer's WebRTC side: a sendonly H.264 peer connection that carries relayed RTP as it is.

The server offers (as Janus does in `watch`) a single video m-line with H.264 constrained baseline,
`packetization-mode=1`, NACK and PLI feedback and no RTX. Nothing is encoded: the transceiver's track never
yields a frame, and the relay's rewritten packets go out through the DTLS transport's SRTP path.

Why not aiortc's public `av.Packet` route (a track yielding encoded access units)? It must wait for each
whole access unit, then re-splits and re-packetizes it once per viewer, and the sender's tasks serialize
that work viewer after viewer: bench/relay.py measured it (docs/benchmarks.md). Forwarding needs aiortc
private API, all of it here and checked by `check_aiortc()` and the tests:

* `RTCDtlsTransport._send_rtp(bytes)`: SRTP-protect and send one packet;
* `RTCRtpSender._ssrc`: the SSRC announced in the offer, which our packets must carry;
* `RTCRtpSender._handle_rtcp_packet`: where the transport routes the viewer's RTCP for that SSRC; it is
  wrapped to answer NACKs from the relay's history and turn PLI/FIR into a keyframe replay.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket
from aiortc.sdp import SessionDescription

from .contain import contained, report_failure
from .ingest import RtpIngest
from .peers import Peers
from .relay import RelayViewer

log = logging.getLogger(__name__)

#: A viewer's PLI/FIR replays the kept keyframe at most this often.
PLI_MIN_INTERVAL = 0.5


def check_aiortc() -> None:
    """Fail early, with a clear message, if an aiortc upgrade removed what forwarding relies on."""
    missing = [
        name
        for owner, name in ((RTCDtlsTransport, "_send_rtp"), (RTCRtpSender, "_handle_rtcp_packet"))
        if not callable(getattr(owner, name, None))
    ]
    if missing:
        raise RuntimeError(f"aiortc {missing} is missing: this aiortc version cannot forward RTP")


def h264_capability() -> Any:
    for codec in RTCRtpSender.getCapabilities("video").codecs:
        params = codec.parameters
        if (
            codec.mimeType.lower() == "video/h264"
            and params.get("packetization-mode") == "1"
            and params.get("profile-level-id") == "42e01f"
        ):
            return codec
    raise RuntimeError("aiortc offers no H.264 constrained baseline, packetization-mode=1")


class _ReceiveSide:
    """What aiortc makes for receiving video, once for every viewer's never-started receiver (`Viewer`)."""

    def __init__(self) -> None:
        self.jitter_buffer = JitterBuffer(capacity=1, is_video=True)
        self.decoder_queue: queue.Queue[Any] = queue.Queue()
        self.decoder_error = threading.Event()


_UNUSED_RECEIVE_SIDE = _ReceiveSide()


class IdleTrack(MediaStreamTrack):
    """The transceiver's track: it never yields, so aiortc's own sender loop sleeps."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._ended = asyncio.Event()

    async def recv(self) -> Any:
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._ended.set()


class Viewer:
    """A viewer's peer connection, joined to a mountpoint's relay once DTLS is up."""

    def __init__(
        self,
        peers: Peers,
        ingest: RtpIngest,
        on_started: Callable[[], None] | None = None,
        on_closed: Callable[[], None] | None = None,
        session: Any = None,
        address: str = "",
        name: str = "viewer",
    ) -> None:
        self.ingest = ingest
        self.on_started = on_started
        self.on_closed = on_closed
        # Counted against the watching client's caps (`peer.PeerBudget`); raises `TooManyPeerConnections`.
        self.pc = peers.create(session, address, name)
        self.track = IdleTrack()
        self.transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        self.transceiver.setCodecPreferences([h264_capability()])
        self.sender = self.transceiver.sender
        # aiortc gives a sendonly transceiver a receiver all the same, with a bitrate estimator of 1000 objects
        # (one per millisecond of its window, ~150 KB; 15 MB with 100 viewers) for video that never comes.
        receiver = self.transceiver.receiver
        receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]
        # And a jitter buffer of 512 slots, a decoder queue and its error flag (~8 KB; threading locks and
        # conditions), which only `receive()` uses: never called for a sendonly transceiver. Shared, not dropped:
        # an aiortc that touched them anyway would find objects of the right type.
        receiver._RTCRtpReceiver__jitter_buffer = _UNUSED_RECEIVE_SIDE.jitter_buffer  # type: ignore[attr-defined]
        receiver._RTCRtpReceiver__decoder_queue = _UNUSED_RECEIVE_SIDE.decoder_queue  # type: ignore[attr-defined]
        receiver._RTCRtpReceiver__decoder_error = _UNUSED_RECEIVE_SIDE.decoder_error  # type: ignore[attr-defined]
        self.output: RelayViewer | None = None
        self.paused = False
        self.started = False
        self.closed = False
        self._last_pli = 0.0
        self._closing: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", contained(self._state_changed, "viewer connection state"))

    @property
    def awaiting_answer(self) -> bool:
        """Whether our offer still waits for the viewer's answer (else `start` resumes a paused viewer)."""
        return bool(self.pc.signalingState == "have-local-offer")

    @property
    def failed(self) -> bool:
        return bool(self.pc.connectionState == "failed")

    async def offer(self) -> dict[str, Any]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.jsep()

    async def accept(self, jsep: dict[str, Any]) -> None:
        """The viewer's answer (`start`), then the candidates it trickled before it."""
        await self.pc.accept_answer(jsep["sdp"])
        self._join()

    async def trickle(self, candidates: list[dict[str, Any]]) -> None:
        """The viewer's trickled candidates (janus.js form); checked, and kept until the answer if early."""
        await self.pc.trickle(candidates)

    # -- relay membership ------------------------------------------------------------------------------------
    def _payload_type(self) -> int:
        description = self.pc.remoteDescription or self.pc.localDescription
        for media in SessionDescription.parse(description.sdp).media:
            if media.kind == "video" and media.rtp.codecs and media.rtp.codecs[0].payloadType is not None:
                return int(media.rtp.codecs[0].payloadType)
        raise ValueError("no video codec negotiated")

    def _join(self) -> None:
        if self.closed or self.paused or self.pc.connectionState != "connected":
            return
        if self.output is None:
            self.output = self.ingest.viewer(self.sender._ssrc, self._payload_type(), self._send)
            original = self.sender._handle_rtcp_packet

            async def handle_rtcp(packet: Any) -> None:
                # Called from aiortc's DTLS receive loop, which an exception would end (contain.py).
                try:
                    if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                        self._nack(packet.lost)
                    elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                        self._picture_loss()
                    else:
                        await original(packet)
                except Exception as exc:
                    report_failure("viewer RTCP", exc)

            self.sender._handle_rtcp_packet = handle_rtcp  # type: ignore[method-assign]
        if self.output not in self.ingest.relay.viewers:
            self.ingest.add_viewer(self.output)

    def pause(self) -> None:
        self.paused = True
        if self.output is not None:
            self.ingest.remove_viewer(self.output)

    def resume(self) -> None:
        self.paused = False
        self._join()

    def _nack(self, lost: list[int]) -> None:
        if self.output is None:
            return
        for seq in lost:
            data = self.output.retransmission(seq)
            if data is not None:
                self.ingest.send_now(self._send, data)

    def _picture_loss(self) -> None:
        now = time.monotonic()
        if self.output is None or self.paused or now - self._last_pli < PLI_MIN_INTERVAL:
            return
        self._last_pli = now
        self.ingest.resync(self.output)

    async def _send(self, data: bytes) -> None:
        if self.closed:
            # Packets queued in the ingest's outbox before the viewer left: neither sent nor "started".
            return
        transport = self.sender.transport
        await transport._send_rtp(data)
        if not self.started:
            self.started = True
            if self.on_started is not None:
                self.on_started()

    def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self._join()
        elif state in ("failed", "closed"):
            self._detach()
            if state == "failed" and self._closing is None:
                self._closing = asyncio.get_running_loop().create_task(self.close())

    def _detach(self) -> None:
        if self.output is not None:
            self.ingest.remove_viewer(self.output)
        if not self.closed:
            self.closed = True
            if self.on_closed is not None:
                self.on_closed()

    async def close(self) -> None:
        self._detach()
        self.track.stop()
        await self.pc.close()
