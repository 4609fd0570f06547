"""Several ``auditor worker`` processes share one cycle through PostgreSQL."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from daemon.helpers import Proc, canaries, start, wait_for, write_canaries, write_config
from probe.servers import FakeServer
from sqlalchemy import func, select

from auditor.config import load_settings
from auditor.registry import load_registry, sync_registry
from auditor.store import Store, ledger, open_store, sync_endpoints
from auditor.store import attempts as at
from auditor.store.models import Attempt, Response

pytestmark = pytest.mark.postgres


def _plan(cfg: Path, pg_url: str) -> tuple[Store, at.Planned]:
    """A migrated store with the config's endpoints and canaries, and one planned cycle."""
    settings = load_settings(cfg)
    store = open_store(pg_url, migrate=True)
    with store.session() as s:
        sync_registry(s, load_registry(settings.canaries_path))
        sync_endpoints(s, settings)
        planned = at.plan_cycle(s, settings.endpoints, schedule_key="ep0@test")
    return store, planned


def test_two_workers_one_killed_midway_run_every_attempt_exactly_once(
        tmp_path: Path, pg_url: str, procs: list[Proc]) -> None:
    server = FakeServer(delay=0.002, record=True).start()
    try:
        write_canaries(tmp_path / "canaries", canaries(40, samples=50))  # 2000 attempts
        cfg = write_config(tmp_path / "auditor.toml", pg_url, server.url, interval="24h",
                           limits={"concurrency": 16}, daemon={"lease_seconds": 30})
        store, planned = _plan(cfg, pg_url)
        try:
            assert planned.attempts == 2000

            def status() -> dict[str, int]:
                with store.session() as s:
                    rows = s.execute(select(Attempt.status, func.count())
                                     .group_by(Attempt.status)).tuples().all()
                return {k: int(v) for k, v in rows}

            a = start(tmp_path, "worker", cfg, "worker-a", "--poll", "0.5")
            b = start(tmp_path, "worker", cfg, "worker-b", "--poll", "0.5")
            procs += [a, b]
            wait_for(lambda: status().get("ok", 0) >= 400, 90, 0.05, "work under way", [a, b])

            def freeze_holding() -> int:
                """Freezes worker a at a moment it holds claims (under load it can be
                between batches); its claims then stay put while we count them."""
                a.signal(signal.SIGSTOP)
                with store.session() as s:
                    n = int(s.scalar(select(func.count()).where(
                        Attempt.status == "running",
                        Attempt.claimed_by.like(f"%:{a.popen.pid}:%"))) or 0)
                if not n:
                    a.signal(signal.SIGCONT)
                return n

            held = wait_for(freeze_holding, 60, 0.01, "worker a holding claims", [a, b])
            a.kill()  # SIGKILL: its claims are left "running", answers in memory are lost
            wait_for(lambda: status() == {"ok": 2000}, 120, 0.2, "every attempt done", [b])
            assert b.stop() == 0

            with store.session() as s:
                per_attempt = s.execute(select(Response.attempt_id, func.count())
                                        .group_by(Response.attempt_id)).tuples().all()
                tries = int(s.scalar(select(func.sum(Attempt.tries))) or 0)
                check = ledger.verify(s)
            assert len(per_attempt) == 2000 and all(n == 1 for _, n in per_attempt)
            assert check.ok, check.broken
            # Only attempts the killed worker held (sent, perhaps answered, not yet recorded)
            # were sent again; nothing else was sent twice.
            sent = len(server.requests("/v1/chat/completions"))
            assert held > 0
            assert tries == 2000 and sent <= tries + held
            assert any(r.get("msg") == "cycle finished" for r in b.lines())
        finally:
            store.close()
    finally:
        server.stop()


def test_the_process_that_completes_a_cycle_counts_and_analyses_it_once(
        tmp_path: Path, pg_url: str, procs: list[Proc]) -> None:
    """A cycle no running process planned, finished by two workers: one of them counts
    its attempts and runs the analysis (workers once never analysed)."""
    server = FakeServer(delay=0.01, record=False).start()
    try:
        write_canaries(tmp_path / "canaries", canaries(20, samples=5))  # 100 attempts
        cfg = write_config(tmp_path / "auditor.toml", pg_url, server.url, interval="24h",
                           limits={"concurrency": 4})
        store, planned = _plan(cfg, pg_url)
        try:
            workers = [start(tmp_path, "worker", cfg, f"worker-{i}", "--poll", "0.3")
                       for i in range(2)]
            procs += workers

            def analysed() -> list[Proc]:
                return [w for w in workers if w.messages("analysis done")]

            wait_for(analysed, 120, 0.1, "the analysis after the cycle", workers)
            for w in workers:
                assert w.stop() == 0
            completed = [(w, r) for w in workers
                         for r in w.messages("cycle completed here: counted and analysed")]
            assert [r["cycle"] for _, r in completed] == [planned.cycle_id]
            assert analysed() == [completed[0][0]]
            assert all(r.get("level") != "error" for w in workers for r in w.lines())
        finally:
            store.close()
    finally:
        server.stop()
