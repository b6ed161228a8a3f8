"""`Viewer` on its own: real aiortc peer connection, real UDP ingest on loopback."""

from __future__ import annotations

import pytest

from apuppet.media.ingest import RtpIngest
from apuppet.media.peers import PeerBudget, Peers
from apuppet.media.settings import MediaSettings
from apuppet.media.viewer import Viewer

from .test_ice import free_range


async def test_packets_queued_before_a_viewer_left_are_dropped_not_sent_or_started() -> None:
    """The ingest's outbox may still hold packets for a viewer that has just left; they must neither reach its
    (closed) transport nor tell the client "started"."""
    lo, hi = free_range(8)
    settings = MediaSettings(bind="127.0.0.1", port_range=(lo, hi), use_ipv6=False)
    ingest = RtpIngest.open(settings)
    started: list[bool] = []
    viewer = Viewer(Peers(settings), ingest, on_started=lambda: started.append(True), session=1, address="")
    try:
        viewer._detach()
        await viewer._send(b"\x80" + bytes(20))
        assert started == []
    finally:
        await viewer.close()
        ingest.close()


def test_a_peer_connection_that_cannot_be_made_gives_its_count_back(monkeypatch: pytest.MonkeyPatch) -> None:
    peers = Peers(MediaSettings(bind="127.0.0.1", max_peers_per_session=1))

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no peer connection")

    monkeypatch.setattr("apuppet.media.peer.ServerPeerConnection.__init__", broken)
    with pytest.raises(RuntimeError):
        peers.create(session=7, address="192.0.2.1")
    assert isinstance(peers.budget, PeerBudget) and not peers.budget.sessions and not peers.budget.addresses
