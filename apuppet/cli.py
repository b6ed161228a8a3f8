"""The `apuppet` command and the one place where the parts are put together: `serve` builds the server, `demo` a
server and an agent in one process, and the agent's and operators' commands are registered from their packages
(which know nothing of each other or of the server)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import secrets
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from . import __version__
from .config import ConfigError, ensure_secrets, load, validate
from .media import avstandin
from .runtime import add_config_option, load_config, serve_until_signal, setup_logging

log = logging.getLogger("apuppet")


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import Server

    loaded = load_config(args.config)
    if loaded is None:
        return 2
    from .cluster.directory import ClusterUnavailable
    from .cluster.workers import Supervisor, parse_worker, port_slices, worker_config
    from .config import resolve
    from .ops.audit import AuditStore

    config = ensure_secrets(*loaded)
    base = loaded[1]
    setup_logging(args.log_level or config.log_level)
    if avstandin.installed():
        log.info("PyAV not loaded (record_sessions is off): aiortc will run on its stand-in")
    workers = args.workers or config.workers
    try:
        if args.worker:
            config = worker_config(config, *parse_worker(args.worker))
        elif workers > 1:
            if not config.redis_url:
                raise ValueError("--workers above 1 needs redis_url in the configuration (see docs/deployment.md)")
            port_slices(config.port_range, workers)
            # The workers share the audit log: made here once (WAL mode, tables), so that their concurrent opens
            # only read it; switching a new file to WAL needs a lock that one of them would not get.
            AuditStore(resolve(base, config.data_dir) / "audit.sqlite3").close()
            supervisor = Supervisor(args.config, workers, ["--log-level", args.log_level] if args.log_level else [])
            asyncio.run(serve_until_signal(supervisor.start, supervisor.stop, supervisor.reload))
            return 0
    except ValueError as exc:
        print(f"apuppet: {exc}", file=sys.stderr)
        return 2
    server = Server(config, base_dir=base, reuse_port=bool(args.worker))

    def reload() -> None:
        try:
            server.load_tls()
        except (OSError, ValueError) as exc:
            log.error("TLS reload failed, keeping the previous certificate: %s", exc)

    async def start() -> None:
        await server.start()
        url = server.url
        if config.hostname:
            # What people type, rather than the loopback address a 0.0.0.0 bind resolves to locally.
            scheme, port = ("https", config.web_https_port) if config.tls_enabled else ("http", server.port)
            default = 443 if scheme == "https" else 80
            url = f"{scheme}://{config.hostname}{'' if port == default else f':{port}'}/"
        log.info("apuppet %s ready: web-admin at %sweb-admin/", __version__, url)
        if config.nat:
            log.info("NAT mode: advertising public IP %s in ICE candidates", config.public_ip)

    try:
        asyncio.run(serve_until_signal(start, server.stop, reload))
    except (OSError, ClusterUnavailable) as exc:
        print(f"apuppet: cannot start the server: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    from .config import resolve
    from .ops.audit import AuditStore, format_records
    from .ops.recordings import find_recording, list_recordings, recordings_dir

    loaded = load_config(args.config)
    if loaded is None:
        return 2
    config, base = loaded
    path = resolve(base, config.data_dir) / "audit.sqlite3"
    if not path.exists():
        print(f"no audit log yet ({path})")
        return 0
    store = AuditStore(path)
    try:
        records = store.records(args.limit)
    finally:
        store.close()
    try:
        found = list_recordings(recordings_dir(config, base))
    except OSError as exc:  # e.g. the service user's 0700 folder, read by another user
        print(f"apuppet sessions: cannot read recordings_dir: {exc.strerror}", file=sys.stderr)
        found = []
    names = {r.id: rec.name for r in records if (rec := find_recording(found, r.room, r.started, r.ended))}
    print(format_records(records, names))  # escapes the clients' text (printable)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .agent.agent import Agent, AgentOptions
    from .agent.cli import Announcer, run_agent, video_settings
    from .agent.sources import create_source
    from .server import Server

    setup_logging(args.log_level)
    overrides: dict[str, Any] = {
        "bind": args.bind,
        "web_http_port": args.port,
        "api_http": False,
        "api_secret": secrets.token_urlsafe(16),
        "admin_secret": secrets.token_urlsafe(24),
    }
    if args.rtp_port_range:
        overrides["rtp_port_range"] = args.rtp_port_range
    try:
        video = video_settings(args)
        config = validate(overrides)
    except (ValueError, ConfigError) as exc:
        print(f"apuppet demo: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        server = Server(config)
        await server.start()
        try:
            agent = Agent(
                AgentOptions(
                    server_url=f"{server.url}web-admin/",
                    secret=config.api_secret,
                    name=args.name,
                    credential_style="apuppet" if args.apuppet_ids else "strong",
                    video=video,
                    max_size=args.max_size,
                ),
                create_source("demo"),
                # No API secret in the link: the page connects as a viewer session, which reaches this device with
                # its password only (the secret stays with agents).
                on_connected=Announcer(args.json, not args.no_qr, {"server": server.url}),
            )
            if not args.json:
                print(f"apuppet demo: server at {server.url} (Ctrl+C stops)", flush=True)
            await run_agent(agent)
        finally:
            with contextlib.suppress(Exception):
                await server.stop()

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"apuppet demo: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def register_demo(subparsers: Any, agent_cli: ModuleType) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="try it: a server and a virtual phone in one process, then open the printed URL",
        description="Start a server on the loopback interface (free ports unless told otherwise) and a demo agent "
        "with a virtual phone; print the web-admin URL with session and password filled in. Ctrl+C stops both.",
    )
    demo.add_argument("--bind", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    demo.add_argument("--port", type=int, default=0, help="HTTP port (default: a free one)")
    demo.add_argument("--rtp-port-range", default="", help="UDP ports for media, e.g. 10000-10500 (default: config)")
    demo.add_argument("--name", default="Demo phone", help="device name (default: %(default)s)")
    agent_cli.video_options(demo)
    agent_cli.common_options(demo)
    demo.set_defaults(func=cmd_demo)


def build_parser(other_commands: bool = True) -> argparse.ArgumentParser:
    """Every command; with `other_commands` False only the server's own (what `apuppet serve` parses: the agent's
    and the operator's commands would load modules the server never runs, ~1 MB of its memory)."""
    parser = argparse.ArgumentParser(
        prog="apuppet",
        description="Self-hosted remote control of Android devices: a Janus-compatible server, "
        "a web-admin and a device agent.",
    )
    parser.add_argument("--version", action="version", version=f"apuppet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the server (Janus API, streaming and textroom plugins, web-admin)",
        description="Run the server in the foreground until SIGINT/SIGTERM. SIGHUP reloads the TLS certificate. "
        "Empty secrets are generated on first start and kept in credentials_dir.",
    )
    add_config_option(serve)
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="override log_level")
    serve.add_argument(
        "--workers", type=int, default=0, metavar="N", help="run N nodes on this host (one per core; needs redis_url)"
    )
    serve.add_argument("--worker", help=argparse.SUPPRESS)  # i/N: a child of --workers
    serve.set_defaults(func=cmd_serve)

    sessions = sub.add_parser(
        "sessions",
        help="list the audit log of remote-control sessions",
        description="Remote-control sessions recorded by the server: device, viewer address, start, duration, "
        "its recording in recordings_dir (record_sessions), and how each ended (from <data_dir>/audit.sqlite3).",
    )
    add_config_option(sessions)
    sessions.add_argument("--limit", type=int, default=50, help="most recent N sessions (default: %(default)s)")
    sessions.set_defaults(func=cmd_sessions)

    for module_name in ("apuppet.agent.cli", "apuppet.ops.cli") if other_commands else ():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name not in (module_name, module_name.rsplit(".", 1)[0]):
                raise
            continue
        module.register(sub)
        if module_name == "apuppet.agent.cli":
            register_demo(sub, module)
    return parser


def without_pyav_unless_recording(serve_argv: list[str]) -> None:
    """`apuppet serve` runs aiortc on a PyAV stand-in (media/avstandin.py: 16 MB less) unless its configuration
    records sessions, which PyAV muxes. Before `build_parser`: the agent's commands it registers import aiortc."""
    peek = argparse.ArgumentParser(add_help=False)
    add_config_option(peek)
    try:
        config, _ = load(peek.parse_known_args(serve_argv)[0].config)
    except ConfigError:
        return  # `serve` tells the user
    if not config.record_sessions:
        avstandin.install()


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        without_pyav_unless_recording(argv[1:])
    parser = build_parser(other_commands=argv[:1] != ["serve"])
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
