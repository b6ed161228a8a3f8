"""A TCP load balancer for the cluster tests, as an operator puts in front of the nodes: each new connection goes
to the next backend in turn (round robin, no stickiness), a backend that refuses is skipped."""

from __future__ import annotations

import asyncio
import contextlib


class Balancer:
    def __init__(self, ports: list[int]) -> None:
        #: The backends' ports on 127.0.0.1; tests may change the list while it runs.
        self.ports = ports
        self.turn = 0
        self.server: asyncio.Server | None = None
        self.port = 0
        #: Connections handed to each backend port.
        self.counts: dict[int, int] = {}
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Balancer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.ports)):
            port = self.ports[self.turn % len(self.ports)]
            self.turn += 1
            try:
                streams = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.counts[port] = self.counts.get(port, 0) + 1
            return streams
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = await self._connect()
        if backend is None:
            writer.close()
            return
        up = asyncio.current_task()
        assert up is not None
        self._pipes.add(up)
        try:
            await asyncio.gather(_pipe(reader, backend[1]), _pipe(backend[0], writer))
        finally:
            self._pipes.discard(up)
            for w in (writer, backend[1]):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()
