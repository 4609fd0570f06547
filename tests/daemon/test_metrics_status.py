"""Metrics served as Prometheus text; ``auditor status`` read from the store."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx

from auditor.config import Settings
from auditor.daemon import heartbeat
from auditor.metrics import Metrics, serve
from auditor.status import collect
from auditor.store import Store, sync_endpoints
from auditor.store.models import (
    Attempt,
    CanaryVersion,
    Cycle,
    Heartbeat,
    MonitorState,
    Verdict,
    utcnow,
)

REPO = Path(__file__).resolve().parents[2]


def _settings(db: str = "sqlite:///:memory:") -> Settings:
    return Settings.model_validate({"database_url": db, "endpoints": [
        {"name": "prot", "provider": "http", "model": "p", "role": "protected",
         "base_url": "http://127.0.0.1:9/v1", "schedule": {"cron": "0 3 * * *"}},
        {"name": "sus", "provider": "http", "model": "s", "role": "suspect",
         "base_url": "http://127.0.0.1:9/v1", "schedule": {"interval": "6h"},
         "limits": {"daily_budget_usd": 5, "price_per_million_input_tokens": 1.0}}]})


def test_metrics_endpoint_serves_requests_latency_and_verdicts(store: Store) -> None:
    settings = _settings()
    with store.session() as s:
        rows = sync_endpoints(s, settings)
        s.add(MonitorState(suspect_id=rows["sus"].id, protected_id=rows["prot"].id, state={},
                           e_value=7.5))
        s.add(Verdict(suspect_id=rows["sus"].id, protected_id=rows["prot"].id, method="combined",
                      params={}, p_value=0.003, n_canaries=3, n_samples=9, canaries=[],
                      controls=[], contributions=[], channels={}, significant=True,
                      code_version="t"))
    metrics = Metrics("daemon")
    metrics.requests.labels(endpoint="sus", outcome="rate_limited").inc(2)
    metrics.latency.labels(endpoint="sus").observe(0.3)
    with store.session() as s:
        metrics.refresh_from_store(s)
    served = serve(metrics, _free_port())
    assert served is not None
    try:
        text = httpx.get(f"http://127.0.0.1:{served.port}/metrics").text
    finally:
        served.close()
    assert 'auditor_requests_total{endpoint="sus",outcome="rate_limited"} 2.0' in text
    assert 'auditor_request_latency_seconds_count{endpoint="sus"} 1.0' in text
    assert 'auditor_monitor_e_value{protected="prot",suspect="sus"} 7.5' in text
    assert ('auditor_last_verdict_p_value{method="combined",protected="prot",suspect="sus"} '
            '0.003') in text


def test_metrics_port_zero_serves_nothing() -> None:
    assert serve(Metrics(), 0) is None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cycle(store: Store, settings: Settings, statuses: list[tuple[str, str | None]]) -> int:
    with store.session() as s:
        rows = sync_endpoints(s, settings)
        cv = CanaryVersion(canary_id="c", version=1, kind="free_text", content={},
                           content_hash="h", salt="s", commitment="x")
        s.add(cv)
        cycle = Cycle(kind="probe", endpoint_id=rows["sus"].id, schedule_key="sus@k",
                      status="done", finished_at=utcnow())
        s.add(cycle)
        s.flush()
        for i, (status, cls) in enumerate(statuses):
            s.add(Attempt(cycle_id=cycle.id, endpoint_id=rows["sus"].id,
                          canary_version_id=cv.id, sample_index=i, status=status,
                          error_class=cls, finished_at=utcnow()))
        return cycle.id


def test_status_shows_last_cycle_outcome_failures_by_class_and_next_fire(store: Store) -> None:
    settings = _settings()
    cycle_id = _cycle(store, settings, [("ok", None), ("ok", None), ("failed", "timeout"),
                                        ("failed", "rate_limited"), ("failed", "timeout")])
    now = utcnow()
    with store.session() as s:
        status = collect(s, settings, now)
    sus = next(e for e in status.endpoints if e.name == "sus")
    assert sus.last_cycle_id == cycle_id and sus.last_cycle_status == "done"
    assert sus.last_cycle_outcome == {"ok": 2, "failed": 3, "skipped": 0, "pending": 0}
    assert sus.failures_last_day == {"timeout": 2, "rate_limited": 1}
    assert sus.next_fire is not None and now < sus.next_fire <= now + timedelta(hours=6)
    prot = next(e for e in status.endpoints if e.name == "prot")
    assert prot.last_cycle_id is None and prot.next_fire.hour == 3  # type: ignore[union-attr]


def test_status_tells_a_live_daemon_from_a_silent_one(store: Store) -> None:
    settings = _settings()
    live, dead = heartbeat.Beat("daemon", pid=1), heartbeat.Beat("daemon", pid=2)
    with store.session() as s:
        heartbeat.beat(s, live, {"heartbeat_seconds": 15})
        heartbeat.beat(s, dead, {"heartbeat_seconds": 15})
        s.flush()
        s.get(Heartbeat, dead.id).beat_at = utcnow() - timedelta(minutes=5)  # type: ignore[union-attr]
    with store.session() as s:
        status = collect(s, settings)
    by_pid = {p.pid: p for p in status.processes}
    assert by_pid[1].alive and not by_pid[2].alive and by_pid[2].status == "silent"
    assert status.daemon_alive


def test_status_command_prints_json(tmp_path: Path, sqlite_url: str, store: Store) -> None:
    settings = _settings(sqlite_url)
    _cycle(store, settings, [("ok", None)])
    cfg = tmp_path / "auditor.toml"
    cfg.write_text(f'database_url = "{sqlite_url}"\n' + "".join(
        f'[[endpoints]]\nname = "{e.name}"\nprovider = "http"\nmodel = "{e.model}"\n'
        f'role = "{e.role}"\nbase_url = "{e.base_url}"\n' for e in settings.endpoints))
    out = subprocess.run([sys.executable, "-m", "auditor", "--config", str(cfg), "status",
                          "--json"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {e["name"] for e in data["endpoints"]} == {"prot", "sus"}
    assert data["daemon_alive"] is False
