import socket


def free_port() -> int:
    """A TCP port free on loopback right now (for servers started in child processes)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
