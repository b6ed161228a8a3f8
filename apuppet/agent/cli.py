"""`apuppet agent`: a device agent for a running server. Its options and announcer are reused by `apuppet demo`,
which `apuppet.cli` composes: this package knows nothing of the server."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import sys
from typing import Any

from ..runtime import run_until_signal, setup_logging
from .agent import Agent, AgentOptions
from .sources import create_source
from .sources.base import MAX_STREAM_SIDE
from .video import VideoSettings

log = logging.getLogger("apuppet.agent")


def register(subparsers: Any) -> None:
    agent = subparsers.add_parser(
        "agent",
        help="run a device agent: share this machine's screen (x11), an Android device (adb) or a virtual phone",
        description="Connect to an apuppet (or aPuppet/Janus) server as the aPuppet Android agent does, show the "
        "Session ID, password, link and QR code, stream while a viewer watches and obey its commands. "
        "Reconnects by itself when the server restarts.",
    )
    agent.add_argument("--server", required=True, help="server (web-admin) URL, e.g. https://srv.example.org/")
    agent.add_argument(
        "--secret",
        default=os.environ.get("APUPPET_SECRET", ""),
        help="the server's API secret (default: $APUPPET_SECRET; the environment keeps it out of `ps`)",
    )
    agent.add_argument("--name", default="", help="device name shown to viewers (default: depends on the source)")
    agent.add_argument(
        "--ca-file", help="PEM certificate to trust for an https server (e.g. a self-signed one), besides the system's"
    )
    agent.add_argument("--source", choices=("demo", "x11", "adb"), default="demo", help="what to share")
    agent.add_argument("--display", help="x11: the X display (default: $DISPLAY)")
    agent.add_argument("--adb", default="adb", help="adb: the adb program (default: %(default)s)")
    agent.add_argument("--serial", help="adb: device serial (adb -s), when several are connected")
    video_options(agent)
    common_options(agent)
    agent.set_defaults(func=cmd_agent)


def video_options(parser: argparse.ArgumentParser) -> None:
    d = VideoSettings()
    parser.add_argument("--fps", type=int, default=d.fps, help="frame rate (default: %(default)s)")
    parser.add_argument("--bitrate", type=int, default=d.bitrate, help="bits per second (default: %(default)s)")
    parser.add_argument(
        "--keyframe-interval", type=float, default=d.keyframe_interval, help="seconds (default: %(default)s)"
    )
    parser.add_argument(
        "--refresh",
        type=float,
        default=d.refresh,
        help="resend the picture after this many still seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--max-size", type=int, default=MAX_STREAM_SIDE, help="longest side of the stream (default: %(default)s)"
    )


def common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--apuppet-ids",
        action="store_true",
        help="aPuppet's format: 8-digit Session ID and 4-digit password (weak; for the classic web-admin)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line once connected, for scripts")
    parser.add_argument("--no-qr", action="store_true", help="do not draw the QR code")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="warning")


def video_settings(args: argparse.Namespace) -> VideoSettings:
    if args.fps <= 0 or args.bitrate <= 0 or args.keyframe_interval <= 0 or args.refresh <= 0:
        raise ValueError("--fps, --bitrate, --keyframe-interval and --refresh must be positive")
    return VideoSettings(args.fps, args.bitrate, args.keyframe_interval, args.refresh)


def qr_text(data: str) -> str:
    import qrcode

    qr = qrcode.QRCode(border=2)
    qr.add_data(data)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


class Announcer:
    """Shows the credentials once per identity (a reconnect with the same ones shows nothing new)."""

    def __init__(self, json_mode: bool, qr: bool, extra: dict[str, Any] | None = None) -> None:
        self.json_mode = json_mode
        self.qr = qr
        self.extra = extra or {}
        self.shown: tuple[str, str] | None = None

    def __call__(self, agent: Agent) -> None:
        ident = (agent.credentials.session, agent.credentials.password)
        if ident == self.shown:
            log.warning("reconnected; Session ID and password unchanged")
            return
        self.shown = ident
        info = {**agent.info, **self.extra}
        if self.json_mode:
            print(json.dumps(info), flush=True)
            return
        lines = [
            "",
            f"  Session ID: {info['session']}",
            f"  Password:   {info['password']}",
            f"  Link:       {info['url']}",
        ]
        if "server" in info:
            lines.append(f"  Server:     {info['server']}")
        print("\n".join(lines), flush=True)
        if self.qr:
            print(qr_text(info["url"]), flush=True)


async def run_agent(agent: Agent) -> None:
    """Until SIGINT/SIGTERM, which stop the agent cleanly: it destroys its session on the server before exiting."""
    await run_until_signal(agent.run(), agent.stop)


def cmd_agent(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        video = video_settings(args)
        options: dict[str, Any] = {}
        if args.source == "x11" and args.display:
            options["display"] = args.display
        if args.source == "adb":
            options = {"adb": args.adb, "serial": args.serial}
        source = create_source(args.source, **options)
        name = args.name or {"demo": "Demo phone", "x11": "X11 display", "adb": "Android device"}[args.source]
        agent = Agent(
            AgentOptions(
                server_url=args.server,
                secret=args.secret,
                name=name,
                credential_style="apuppet" if args.apuppet_ids else "strong",
                video=video,
                max_size=args.max_size,
                ca_file=args.ca_file,
            ),
            source,
            on_connected=Announcer(args.json, not args.no_qr),
        )
        asyncio.run(run_agent(agent))
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"apuppet agent: {exc}", file=sys.stderr)
        return 1
    return 0
