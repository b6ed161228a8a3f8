"""A minimal plugin used to exercise the Janus core and transports without WebRTC (like Janus' echotest, minus
media): `{"sync": …}` answers synchronously, anything else is acked and echoed back as an event."""

from __future__ import annotations

from apuppet.api.plugin import JSON, Plugin, PluginResult
from apuppet.api.session import Handle


class EchoPlugin(Plugin):
    name = "janus.plugin.echotest"
    description = "test echo"

    def __init__(self, config: object = None) -> None:
        self.attached: set[int] = set()
        self.detached: list[int] = []
        self.hangups: list[int] = []
        self.trickled: list[JSON] = []

    def attach(self, handle: Handle) -> None:
        self.attached.add(handle.id)

    def message(self, handle: Handle, transaction: str, body: JSON, jsep: JSON | None) -> PluginResult | None:
        if body.get("crash"):
            raise RuntimeError("plugin bug")
        if "sync" in body:
            return PluginResult({"echotest": "result", "sync": body["sync"]})
        data = {"echotest": "event", "echo": body}
        handle.push_event(data, jsep={"type": "answer", "sdp": jsep["sdp"]} if jsep else None, transaction=transaction)
        return None

    def trickle(self, handle: Handle, candidates: list[JSON]) -> None:
        self.trickled.extend(candidates)

    def hangup(self, handle: Handle) -> None:
        self.hangups.append(handle.id)

    def detach(self, handle: Handle) -> None:
        self.attached.discard(handle.id)
        self.detached.append(handle.id)
