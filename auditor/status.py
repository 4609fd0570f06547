"""``auditor status``: what the daemon is doing, read from the store and the config.

Per endpoint: the last cycle and its outcome, the next fire time (the same everywhere:
schedules are deterministic), failures by class over the last day and the daily budget
used. Per daemon or worker process: its last heartbeat, and whether it is alive (a beat
within three heartbeat intervals). The channels the last analysis left out or failed
(``analysis_gaps``, from the latest heartbeat that reports them).
"""

from __future__ import annotations

__all__ = ["EndpointStatus", "ProcessStatus", "Status", "collect"]

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auditor.config import Settings
from auditor.daemon.schedule import trigger_for
from auditor.store.attempts import UNFINISHED
from auditor.store.models import Attempt, Cycle, Endpoint, Heartbeat, Response, utcnow


@dataclass
class EndpointStatus:
    name: str
    role: str
    enabled: bool
    schedule: str
    next_fire: datetime | None
    last_cycle_id: int | None = None
    last_cycle_key: str | None = None
    last_cycle_status: str | None = None
    last_cycle_planned_at: datetime | None = None
    last_cycle_finished_at: datetime | None = None
    last_cycle_outcome: dict[str, Any] = field(default_factory=dict)
    failures_last_day: dict[str, int] = field(default_factory=dict)
    spent_today_usd: float = 0.0
    daily_budget_usd: float | None = None


@dataclass
class ProcessStatus:
    id: str
    role: str
    host: str
    pid: int
    status: str
    started_at: datetime
    beat_at: datetime
    alive: bool
    info: dict[str, Any] | None


@dataclass
class Status:
    now: datetime
    endpoints: list[EndpointStatus]
    processes: list[ProcessStatus]
    analysis_gaps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def daemon_alive(self) -> bool:
        return any(p.alive and p.role == "daemon" for p in self.processes)

    def as_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, datetime):
                return v.isoformat()
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, list):
                return [clean(x) for x in v]
            return v

        out = clean(asdict(self))
        out["daemon_alive"] = self.daemon_alive
        return out


def _outcome(session: Session, cycle: Cycle, endpoint_id: int) -> dict[str, Any]:
    rows = session.execute(
        select(Attempt.status, func.count())
        .where(Attempt.cycle_id == cycle.id, Attempt.endpoint_id == endpoint_id)
        .group_by(Attempt.status)).tuples().all()
    counts = {status: int(n) for status, n in rows}
    pending = sum(counts.get(s, 0) for s in UNFINISHED)
    return {"ok": counts.get("ok", 0), "failed": counts.get("failed", 0),
            "skipped": counts.get("skipped", 0), "pending": pending}


def collect(session: Session, settings: Settings, now: datetime | None = None) -> Status:
    now = now or utcnow()
    rows = {e.name: e for e in session.scalars(select(Endpoint))}
    day_ago = now - timedelta(days=1)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    failures: dict[int, dict[str, int]] = {}
    for ep_id, cls, n in session.execute(
            select(Attempt.endpoint_id, Attempt.error_class, func.count())
            .where(Attempt.status == "failed", Attempt.finished_at >= day_ago)
            .group_by(Attempt.endpoint_id, Attempt.error_class)).tuples():
        failures.setdefault(ep_id, {})[cls or "unknown"] = int(n)
    tokens = {ep_id: (int(p or 0), int(c or 0)) for ep_id, p, c in session.execute(
        select(Response.endpoint_id, func.sum(Response.prompt_tokens),
               func.sum(Response.completion_tokens))
        .where(Response.collected_at >= midnight, Response.imported.is_(False))
        .group_by(Response.endpoint_id)).tuples()}
    endpoints = []
    for ep in settings.endpoints:
        sched = ep.schedule.cron or f"every {ep.schedule.interval}"
        if ep.schedule.jitter_seconds:
            sched += f" (+ up to {ep.schedule.jitter_seconds:g}s)"
        st = EndpointStatus(name=ep.name, role=ep.role, enabled=ep.enabled, schedule=sched,
                            next_fire=trigger_for(ep).next_fire(now) if ep.enabled else None,
                            daily_budget_usd=ep.limits.daily_budget_usd)
        row = rows.get(ep.name)
        if row is not None:
            # the newest cycle with attempts to this endpoint: its own scheduled one, or a
            # `probe --once` / `fingerprint` run that covered several endpoints
            # (newest cycles first; the slot index answers each exists() at once)
            cycle = session.scalars(
                select(Cycle).where(
                    Cycle.kind.in_(("probe", "fingerprint")),
                    select(Attempt.id).where(Attempt.cycle_id == Cycle.id,
                                             Attempt.endpoint_id == row.id).exists())
                .order_by(Cycle.id.desc()).limit(1)).first()
            if cycle is not None:
                st.last_cycle_id, st.last_cycle_key = cycle.id, cycle.schedule_key
                st.last_cycle_status = cycle.status
                st.last_cycle_planned_at = cycle.planned_at
                st.last_cycle_finished_at = cycle.finished_at
                st.last_cycle_outcome = _outcome(session, cycle, row.id)
            st.failures_last_day = failures.get(row.id, {})
            p, c = tokens.get(row.id, (0, 0))
            st.spent_today_usd = round((p * ep.limits.price_per_million_input_tokens
                                        + c * ep.limits.price_per_million_output_tokens) / 1e6, 6)
        endpoints.append(st)
    processes = []
    for hb in session.scalars(select(Heartbeat).order_by(Heartbeat.beat_at.desc())):
        every = float((hb.info or {}).get("heartbeat_seconds")
                      or settings.daemon.heartbeat_seconds)
        alive = hb.status == "running" and (now - hb.beat_at).total_seconds() <= 3 * every
        processes.append(ProcessStatus(
            id=hb.id, role=hb.role, host=hb.host, pid=hb.pid,
            status=hb.status if alive or hb.status != "running" else "silent",
            started_at=hb.started_at, beat_at=hb.beat_at, alive=alive, info=hb.info))
    gaps: list[dict[str, Any]] = next(((p.info or {})["analysis_gaps"] for p in processes
                 if "analysis_gaps" in (p.info or {})), [])
    return Status(now, endpoints, processes, gaps)
