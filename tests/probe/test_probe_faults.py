"""Every injected fault ends as a recorded attempt with the right class; nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from probe.helpers import attempts, canary, endpoint, make_settings, run
from probe.servers import FakeServer
from sqlalchemy import func, select

from auditor.store import Store, ledger, open_store
from auditor.store.models import CanaryVersion, Response

FAULTS = [
    ("429", "rate_limited", 429), ("500", "server_error", 500), ("503", "server_error", 503),
    ("400", "client_error", 400), ("hang", "timeout", None), ("trickle", "timeout", None),
    ("reset", "connection", None), ("malformed", "bad_response", 200),
    ("truncated", "bad_response", 200),
]


@pytest.fixture
def store(sqlite_url: str) -> Store:
    st = open_store(sqlite_url, migrate=True)
    yield st
    st.close()


@pytest.mark.parametrize("provider", ["openai", "anthropic", "http"])
def test_each_fault_is_recorded_with_its_class_and_nothing_is_lost(
        tmp_path: Path, sqlite_url: str, server: FakeServer, store: Store, provider: str) -> None:
    server.retry_after = "0"
    cans = [canary(f"f-{name}", f"{provider} fault={name}") for name, _, _ in FAULTS]
    cans.append(canary("f-fine", f"{provider} fine", samples=3))
    s = make_settings(tmp_path, sqlite_url, [endpoint(
        "ep", provider, server.url, limits={"timeout_seconds": 0.6, "concurrency": 8})], cans)
    result = run(store, s)
    assert result.done
    rows = {a.id: a for a in attempts(store, result.cycle_id)}
    with store.session() as session:
        canary_of = dict(session.execute(
            select(Response.attempt_id, Response.canary_version_id)).tuples().all())
    with store.session() as session:
        names = dict(session.execute(
            select(CanaryVersion.id, CanaryVersion.canary_id)).tuples().all())
    got = {names[a.canary_version_id]: (a.status, a.error_class, a.http_status)
           for a in rows.values() if names[a.canary_version_id] != "f-fine"}
    assert got == {f"f-{n}": ("failed", cls, status) for n, cls, status in FAULTS}
    fine = [a for a in rows.values() if names[a.canary_version_id] == "f-fine"]
    assert [a.status for a in fine] == ["ok"] * 3
    assert set(canary_of) == {a.id for a in fine}
    assert all(a.finished_at is not None and a.latency_ms is not None for a in rows.values())


def test_failed_attempt_keeps_request_id_and_message(tmp_path: Path, sqlite_url: str,
                                                     server: FakeServer, store: Store) -> None:
    s = make_settings(tmp_path, sqlite_url, [endpoint("ep", "openai", server.url)],
                      [canary("f-500", "x fault=500")])
    (a,) = attempts(store, run(store, s).cycle_id)
    assert a.request_id and a.request_id.startswith("req_")
    assert a.error_message and "injected" in a.error_message


def test_transient_server_error_is_retried_then_recorded_once(
        tmp_path: Path, sqlite_url: str, server: FakeServer, store: Store) -> None:
    s = make_settings(tmp_path, sqlite_url,
                      [endpoint("ep", "openai", server.url, limits={"max_retries": 3})],
                      [canary("f-503", "x fault=503:2")])
    (a,) = attempts(store, run(store, s).cycle_id)
    assert (a.status, a.tries) == ("ok", 3)
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Response)) == 1


def test_client_error_is_not_retried(tmp_path: Path, sqlite_url: str, server: FakeServer,
                                     store: Store) -> None:
    s = make_settings(tmp_path, sqlite_url,
                      [endpoint("ep", "http", server.url, limits={"max_retries": 3})],
                      [canary("f-400", "x fault=400")])
    (a,) = attempts(store, run(store, s).cycle_id)
    assert (a.status, a.tries, a.error_class) == ("failed", 1, "client_error")
    assert len(server.requests()) == 1


def test_retries_are_bounded(tmp_path: Path, sqlite_url: str, server: FakeServer,
                             store: Store) -> None:
    s = make_settings(tmp_path, sqlite_url,
                      [endpoint("ep", "anthropic", server.url, limits={"max_retries": 2})],
                      [canary("f-500", "x fault=500")])
    (a,) = attempts(store, run(store, s).cycle_id)
    assert (a.status, a.tries) == ("failed", 3)
    assert len(server.requests()) == 3


def test_retry_waits_at_least_what_retry_after_asks(tmp_path: Path, sqlite_url: str,
                                                    server: FakeServer, store: Store) -> None:
    server.retry_after = "1"
    s = make_settings(tmp_path, sqlite_url,
                      [endpoint("ep", "openai", server.url, limits={"max_retries": 2})],
                      [canary("f-429", "x fault=429:1")])
    (a,) = attempts(store, run(store, s).cycle_id)
    assert (a.status, a.tries) == ("ok", 2)
    first, second = server.requests()
    assert second.at - first.at >= 0.95


def test_retry_after_pauses_the_whole_endpoint(tmp_path: Path, sqlite_url: str,
                                               server: FakeServer, store: Store) -> None:
    server.retry_after = "1"
    s = make_settings(tmp_path, sqlite_url,
                      [endpoint("ep", "openai", server.url,
                                limits={"max_retries": 1, "concurrency": 1})],
                      [canary("a-429", "x fault=429:1"), canary("b-fine", "y")])
    run(store, s)
    first, *rest = server.requests()
    assert rest and all(r.at - first.at >= 0.95 for r in rest)


def test_dead_endpoint_fails_its_attempts_not_the_run(tmp_path: Path, sqlite_url: str,
                                                      server: FakeServer, store: Store) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    s = make_settings(tmp_path, sqlite_url,
                      [endpoint("alive", "openai", server.url), endpoint("dead", "openai", dead)],
                      [canary("c-one", samples=2)])
    result = run(store, s)
    assert result.done
    assert result.summary["alive"]["ok"] == 2
    assert result.summary["dead"]["failed"] == {"connection": 2}


def test_ledger_verifies_after_a_cycle_with_faults(tmp_path: Path, sqlite_url: str,
                                                   server: FakeServer, store: Store) -> None:
    s = make_settings(tmp_path, sqlite_url, [endpoint("ep", "http", server.url)],
                      [canary("c-a", "x fault=500"), canary("c-b", "y", samples=5)])
    run(store, s)
    with store.session() as session:
        check = ledger.verify(session)
    assert check.ok and check.rows == 5
