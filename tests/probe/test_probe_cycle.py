"""Planning, claiming, resuming, budgets and stops: each attempt completes exactly once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from probe.helpers import FAST, attempts, canary, endpoint, make_settings, run
from probe.servers import FakeServer
from sqlalchemy import func, select, update

from auditor.probe import RunOptions, prepare, resume_sync, run_cycle_sync
from auditor.store import Store, ledger, open_store
from auditor.store import attempts as at
from auditor.store.models import Attempt, Cycle, Response, utcnow


@pytest.fixture
def store(db_url: str) -> Store:
    st = open_store(db_url, migrate=True)
    yield st
    st.close()


def _settings(tmp_path: Path, store: Store, server: FakeServer, **kw: object):
    url = store.engine.url.render_as_string(hide_password=False)
    eps = kw.pop("endpoints", None) or [endpoint("ep", "openai", server.url)]
    cans = kw.pop("canaries", None) or [canary("c-one", samples=3), canary("c-two", "b",
                                                                           samples=2)]
    return make_settings(tmp_path, url, eps, cans, **kw)


def _responses(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(Response)) or 0)


def test_plan_writes_one_attempt_per_endpoint_canary_and_sample_before_sending(
        tmp_path: Path, store: Store, server: FakeServer) -> None:
    s = _settings(tmp_path, store, server, endpoints=[
        endpoint("a", "openai", server.url), endpoint("b", "http", server.url)])
    planned = prepare(store, s)
    rows = attempts(store, planned.cycle_id)
    assert planned.attempts == len(rows) == 2 * (3 + 2)
    assert {a.status for a in rows} == {"planned"}
    assert len({(a.endpoint_id, a.canary_version_id, a.sample_index) for a in rows}) == 10
    assert server.requests() == []


def test_logprob_canaries_go_only_to_endpoints_returning_logprobs(
        tmp_path: Path, store: Store, server: FakeServer) -> None:
    s = _settings(tmp_path, store, server, endpoints=[
        endpoint("plain", "openai", server.url), endpoint("lp", "openai", server.url,
                                                          logprobs=True)],
        canaries=[canary("lp-one", "Once upon a", kind="logprob")])
    result = run(store, s)
    assert set(result.summary) == {"lp"}
    with store.session() as session:
        (lp,) = session.scalars(select(Response.logprobs))
    assert lp and lp[0]["top_logprobs"]


def test_schedule_key_plans_a_cycle_only_once(tmp_path: Path, store: Store,
                                              server: FakeServer) -> None:
    s = _settings(tmp_path, store, server)
    first = prepare(store, s, schedule_key="ep@2026-11-01T03:00")
    again = prepare(store, s, schedule_key="ep@2026-11-01T03:00")
    assert again.cycle_id == first.cycle_id and again.existing
    assert len(attempts(store)) == 5


def test_unknown_canary_id_is_a_user_error(tmp_path: Path, store: Store,
                                           server: FakeServer) -> None:
    from auditor.errors import AuditorError

    with pytest.raises(AuditorError, match="c-nope"):
        prepare(store, _settings(tmp_path, store, server), canaries=["c-nope"])


def test_cycle_completes_records_each_attempt_once_and_is_marked_done(
        tmp_path: Path, store: Store, server: FakeServer) -> None:
    s = _settings(tmp_path, store, server)
    result = run(store, s)
    assert result.done and result.recorded == 5
    with store.session() as session:
        cycle = session.get(Cycle, result.cycle_id)
        assert cycle is not None and cycle.status == "done" and cycle.summary
        assert session.scalar(select(func.count(func.distinct(Response.attempt_id)))) == 5
        assert ledger.verify(session).ok
    assert all(a.status == "ok" and a.claimed_by is None for a in attempts(store))


def test_completed_cycle_is_never_sent_again(tmp_path: Path, store: Store,
                                             server: FakeServer) -> None:
    s = _settings(tmp_path, store, server)
    result = run(store, s)
    server.reset()
    again = run_cycle_sync(store, s, result.cycle_id, options=RunOptions(backoff=FAST))
    assert again.recorded == 0 and server.requests() == []
    assert _responses(store) == 5


def test_claims_of_a_dead_process_on_this_host_are_resumed_at_once(
        tmp_path: Path, store: Store, server: FakeServer) -> None:
    s = _settings(tmp_path, store, server)
    planned = prepare(store, s)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    import socket

    ghost = f"{socket.gethostname()}:{dead}:deadbeef"
    with store.session() as session:
        ep_id = session.scalar(select(Attempt.endpoint_id).limit(1))
        got = at.claim(session, planned.cycle_id, ep_id, ghost, limit=3, lease_seconds=3600)
    assert len(got) == 3
    (result,) = resume_sync(store, s, options=RunOptions(backoff=FAST))
    assert result.done
    assert [a.status for a in attempts(store)] == ["ok"] * 5
    assert _responses(store) == 5


def test_claims_of_another_host_wait_for_their_lease(tmp_path: Path, store: Store,
                                                     server: FakeServer) -> None:
    s = _settings(tmp_path, store, server)
    planned = prepare(store, s)
    with store.session() as session:
        ep_id = session.scalar(select(Attempt.endpoint_id).limit(1))
        at.claim(session, planned.cycle_id, ep_id, "elsewhere:1:x", limit=2, lease_seconds=3600)
    first = run_cycle_sync(store, s, planned.cycle_id, options=RunOptions(backoff=FAST))
    assert not first.done and first.recorded == 3
    with store.session() as session:  # the other host's lease runs out
        session.execute(update(Attempt).where(Attempt.claimed_by == "elsewhere:1:x")
                        .values(lease_until=utcnow() - timedelta(seconds=1)))
    second = run_cycle_sync(store, s, planned.cycle_id, options=RunOptions(backoff=FAST))
    assert second.done and second.recorded == 2
    assert _responses(store) == 5


def test_two_claimers_never_get_the_same_attempt(tmp_path: Path, store: Store,
                                                 server: FakeServer) -> None:
    s = _settings(tmp_path, store, server, canaries=[canary("c-many", samples=50)])
    planned = prepare(store, s)
    with store.session() as session:
        ep_id = session.scalar(select(Attempt.endpoint_id).limit(1))
    seen: list[int] = []
    with store.sessions() as one, store.sessions() as two:
        with one.begin():
            a = at.claim(one, planned.cycle_id, ep_id, "w1", limit=30, lease_seconds=60)
            if store.engine.dialect.name == "postgresql":  # both open at once: SKIP LOCKED
                with two.begin():
                    b = at.claim(two, planned.cycle_id, ep_id, "w2", limit=30, lease_seconds=60)
        if store.engine.dialect.name != "postgresql":
            with two.begin():
                b = at.claim(two, planned.cycle_id, ep_id, "w2", limit=30, lease_seconds=60)
    seen = [c.id for c in a] + [c.id for c in b]
    assert len(seen) == len(set(seen)) == 50


def test_outcome_of_a_lost_claim_is_not_stored(tmp_path: Path, store: Store,
                                               server: FakeServer) -> None:
    s = _settings(tmp_path, store, server, canaries=[canary("c-one")])
    planned = prepare(store, s)
    with store.session() as session:
        ep_id = session.scalar(select(Attempt.endpoint_id).limit(1))
        (c,) = at.claim(session, planned.cycle_id, ep_id, "w1", limit=5, lease_seconds=60)
        session.execute(update(Attempt).values(claimed_by="w2"))  # taken over
    outcome = at.Outcome(attempt_id=c.id, endpoint_id=ep_id,
                         canary_version_id=c.canary_version_id, sample_index=0,
                         status="failed", tries=1, error_class="timeout")
    with store.session() as session:
        assert at.record(session, "w1", [outcome]) == 0
    (a,) = attempts(store)
    assert (a.status, a.claimed_by) == ("running", "w2")


def test_budget_stops_the_endpoint_cleanly_and_is_never_exceeded(
        tmp_path: Path, store: Store, server: FakeServer) -> None:
    ep = endpoint("ep", "openai", server.url, limits={
        "daily_budget_usd": 0.0001, "price_per_million_input_tokens": 1.0,
        "price_per_million_output_tokens": 1.0, "concurrency": 2},
        decoding={"max_tokens": 10})
    s = _settings(tmp_path, store, server, endpoints=[ep],
                  canaries=[canary("c-many", "one two three", samples=20)])
    result = run(store, s)
    summary = result.summary["ep"]
    assert result.done
    assert summary["skipped"].get("budget", 0) > 0
    assert summary["ok"] + summary["skipped"]["budget"] == 20
    assert summary["cost_usd"] <= 0.0001
    # a second cycle on the same day sends nothing: today's spend is counted from the store
    server.reset()
    again = run(store, s)
    assert again.summary["ep"]["ok"] == 0 and server.requests() == []


def test_stop_leaves_unsent_attempts_to_resume(tmp_path: Path, store: Store,
                                               server: FakeServer) -> None:
    server.delay = 0.05
    s = _settings(tmp_path, store, server, endpoints=[
        endpoint("ep", "openai", server.url, limits={"concurrency": 2})],
        canaries=[canary("c-many", samples=40)])
    planned = prepare(store, s)

    async def stopped_run() -> None:
        stop = asyncio.Event()
        from auditor.probe import run_cycle

        seen = 0

        def progress(n: int) -> None:
            nonlocal seen
            seen += n
            if seen >= 4:
                stop.set()

        await run_cycle(store, s, planned.cycle_id,
                        options=RunOptions(stop=stop, on_progress=progress, backoff=FAST,
                                           record_interval=0.0))

    asyncio.run(stopped_run())
    statuses = [a.status for a in attempts(store)]
    assert "running" not in statuses and 4 <= statuses.count("ok") < 40
    (result,) = resume_sync(store, s, options=RunOptions(backoff=FAST))
    assert result.done
    assert _responses(store) == 40
    with store.session() as session:
        assert ledger.verify(session).ok


def test_attempts_of_an_endpoint_removed_from_config_are_skipped(
        tmp_path: Path, store: Store, server: FakeServer) -> None:
    s = _settings(tmp_path, store, server)
    planned = prepare(store, s)
    gone = s.model_copy(update={"endpoints": []})
    result = run_cycle_sync(store, gone, planned.cycle_id, options=RunOptions(backoff=FAST))
    assert result.done
    assert {(a.status, a.error_class) for a in attempts(store)} == {("skipped", "config")}


def test_api_key_is_never_stored(tmp_path: Path, store: Store, server: FakeServer,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PROBE_KEY", "sk-very-secret-4242")
    s = _settings(tmp_path, store, server, endpoints=[
        endpoint("ep", "openai", server.url, api_key_env="TEST_PROBE_KEY")],
        canaries=[canary("c-one"), canary("c-bad", "x fault=400")])
    run(store, s)
    with store.session() as session:
        dump = repr([tuple(r) for r in session.execute(select(Attempt.__table__))])
        dump += repr([tuple(r) for r in session.execute(select(Response.__table__))])
    assert "sk-very-secret-4242" not in dump
