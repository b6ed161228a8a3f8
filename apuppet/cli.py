"""The `apuppet` command: serve, agent, demo, doctor, sessions."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .config import Config, ConfigError, ensure_secrets, load

log = logging.getLogger("apuppet")


#: Characters a terminal acts on instead of showing: C0/C1 controls and DEL (Cc), invisible format characters such
#: as the bidirectional overrides (Cf), and the Unicode line and paragraph separators (Zl, Zp).
_HIDDEN = {"Cc", "Cf", "Zl", "Zp"}


def printable(text: object) -> str:
    """`text` safe to print on an operator's terminal: usernames, display names, addresses and reasons come from
    clients, and a raw ESC or newline in one would clear the screen, recolour it or forge a row. Such characters
    (and the backslash, so that an escape cannot be faked either) are shown as Python-style escapes."""
    out = []
    for ch in str(text):
        if ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in _HIDDEN:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


class PrintableFormatter(logging.Formatter):
    """Escapes the message part of each log line (which may quote client input); tracebacks keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter(LOG_FORMAT))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    # aiortc/aioice are chatty at INFO about every ICE pair; keep operators' logs readable.
    for noisy in ("aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


async def run_until_signal(start, stop, reload=None) -> None:  # type: ignore[no-untyped-def]
    """Run a service until SIGINT/SIGTERM; SIGHUP calls `reload` (TLS certificates)."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
    await start()
    try:
        await done.wait()
    finally:
        log.info("stopping")
        await stop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default="config.yaml", help="path of config.yaml (default: %(default)s)")


def load_config(path: str) -> tuple[Config, Path] | None:
    """The validated config and its folder, or None after telling the user what is wrong (exit status 2)."""
    try:
        return load(path)
    except ConfigError as exc:
        print(f"apuppet: configuration error in {path}:\n{exc}", file=sys.stderr)
        return None


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import Server

    loaded = load_config(args.config)
    if loaded is None:
        return 2
    config = ensure_secrets(*loaded)
    base = loaded[1]
    setup_logging(args.log_level or config.log_level)
    server = Server(config, base_dir=base)

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
        asyncio.run(run_until_signal(start, server.stop, reload))
    except OSError as exc:
        print(f"apuppet: cannot start the server: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    from .config import resolve
    from .ops.audit import AuditStore, format_records

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
        print(format_records(store.records(args.limit)))  # escapes the clients' text (printable)
    finally:
        store.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    serve.set_defaults(func=cmd_serve)

    sessions = sub.add_parser(
        "sessions",
        help="list the audit log of remote-control sessions",
        description="Remote-control sessions recorded by the server: device, viewer address, start, duration, "
        "and how each ended (from <data_dir>/audit.sqlite3).",
    )
    add_config_option(sessions)
    sessions.add_argument("--limit", type=int, default=50, help="most recent N sessions (default: %(default)s)")
    sessions.set_defaults(func=cmd_sessions)

    for module_name in ("apuppet.agent.cli", "apuppet.ops.cli"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name not in (module_name, module_name.rsplit(".", 1)[0]):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
