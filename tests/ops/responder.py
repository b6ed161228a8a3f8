"""A STUN Binding responder on a real UDP socket for the doctor's tests. `mapped` makes it report a fixed
address, which is how a 1:1 NAT looks from inside (the server sees the NAT's public address, not ours)."""

from __future__ import annotations

import socket
import threading

from apuppet.ops import stun


class StunResponder:
    def __init__(self, host: str = "127.0.0.1", mapped: str | None = None, silent: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        host, port = self.sock.getsockname()[:2]
        self.url = f"stun:{host}:{port}"
        self.mapped = mapped
        self.silent = silent
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.requests += 1
            if self.silent:
                continue
            reply = stun.binding_response(data, (self.mapped or source[0], source[1]))
            if reply is not None:
                self.sock.sendto(reply, source)

    def __enter__(self) -> StunResponder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()
