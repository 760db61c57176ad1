"""A free TCP port on loopback, for the servers the tests start (a module without imports of the
service, so that pytest plugins can use it cheaply)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1 now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
