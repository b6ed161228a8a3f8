"""`/metrics` in Prometheus' text format: sessions, handles, operator events, and the plugins' own counters
(packets, bytes, errors). Rendering is a pure function; the server only serves it behind the admin secret."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from ..api.gateway import Gateway
from .connguard import ConnectionGuard


class EventCounter:
    """Gateway observer counting operator events by name."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        self.counts[event] += 1


def _name(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", text)


def render(
    gateway: Gateway,
    events: EventCounter,
    guard: ConnectionGuard | None = None,
    cluster: dict[str, float] | None = None,
) -> str:
    lines = [
        "# HELP apuppet_sessions Janus sessions alive.",
        "# TYPE apuppet_sessions gauge",
        f"apuppet_sessions {len(gateway.sessions)}",
        "# HELP apuppet_handles Plugin handles alive.",
        "# TYPE apuppet_handles gauge",
        f"apuppet_handles {sum(len(s.handles) for s in gateway.sessions.values())}",
        "# HELP apuppet_events_total Operator events (session_created, viewer_joined, wrong_pin, ...).",
        "# TYPE apuppet_events_total counter",
    ]
    for event, count in sorted(events.counts.items()):
        lines.append(f'apuppet_events_total{{event="{_name(event)}"}} {count}')
    if guard is not None:
        lines += [
            "# HELP apuppet_connections Open HTTP and WebSocket connections.",
            "# TYPE apuppet_connections gauge",
            f"apuppet_connections {len(guard.conns)}",
            "# HELP apuppet_connections_closed_total Connections closed or refused by the limits, by reason.",
            "# TYPE apuppet_connections_closed_total counter",
            f'apuppet_connections_closed_total{{reason="idle"}} {guard.closed_idle}',
            f'apuppet_connections_closed_total{{reason="slow_head"}} {guard.closed_slow}',
            f'apuppet_connections_closed_total{{reason="over_limit"}} {guard.refused}',
        ]
    # Scale-out (apuppet.cluster): requests relayed to other nodes, their time, failures, nodes alive.
    for key, value in sorted((cluster or {}).items()):
        kind = "counter" if key.endswith("_total") else "gauge"
        lines += [f"# TYPE apuppet_{key} {kind}", f"apuppet_{key} {value:g}"]
    for plugin in gateway.plugins.values():
        short = _name(plugin.name.rsplit(".", 1)[-1])
        for key, value in sorted(plugin.metrics().items()):
            metric = f"apuppet_{short}_{_name(key)}"
            kind = "counter" if key.endswith("_total") else "gauge"
            lines.append(f"# TYPE {metric} {kind}")
            lines.append(f"{metric} {value:g}")
    return "\n".join(lines) + "\n"
