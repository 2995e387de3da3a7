"""testsupport.ports: a port handed to a pod now and bound later stays its own."""

import socket
from pathlib import Path

import pytest
from testsupport.ports import lasting_port

pytestmark = pytest.mark.unit


def test_a_lasting_port_is_never_what_a_bind_to_port_0_gets() -> None:
    # A collector told to pick its own metrics port took a port the process kubelet had
    # handed a streamer and not bound yet: the streamer died with "address in use".
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    with socket.socket() as picked:
        picked.bind(("127.0.0.1", 0))
        assert picked.getsockname()[1] >= low  # the kernel's range, as the test assumes
    ports = {lasting_port() for _ in range(20)}
    assert all(port < low for port in ports)
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
