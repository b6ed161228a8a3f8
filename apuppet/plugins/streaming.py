"""`janus.plugin.streaming`: RTP mountpoints fed by the device, relayed to WebRTC viewers without transcoding.

Request checks and the registry are `mountpoints.Mountpoints` (sans-I/O); media is `apuppet.media`
(`RtpIngest` per mountpoint, `Viewer` per watching handle, both made from the server's `MediaSettings`). As in
Janus, `create`, `destroy`, `list`, `info` and `edit` answer at once; `watch`, `start`, `pause` and `stop` are
acknowledged and answered by events (`preparing` with the offer, `starting`, `started`, `pausing`, `stopping`,
`stopped`).

A mountpoint belongs to the handle that created it: when that handle goes (the agent's session destroyed or
timed out), the mountpoint goes too, its port is released and its viewers get `stopped`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..api.idtag import tag
from ..api.plugin import JSON, Intents, Plugin, PluginResult
from ..api.session import Handle
from ..config import Config
from ..media.contain import CLOSE_TIMEOUT, contained, report_failure, spawn_owned
from ..media.ingest import RtpIngest
from ..media.peers import Peers, TooManyPeerConnections, WebRtcUnavailable
from ..media.recording import Recordings
from .mountpoints import (
    Mountpoint,
    Mountpoints,
    RequestError,
    StreamingError,
    error,
    mountpoint_key,
)

if TYPE_CHECKING:
    from ..media.viewer import Viewer

log = logging.getLogger(__name__)

SYNC_REQUESTS = {"create", "destroy", "list", "info", "edit"}
ASYNC_REQUESTS = {"watch", "start", "pause", "stop"}


def status(value: str) -> JSON:
    return {"streaming": "event", "result": {"status": value}}


@dataclass(eq=False)
class Watch:
    """A handle's viewing state (Janus: one stream per handle)."""

    key: str
    viewer: Viewer
    #: When the watch began (UNIX seconds), for the operator console.
    since: float = 0.0


class StreamingPlugin(Plugin):
    name = "janus.plugin.streaming"
    version = 10
    version_string = "0.0.10"
    description = "Janus-compatible streaming plugin: RTP/H.264 mountpoints relayed to WebRTC viewers"

    def __init__(self, config: Config, peers: Peers) -> None:
        super().__init__(config)
        self.peers = peers
        port_range = peers.settings.port_range
        self.mountpoints = Mountpoints(config.admin_secret, owner_gone=self.owner_gone, port_range=port_range)
        self.ingests: dict[str, RtpIngest] = {}
        #: Handle id → keys of the mountpoints it created.
        self.created: dict[int, set[str]] = {}
        self.watches: dict[int, Watch] = {}
        #: The `watch` each handle (id) has under way before its viewer exists; a hangup, stop or detach takes it back.
        self._watching = Intents()
        self.handles: dict[int, Handle] = {}
        #: One recording per watched mountpoint with `record_sessions` (media/recording.py: what a session is).
        self.recordings = Recordings(peers.settings.recordings_dir)
        #: Viewers being closed; owned here because the handle (and its tasks) may already be gone.
        self._closing: set[asyncio.Task[Any]] = set()

    # -- plugin hooks ----------------------------------------------------------------------------------------
    def attach(self, handle: Handle) -> None:
        self.handles[handle.id] = handle

    def message(self, handle: Handle, transaction: str, body: JSON, jsep: JSON | None) -> PluginResult | None:
        request = body.get("request")
        verb = request.lower() if isinstance(request, str) else None
        if verb in SYNC_REQUESTS | ASYNC_REQUESTS and not handle.session.trusted:
            try:
                # The verb gate only: `watch` is asynchronous, so its guessing check answers in an event.
                self.mountpoints.access.check_viewer(verb)
            except RequestError as exc:
                return PluginResult(error(exc.code, exc.reason))
        if verb in SYNC_REQUESTS:
            try:
                data = getattr(self, f"_{verb}")(handle, body)
            except RequestError as exc:
                data = error(exc.code, exc.reason)
            self._drain_reports()
            return PluginResult(data)
        if verb in ASYNC_REQUESTS:
            handle.spawn(self._async(verb, handle, transaction, body, jsep), name=f"streaming-{verb}-{handle.id}")
            return None
        if request is None:
            return PluginResult(error(StreamingError.MISSING_ELEMENT, "Missing mandatory element (request)"))
        return PluginResult(error(StreamingError.INVALID_REQUEST, f"Unknown request '{str(request)[:32]}'"))

    def locate(self, body: JSON) -> tuple[str, str] | None:
        request, mp_id = body.get("request"), body.get("id")
        if request not in ("watch", "create", "destroy", "info", "edit") or isinstance(mp_id, bool):
            return None
        if isinstance(mp_id, str | int):
            return "mountpoint", mountpoint_key(mp_id)
        return None

    def abandon(self, kind: str, key: str) -> bool:
        mountpoint = self.mountpoints.mountpoints.get(key) if kind == "mountpoint" else None
        if mountpoint is None or not isinstance(mountpoint.owner, int) or not self.owner_gone(mountpoint.owner):
            return False
        self._teardown(self.mountpoints.remove(mountpoint, "made anew on another node"))
        self._drain_reports()
        return True

    def trickle(self, handle: Handle, candidates: list[JSON]) -> None:
        """The web-admin's candidates (janus.js trickles them): without them a viewer whose checks cannot reach the
        server never connects."""
        watch = self.watches.get(handle.id)
        if watch is not None:
            # Kept until the answer if early, then checked (media.peer.ServerPeerConnection.trickle).
            handle.spawn(watch.viewer.trickle(candidates), name=f"streaming-trickle-{handle.id}")

    def hangup(self, handle: Handle) -> None:
        self._watching.take_back(handle.id)
        watch = self._unwatch(handle.id, "hangup")
        if watch is not None:
            # Not a handle task: a detach right after the hangup would cancel it and leak the peer connection.
            self._spawn_close(self._close_viewer(handle, watch, notify=False))

    def detach(self, handle: Handle) -> None:
        self._watching.take_back(handle.id)
        watch = self._unwatch(handle.id, "detached")
        self.handles.pop(handle.id, None)
        if watch is not None:
            watch.viewer.on_closed = None
            self._spawn_close(watch.viewer.close())
        for key in self.created.pop(handle.id, set()):
            mountpoint = self.mountpoints.mountpoints.get(key)
            if mountpoint is not None:
                self._teardown(self.mountpoints.remove(mountpoint, "creator gone"))
        self._drain_reports()

    async def close(self) -> None:
        for handle_id in list(self.handles):
            handle = self.handles[handle_id]
            self.detach(handle)
        for key in list(self.ingests):
            self.ingests.pop(key).close()
        if self._closing:
            # Bounded: a peer connection that cannot say goodbye must not hold up the server's shutdown.
            await asyncio.wait(list(self._closing), timeout=CLOSE_TIMEOUT)
        await self.recordings.close()

    def metrics(self) -> dict[str, float]:
        totals: dict[str, float] = {
            "streaming_mountpoints": len(self.mountpoints.mountpoints),
            "streaming_viewers": sum(len(i.relay.viewers) for i in self.ingests.values()),
        }
        for ingest in self.ingests.values():
            s = ingest.relay.stats
            for name, value in (
                ("rtp_packets_in_total", s.packets_in),
                ("rtp_bytes_in_total", s.bytes_in),
                ("rtp_packets_out_total", s.packets_out),
                ("rtp_foreign_total", s.foreign),
                ("rtp_malformed_total", s.malformed),
                ("rtp_lost_total", ingest.relay.assembler.stats.lost),
            ):
                totals[name] = totals.get(name, 0) + value
        totals.update(self.recordings.metrics())
        return totals

    # -- synchronous requests ----------------------------------------------------------------------------------
    def _create(self, handle: Handle, body: JSON) -> JSON:
        opened: list[RtpIngest] = []

        def bind(port: int) -> int:
            # The device's RTP is expected from the address that created the mountpoint (media/latch.py).
            ingest = RtpIngest.open(self.peers.settings, port, creator=handle.session.remote)
            opened.append(ingest)
            return ingest.port

        reclaimed = self.mountpoints.reclaim(handle.session.id, body, handle.session.remote)
        if reclaimed is not None:
            self._teardown(reclaimed)
        mountpoint = self.mountpoints.create(handle.session.id, body, handle.session.remote, bind)
        key = mountpoint_key(mountpoint.id)
        self.ingests[key] = opened[0]
        self.created.setdefault(handle.id, set()).add(key)
        return mountpoint.created()

    def _destroy(self, handle: Handle, body: JSON) -> JSON:
        mountpoint = self.mountpoints.destroy(handle.session.id, body, handle.session.remote)
        self._teardown(mountpoint)
        return {"streaming": "destroyed", "id": mountpoint.id}

    def _edit(self, handle: Handle, body: JSON) -> JSON:
        mountpoint = self.mountpoints.edit(handle.session.id, body, handle.session.remote)
        return {"streaming": "edited", "id": mountpoint.id, "permanent": False}

    def _list(self, handle: Handle, body: JSON) -> JSON:
        listed = self.mountpoints.listing(handle.session.id, body, lambda m: self._age(m), handle.session.remote)
        return {"streaming": "list", "list": listed}

    def _info(self, handle: Handle, body: JSON) -> JSON:
        mountpoint = self.mountpoints.visible(handle.session.id, body, handle.session.remote)
        ingest = self.ingests[mountpoint_key(mountpoint.id)]
        info: JSON = {
            "id": mountpoint.id,
            "name": mountpoint.name,
            "description": mountpoint.description,
            "type": "live",
            "enabled": True,
            "is_private": mountpoint.is_private,
            "viewers": len(ingest.relay.viewers),
            **self._age(mountpoint),
        }
        if self.mountpoints.privileged(mountpoint, handle.session.id, body, handle.session.remote):
            relay = ingest.relay
            info.update(
                video_port=mountpoint.video_port,
                videopt=mountpoint.videopt,
                videortpmap=mountpoint.videortpmap,
                **({"videofmtp": mountpoint.videofmtp} if mountpoint.videofmtp else {}),
                stats={
                    "packets": relay.stats.packets_in,
                    "bytes": relay.stats.bytes_in,
                    "foreign": relay.stats.foreign,
                    "malformed": relay.stats.malformed,
                    **relay.nal_summary(),
                },
            )
        return {"streaming": "info", "info": info}

    def _age(self, mountpoint: Mountpoint) -> JSON:
        ingest = self.ingests.get(mountpoint_key(mountpoint.id))
        if ingest is None or ingest.last_packet_at is None:
            return {}
        return {"video_age_ms": int((time.monotonic() - ingest.last_packet_at) * 1000)}

    # -- asynchronous requests ---------------------------------------------------------------------------------
    async def _async(self, verb: str, handle: Handle, transaction: str, body: JSON, jsep: JSON | None) -> None:
        try:
            await getattr(self, f"_{verb}")(handle, transaction, body, jsep)
        except RequestError as exc:
            handle.push_event(error(exc.code, exc.reason), transaction=transaction)
        except Exception as exc:
            # Not the client's fault, but the client waits for an event all the same (it got an `ack`).
            report_failure(f"streaming {verb}", exc)
            reason = f"Could not {verb}: internal error ({type(exc).__name__})"
            handle.push_event(error(StreamingError.UNKNOWN_ERROR, reason), transaction=transaction)
        finally:
            self._drain_reports()

    async def _watch(self, handle: Handle, transaction: str, body: JSON, jsep: JSON | None) -> None:
        intent = self._watching.begin(handle.id)
        try:
            await self.peers.ready()
            mountpoint = self.mountpoints.watchable(body, handle.session.remote, handle.session.trusted)
            key = mountpoint_key(mountpoint.id)
            previous = self._unwatch(handle.id, "watching another")
            if previous is not None:
                await self._close_viewer(handle, previous, notify=False)
        except WebRtcUnavailable as exc:
            raise RequestError(StreamingError.UNKNOWN_ERROR, str(exc)) from None
        finally:
            wanted = self._watching.end(handle.id, intent)
        if not wanted:
            return  # hung up, stopped, detached or watching again meanwhile: nothing to make
        if key not in self.ingests:
            raise RequestError(StreamingError.NO_SUCH_MOUNTPOINT, "No such mountpoint/stream (it went meanwhile)")
        from ..media.viewer import Viewer  # loaded by ready(): the stack is imported once a peer is needed

        try:
            viewer = Viewer(
                self.peers,
                self.ingests[key],
                session=handle.session.id,
                address=handle.session.peer_cap_address,
                name=f"handle {tag(handle.id)}",
            )
        except TooManyPeerConnections as exc:
            raise RequestError(StreamingError.UNKNOWN_ERROR, str(exc)) from None
        watch = Watch(key, viewer, time.time())
        viewer.on_started = contained(lambda: handle.push_event(status("started")), "streaming viewer started")
        viewer.on_closed = contained(lambda: self._viewer_gone(handle, watch), "streaming viewer closed")
        self.watches[handle.id] = watch
        try:
            offer = await viewer.offer()
        except BaseException:
            # Nothing of a failed watch stays: not the entry, not the peer connection (the caller sends the error).
            if self.watches.get(handle.id) is watch:
                self._unwatch(handle.id, "watch failed")
            viewer.on_closed = None
            self._spawn_close(viewer.close())
            raise
        if self.watches.get(handle.id) is not watch:
            return  # stopped or replaced meanwhile
        self.recordings.watched(key, self.ingests[key].relay, f"mountpoint {tag(key)}")
        self.emit("viewer_watching", mountpoint=key, handle=handle.id, remote=handle.session.remote)
        handle.push_event(status("preparing"), offer, transaction)

    async def _start(self, handle: Handle, transaction: str, body: JSON, jsep: JSON | None) -> None:
        watch = self.watches.get(handle.id)
        if watch is None:
            raise RequestError(StreamingError.INVALID_REQUEST, "Can't start: not watching any mountpoint")
        viewer = watch.viewer
        if viewer.awaiting_answer:
            if jsep is None or jsep.get("type") != "answer":
                raise RequestError(StreamingError.MISSING_ELEMENT, "Missing mandatory element (jsep answer)")
            try:
                await viewer.accept(jsep)
            except Exception as exc:
                raise RequestError(StreamingError.INVALID_ELEMENT, f"Invalid SDP answer: {exc}") from None
        else:
            viewer.resume()
        handle.push_event(status("starting"), transaction=transaction)

    async def _pause(self, handle: Handle, transaction: str, body: JSON, jsep: JSON | None) -> None:
        watch = self.watches.get(handle.id)
        if watch is None:
            raise RequestError(StreamingError.INVALID_REQUEST, "Can't pause: not watching any mountpoint")
        watch.viewer.pause()
        handle.push_event(status("pausing"), transaction=transaction)

    async def _stop(self, handle: Handle, transaction: str, body: JSON, jsep: JSON | None) -> None:
        self._watching.take_back(handle.id)
        watch = self._unwatch(handle.id, "stopped")
        handle.push_event(status("stopping"), transaction=transaction)
        if watch is not None:
            await self._close_viewer(handle, watch, notify=True)

    # -- operators ---------------------------------------------------------------------------------------------
    def evict(self, handle: Handle, reason: str, message: str) -> None:
        """The viewer's video stops with the reason (`stopped` plus `reason` and `message`, then a hangup); the
        mountpoints the handle made go, their viewers told why the same way."""
        told: JSON = {"reason": reason, "message": message}
        watch = self._unwatch(handle.id, reason)
        if watch is not None:
            watch.viewer.on_closed = None
            handle.push_event({**status("stopped"), **told})
            handle.push_hangup(message)
            self._spawn_close(watch.viewer.close())
        for key in self.created.pop(handle.id, set()):
            mountpoint = self.mountpoints.mountpoints.get(key)
            if mountpoint is not None:
                self._teardown(self.mountpoints.remove(mountpoint, reason), told)
        self._drain_reports()

    def snapshot(self) -> JSON:
        def extra(mountpoint: Mountpoint) -> JSON:
            key = mountpoint_key(mountpoint.id)
            owner = self.handles.get(next((h for h, keys in self.created.items() if key in keys), 0))
            viewers = []
            for handle_id, watch in self.watches.items():
                handle = self.handles.get(handle_id)
                if watch.key == key and handle is not None:
                    state = "paused" if watch.viewer.paused else "playing" if watch.viewer.started else "starting"
                    viewers.append(
                        {
                            "session": tag(handle.session.id),
                            "address": handle.session.remote,
                            "since": watch.since,
                            "state": state,
                        }
                    )
            return {
                "owner": {"session": tag(owner.session.id)} if owner is not None else {},
                "viewers": viewers,
                **self._age(mountpoint),
            }

        return {"mountpoints": self.mountpoints.snapshot(extra)}

    # -- teardown ----------------------------------------------------------------------------------------------
    def _unwatch(self, handle_id: int, reason: str) -> Watch | None:
        """Forget a handle's viewer (every path goes through here, so operators see each viewer leave once)."""
        watch = self.watches.pop(handle_id, None)
        if watch is not None:
            handle = self.handles.get(handle_id)
            remote = handle.session.remote if handle is not None else ""
            self.emit("viewer_left", mountpoint=watch.key, handle=handle_id, remote=remote, reason=reason)
            if all(other.key != watch.key for other in self.watches.values()):
                self.recordings.unwatched(watch.key)
        return watch

    async def _close_viewer(self, handle: Handle, watch: Watch, notify: bool) -> None:
        watch.viewer.on_closed = None
        await watch.viewer.close()
        if notify:
            handle.push_event(status("stopped"))
            handle.push_hangup()

    def _viewer_gone(self, handle: Handle, watch: Watch) -> None:
        """The viewer's connection failed or closed on its own."""
        if self.watches.get(handle.id) is watch:
            self._unwatch(handle.id, "connection closed")
            handle.push_event(status("stopped"))
            handle.push_hangup("ICE failed" if watch.viewer.failed else "Close PC")

    def _teardown(self, mountpoint: Mountpoint, told: JSON | None = None) -> None:
        """A mountpoint is gone: its viewers stop (`told`: why, added to their `stopped`), its port is released."""
        key = mountpoint_key(mountpoint.id)
        for handle_id, watch in list(self.watches.items()):
            if watch.key != key:
                continue
            self._unwatch(handle_id, "mountpoint destroyed")
            handle = self.handles.get(handle_id)
            watch.viewer.on_closed = None
            if handle is not None:
                handle.push_event({**status("stopped"), **(told or {})})
                handle.push_hangup()
            self._spawn_close(watch.viewer.close())
        for created in self.created.values():
            created.discard(key)
        ingest = self.ingests.pop(key, None)
        if ingest is not None:
            ingest.close()

    def _drain_reports(self) -> None:
        for name, fields in self.mountpoints.take_reports():
            if name in ("mountpoint_created", "mountpoint_destroyed"):
                self.placed("mountpoint", fields["id"], name == "mountpoint_created")
            self.emit(name, **fields)

    def _spawn_close(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a viewer's close, which must outlive the handle that started it; `close` awaits it."""
        spawn_owned(coro, "streaming viewer close", self._closing)
