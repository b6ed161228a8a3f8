"""What every `apuppet` command's process shares: terminal-safe text, logging to stderr, `--config` loading and
running until a signal. One copy, so that `serve`, `agent`, `demo` and the operator commands escape client text,
report a bad config and stop on Ctrl+C the same way."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import unicodedata
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from .config import Config, ConfigError, load

log = logging.getLogger("apuppet")

T = TypeVar("T")

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


async def run_until_signal(
    main: Awaitable[T], stop: Callable[[], object], reload: Callable[[], object] | None = None
) -> T:
    """Await `main`; SIGINT/SIGTERM call `stop`, which must make `main` end on its own terms (a server closes its
    sessions, an agent says goodbye to its server) rather than be cancelled mid-way; SIGHUP calls `reload`."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        return await main
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)


async def serve_until_signal(
    start: Callable[[], Awaitable[object]],
    stop: Callable[[], Awaitable[object]],
    reload: Callable[[], object] | None = None,
) -> None:
    """Run a service that has no end of its own (the server) from `start()` until SIGINT/SIGTERM, then `stop()`."""
    stopping = asyncio.Event()

    async def main() -> None:
        await start()
        try:
            await stopping.wait()
        finally:
            log.info("stopping")
            await stop()

    await run_until_signal(main(), stopping.set, reload)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default="config.yaml", help="path of config.yaml (default: %(default)s)")


def load_config(path: str) -> tuple[Config, Path] | None:
    """The validated config and its folder, or None after telling the user what is wrong (exit status 2)."""
    try:
        return load(path)
    except ConfigError as exc:
        print(f"apuppet: configuration error in {path}:\n{exc}", file=sys.stderr)
        return None
