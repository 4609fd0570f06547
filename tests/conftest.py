"""Shared fixtures: real SQLite files and, where reachable, a fresh PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from auditor.store import Store, open_store

PG_ADMIN_URL = os.environ.get(
    "AUDITOR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _pg_reason() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3):
            return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc.__class__.__name__}: {exc}"


_PG_SKIP = _pg_reason()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the local server, dropped afterwards."""
    if _PG_SKIP:
        pytest.skip(_PG_SKIP)
    import psycopg

    name = f"auditor_t_{uuid.uuid4().hex[:12]}"
    admin = PG_ADMIN_URL.replace("+psycopg", "")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'auditor.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once on a SQLite file and once on the local PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'auditor.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    st = open_store(sqlite_url, migrate=True)
    try:
        yield st
    finally:
        st.close()


@pytest.fixture
def any_store(db_url: str) -> Iterator[Store]:
    st = open_store(db_url, migrate=True)
    try:
        yield st
    finally:
        st.close()


@pytest.fixture
def server() -> Iterator[Any]:
    """The loopback OpenAI/Anthropic-speaking test server (``tests/probe/servers.py``)."""
    from probe.servers import FakeServer

    srv = FakeServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(autouse=True)
def _clean_auditor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own AUDITOR_* settings."""
    for key in list(os.environ):
        if key.startswith("AUDITOR_") and key != "AUDITOR_TEST_PG_URL":
            monkeypatch.delenv(key, raising=False)
