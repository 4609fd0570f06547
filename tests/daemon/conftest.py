"""Daemon tests: real ``auditor daemon``/``worker`` subprocesses against loopback servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from daemon.helpers import Proc
from probe.servers import FakeServer


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer(record=False).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Every process a test starts is killed at the end, whatever happened."""
    started: list[Proc] = []
    yield started
    for p in started:
        p.kill()
