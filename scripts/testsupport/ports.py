"""Free loopback ports."""

from __future__ import annotations

import random
import socket
from pathlib import Path

# Where the kernel picks a port for a bind to port 0 (Linux's default if unreadable).
_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the kernel's pick for a bind to port 0)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def lasting_port(host: str = "127.0.0.1") -> int:
    """A free port below the kernel's ephemeral range, for a port handed out now and bound
    later, or bound again by a restarted server: unlike `free_port`'s, neither a server
    told to pick its own (port 0) nor a client's outgoing connection can be given it in
    between."""
    low = int(_RANGE.read_text().split()[0]) if _RANGE.exists() else 32768
    while True:
        port = random.randrange(10000, low)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
