"""The aiohttp side of the server: the application and its listeners (`app`), the Janus REST and WebSocket
transports that feed the sans-I/O core in `apuppet.api`, the per-address connection guard and `/metrics`."""

from .app import Server

__all__ = ["Server"]
