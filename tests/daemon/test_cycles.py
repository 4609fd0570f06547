"""Planning at a fire time: exactly one planner per schedule key, no overlapping cycles."""

from __future__ import annotations

import logging
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from daemon.helpers import canaries, write_canaries
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from auditor.config import Settings
from auditor.daemon.cycles import after_cycle, claimable_cycles, complete_orphans, plan_or_join
from auditor.metrics import Metrics
from auditor.registry import load_registry, sync_registry
from auditor.store import Store, open_store, sync_endpoints
from auditor.store.attempts import finish_cycle
from auditor.store.models import Alert, Attempt, Cycle, MonitorState, Verdict, utcnow


def _prepare(tmp_path: Path, store: Store) -> Settings:
    write_canaries(tmp_path / "canaries", canaries(3, samples=2))
    settings = Settings.model_validate({
        "canaries_dir": str(tmp_path / "canaries"),
        "endpoints": [{"name": "ep", "provider": "http", "model": "m", "role": "suspect",
                       "base_url": "http://127.0.0.1:9/v1"}]})
    with store.session() as s:
        sync_registry(s, load_registry(settings.canaries_path))
        sync_endpoints(s, settings)
    return settings


def test_second_firing_with_the_same_key_joins_the_planned_cycle(tmp_path: Path,
                                                                 any_store: Store) -> None:
    settings = _prepare(tmp_path, any_store)
    first = plan_or_join(any_store, settings.endpoints[0], "ep@2026-01-01T00:00:00Z")
    second = plan_or_join(any_store, settings.endpoints[0], "ep@2026-01-01T00:00:00Z")
    assert (first.action, first.attempts) == ("planned", 6)
    assert (second.action, second.cycle_id) == ("joined", first.cycle_id)


def test_next_firing_is_skipped_while_the_previous_cycle_is_unfinished(
        tmp_path: Path, store: Store) -> None:
    settings = _prepare(tmp_path, store)
    first = plan_or_join(store, settings.endpoints[0], "ep@1")
    skipped = plan_or_join(store, settings.endpoints[0], "ep@2")
    assert skipped.action == "skipped" and skipped.cycle_id == first.cycle_id
    with store.session() as s:
        s.execute(update(Attempt).values(status="ok"))
    assert plan_or_join(store, settings.endpoints[0], "ep@3").action == "planned"


def test_concurrent_planners_on_postgresql_plan_the_key_once(tmp_path: Path,
                                                            pg_url: str) -> None:
    store = open_store(pg_url, migrate=True)
    try:
        settings = _prepare(tmp_path, store)
        stores = [open_store(pg_url) for _ in range(6)]
        try:
            with ThreadPoolExecutor(6) as pool:
                decisions = list(pool.map(
                    lambda st: plan_or_join(st, settings.endpoints[0], "ep@same"), stores))
        finally:
            for st in stores:
                st.close()
        assert sorted(d.action for d in decisions) == ["joined"] * 5 + ["planned"]
        assert len({d.cycle_id for d in decisions}) == 1
        with store.session() as s:
            assert s.scalar(select(func.count()).select_from(Cycle)) == 1
            assert s.scalar(select(func.count()).select_from(Attempt)) == 6
    finally:
        store.close()


def test_a_planner_that_finds_the_key_planned_since_it_looked_joins_it(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The interleaving that made the concurrent-planners test flaky: another process
    commits the key's cycle between this planner's look for the key and its look for
    unfinished cycles (PostgreSQL's read committed shows the second look the new cycle)."""
    from auditor.daemon import cycles
    from auditor.store import attempts as at

    store = open_store(pg_url, migrate=True)
    try:
        settings = _prepare(tmp_path, store)
        real = at.unfinished_cycles

        def another_process_plans_first(session: Session, *a: object, **kw: object) -> list[int]:
            with store.session() as other:
                at.plan_cycle(other, [settings.endpoints[0]], schedule_key="ep@race")
            return real(session, *a, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(cycles.at, "unfinished_cycles", another_process_plans_first)
        decision = plan_or_join(store, settings.endpoints[0], "ep@race")
        assert decision.action == "joined"
    finally:
        store.close()


def test_claimable_work_excludes_attempts_under_a_live_lease(tmp_path: Path,
                                                             store: Store) -> None:
    settings = _prepare(tmp_path, store)
    planned = plan_or_join(store, settings.endpoints[0], "ep@1")
    assert list(claimable_cycles(store)) == [planned.cycle_id]
    with store.session() as s:
        s.execute(update(Attempt).values(status="running", claimed_by="otherhost:1:x",
                                         lease_until=utcnow() + timedelta(minutes=5)))
    assert claimable_cycles(store) == {}
    with store.session() as s:
        s.execute(update(Attempt).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert list(claimable_cycles(store)) == [planned.cycle_id]


def test_after_cycle_runs_the_analysis_hook_then_raises_the_alert(
        tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.model_validate({"endpoints": [
        {"name": n, "provider": "http", "model": n, "role": r, "base_url": "http://127.0.0.1:9/v1"}
        for n, r in (("prot", "protected"), ("sus", "suspect"))]})
    with store.session() as s:
        rows = sync_endpoints(s, settings)
    calls: list[Settings] = []

    def analyze_all(session: Session, given: Settings, problems: list[object],
                    changed_only: bool) -> list[object]:
        assert changed_only  # after a cycle, only the pairs with new evidence
        calls.append(given)
        session.add(MonitorState(suspect_id=rows["sus"].id, protected_id=rows["prot"].id,
                                 state={}, e_value=1e3))
        return []

    monkeypatch.setitem(sys.modules, "auditor.analysis",
                        types.SimpleNamespace(analyze_all=analyze_all))
    result = after_cycle(store, settings, None)
    assert calls == [settings] and result["analysis"] == "ok" and result["alerts"] == 1
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 1


def test_after_cycle_without_the_analysis_stage_still_checks_alerts(store: Store) -> None:
    settings = Settings.model_validate({})
    result = after_cycle(store, settings, None)
    assert result["analysis"] in ("missing", "ok") and result["alerts"] == 0


def test_concurrent_finishers_on_postgresql_complete_the_cycle_once(tmp_path: Path,
                                                                   pg_url: str) -> None:
    """Whoever records the last attempt, one process (exactly) counts and analyses it."""
    store = open_store(pg_url, migrate=True)
    try:
        settings = _prepare(tmp_path, store)
        planned = plan_or_join(store, settings.endpoints[0], "ep@done")
        with store.session() as s:
            s.execute(update(Attempt).values(status="ok"))
        stores = [open_store(pg_url) for _ in range(6)]

        def finish(st: Store) -> str | None:
            with st.session() as s:
                return finish_cycle(s, planned.cycle_id)

        try:
            with ThreadPoolExecutor(6) as pool:
                results = list(pool.map(finish, stores))
        finally:
            for st in stores:
                st.close()
        assert sorted(results, key=str) == ["completed"] + ["done"] * 5
    finally:
        store.close()


def test_a_cycle_left_with_nothing_to_do_is_completed_once(tmp_path: Path, store: Store) -> None:
    """The process that recorded the last attempt died before marking the cycle done."""
    settings = _prepare(tmp_path, store)
    planned = plan_or_join(store, settings.endpoints[0], "ep@orphan")
    assert complete_orphans(store) == []  # work is left: not an orphan
    with store.session() as s:
        s.execute(update(Attempt).values(status="ok"))
    assert complete_orphans(store) == [planned.cycle_id]
    assert complete_orphans(store) == []
    with store.session() as s:
        assert s.get(Cycle, planned.cycle_id).status == "done"


def test_a_failing_channel_is_logged_once_counted_and_the_other_channels_go_on(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """The embedding model cannot load: free text fails for every pair, choice goes on."""
    import random

    from tests.factories import fill, settings_with

    roles = {"p": "protected", "s": "suspect", "c0": "control", "c1": "control",
             "c2": "control"}
    rng = random.Random(4)
    answers = {name: {"ft-greeting": [f"hello {rng.random()}"],
                      "ch-colour": [rng.choice(["red", "blue", "green"]) for _ in range(10)],
                      "ch-coin": [rng.choice(["heads", "tails"]) for _ in range(10)]}
               for name in roles}
    fill(store, settings_with(roles), answers)
    settings = settings_with(roles, analysis={
        "representations": ["word", "embedding"],
        "embedding_model": str(Path(__file__).parent / "no-such-model")})
    metrics = Metrics()
    with caplog.at_level(logging.INFO, logger="auditor.daemon"):
        result = after_cycle(store, settings, metrics)
    assert result["analysis"] == "partial" and result["verdicts"] >= 1
    failed = [r for r in caplog.records if r.getMessage().startswith("analysis failed")]
    assert [(r.suspect, r.protected, r.channel) for r in failed] == [("s", "p", "free_text")]
    assert metrics.analysis_failures.labels("s", "p", "free_text")._value.get() == 1
    with store.session() as s:
        verdict = s.scalars(select(Verdict)).first()
    assert verdict is not None and "choice" in verdict.channels
    assert verdict.params["left_out"]["free_text"].startswith("failed: ")
