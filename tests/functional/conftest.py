"""Functional fixtures: a real `ferry-broker` process on a free loopback port.

`broker` yields a `BrokerProcess` (`.url`, `.data_dir`, `.kill()` = SIGKILL,
`.stop()` = SIGTERM, `.restart()` = start again on the same data dir and port).
`broker_factory(*flags)` starts more, with extra flags. Other parts' functional
tests reuse these fixtures; keep the names stable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from broker_process import BrokerProcess


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    b = BrokerProcess(tmp_path / "data", tmp_path / "broker.log")
    b.start()
    try:
        yield b
    finally:
        with contextlib.suppress(Exception):
            b.stop(timeout=10)
        b.kill()


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., BrokerProcess]]:
    """Start brokers with extra flags: `broker_factory("--token-file", path)`."""
    started: list[BrokerProcess] = []

    def make(*extra_args: str) -> BrokerProcess:
        n = len(started)
        b = BrokerProcess(tmp_path / f"data{n}", tmp_path / f"broker{n}.log", *extra_args)
        b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        with contextlib.suppress(Exception):
            b.stop(timeout=10)
        b.kill()
