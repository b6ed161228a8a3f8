"""apuppet nodes as child processes (`python -m apuppet serve`), for the tests that kill one with SIGKILL or run
`--workers`. conftest.py builds on this module (its `cluster` fixture starts these too), so this one takes
nothing from conftest: the admin secret every node of these tests shares lives here."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from ..agent.conftest import SECRET

ADMIN = "adm-" + SECRET


def write_config(folder: Path, redis_url: str, port: int, rtp: tuple[int, int], **extra: Any) -> Path:
    path = folder / "config.yaml"
    config = {
        "bind": "127.0.0.1",
        "web_http_port": port,
        "api_http": False,
        "api_secret": SECRET,
        "admin_secret": ADMIN,
        "redis_url": redis_url,
        "rtp_port_range": f"{rtp[0]}-{rtp[1]}",
        "credentials_dir": str(folder / "credentials"),
        "data_dir": str(folder / "data"),
        "log_level": "warning",
        **extra,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


async def serve(config: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "apuppet",
        "serve",
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def wait_http(port: int, timeout: float = 30.0) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(timeout):
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{port}/janus/info") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


async def stop(process: asyncio.subprocess.Process, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
    return (await stop_and_read(process, sig, timeout))[0]


async def stop_and_read(
    process: asyncio.subprocess.Process, sig: int = signal.SIGTERM, timeout: float = 20.0
) -> tuple[int, str]:
    """Stop the process; its exit status and what it wrote to stderr."""
    if process.returncode is None:
        process.send_signal(sig)
    try:
        async with asyncio.timeout(timeout):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
    err = (await process.stderr.read()).decode(errors="replace") if process.stderr is not None else ""
    return (process.returncode if process.returncode is not None else -1), err


@dataclass
class ChildNode:
    """A node in a child process on its own web port. `restart` starts it again from the same config (its name,
    its port), as `--workers` does with a dead worker; the process it replaces must be gone by then."""

    config: Path
    port: int
    process: asyncio.subprocess.Process
    replaced: list[asyncio.subprocess.Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def restart(self) -> None:
        self.replaced.append(self.process)
        self.process = await serve(self.config)
        await wait_http(self.port)

    async def close(self) -> None:
        """After the test: what it left running is stopped (SIGTERM, then SIGKILL); what it killed is reaped."""
        for process in self.replaced:
            await stop(process, signal.SIGKILL)
        await stop(self.process)
