from __future__ import annotations

from collections.abc import Iterator

import pytest
from probe.servers import FakeServer


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer().start()
    try:
        yield srv
    finally:
        srv.stop()
