"""`apuppet serve` as a child process, as a user starts it: for what only a fresh process shows (which libraries it
maps, what it imported, how it starts or refuses to)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from .agent.conftest import SECRET
from .media.test_ice import free_range
from .ports import free_port

# `python -m apuppet` after `preamble` (Python run first, in the same process).
MAIN = "import sys\n{preamble}\nfrom apuppet.cli import main\nsys.argv[0] = 'apuppet'\nsys.exit(main(sys.argv[1:]))\n"


class Served:
    def __init__(self, process: asyncio.subprocess.Process, url: str, log: list[str]) -> None:
        self.process = process
        self.url = url
        self.log = log

    def maps(self, library: str) -> bool:
        """Whether the process maps a file whose path contains `library` (e.g. "libavcodec")."""
        return library in Path(f"/proc/{self.process.pid}/maps").read_text()

    def maps_pyav(self) -> bool:
        return self.maps("libavcodec")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def write_config(tmp_path: Path, extra: dict[str, Any] | None = None) -> tuple[Path, int]:
    low, high = free_range(20)
    port = free_port()
    config = {
        "bind": "127.0.0.1",
        "web_http_port": port,
        "api_http": False,
        "rtp_port_range": f"{low}-{high}",
        "api_secret": SECRET,
        "admin_secret": f"adm-{SECRET}",
        "is_certbot_enabled": False,
        "use_ipv6": False,
        "credentials_dir": str(tmp_path / "credentials"),
        "data_dir": str(tmp_path / "data"),
        **(extra or {}),
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path, port


async def start(
    tmp_path: Path, extra: dict[str, Any] | None = None, preamble: str = ""
) -> tuple[asyncio.subprocess.Process, int]:
    """The process and its web port, not waited for: for a server expected to refuse to start."""
    config, port = write_config(tmp_path, extra)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        MAIN.format(preamble=preamble),
        "serve",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
    )
    return process, port


async def stop(made: list[Served]) -> None:
    for served in made:
        if served.process.returncode is None:
            served.process.terminate()
            try:
                async with asyncio.timeout(20):
                    await served.process.communicate()
            except TimeoutError:
                served.process.kill()
                await served.process.wait()


async def serve(tmp_path: Path, extra: dict[str, Any] | None = None, preamble: str = "") -> Served:
    """A server that says it is ready; `extra` adds config.yaml keys."""
    process, port = await start(tmp_path, extra, preamble)
    assert process.stderr is not None
    log: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not any(" ready: " in line for line in log):
                line = (await process.stderr.readline()).decode()
                assert line, "".join(log)
                log.append(line)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    return Served(process, f"http://127.0.0.1:{port}/", log)
