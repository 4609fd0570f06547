"""Database steps of the daemon, each one short transaction (run them in a thread).

- :func:`plan_or_join`: at a scheduled fire time, plan the endpoint's cycle under its
  deterministic ``schedule_key``, or join the cycle another process planned for it, or
  skip because the endpoint's previous cycle is not finished.
- :func:`claimable_cycles`: cycles that have work a worker may take now.
- :func:`after_cycle`: analysis (when ``auditor.analysis`` exists), alerts, metrics.
"""

from __future__ import annotations

__all__ = [
    "Decision",
    "after_cycle",
    "analysis_hook",
    "claimable_cycles",
    "complete_orphans",
    "observe_cycle",
    "plan_or_join",
]

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auditor import alerts
from auditor.config import Endpoint as EndpointConfig
from auditor.config import Settings
from auditor.metrics import Metrics
from auditor.store import Store
from auditor.store import attempts as at
from auditor.store.models import Attempt, Cycle, Endpoint, utcnow

log = logging.getLogger("auditor.daemon")


@dataclass(frozen=True)
class Decision:
    action: str  # planned | joined | skipped
    cycle_id: int | None
    attempts: int = 0
    reason: str | None = None


def _endpoint_id(session: Session, name: str) -> int | None:
    return session.scalar(select(Endpoint.id).where(Endpoint.name == name))


def _existing(session: Session, key: str) -> int | None:
    return session.scalar(select(Cycle.id).where(Cycle.schedule_key == key))


def plan_or_join(store: Store, endpoint: EndpointConfig, key: str) -> Decision:
    """Exactly one process plans the cycle ``key``; the others join it.

    The endpoint's previous cycle must be finished first: a firing that finds it still
    unfinished plans nothing (the unfinished one is resumed by whoever is free).
    """
    with store.session() as session:
        found = _existing(session, key)
        if found is not None:
            return Decision("joined", found)
        ep_id = _endpoint_id(session, endpoint.name)
        if ep_id is not None:
            busy = at.unfinished_cycles(session, [ep_id], kinds=("probe",))
            if busy:
                # the unfinished cycle may be this very key, planned by another process
                # since we looked: join it then, rather than skip it
                found = _existing(session, key)
                if found is not None:
                    return Decision("joined", found)
                return Decision("skipped", busy[-1], reason=f"previous cycle {busy[-1]} of "
                                f"{endpoint.name} is unfinished")
    try:
        with store.session() as session:
            planned = at.plan_cycle(session, [endpoint], schedule_key=key)
    except IntegrityError:  # another process inserted the same schedule_key first
        with store.session() as session:
            found = _existing(session, key)
        if found is None:
            raise
        return Decision("joined", found)
    return Decision("joined" if planned.existing else "planned", planned.cycle_id,
                    planned.attempts)


def claimable_cycles(store: Store, kinds: tuple[str, ...] = ("probe", "fingerprint")
                     ) -> dict[int, list[int]]:
    """Cycles with attempts that can be claimed now -> their endpoint ids.

    Claims of dead processes on this host are freed first (no lease wait); claims of
    other hosts become claimable when their lease runs out.
    """
    now = utcnow()
    with store.session() as session:
        at.reap_dead_claims(session)
        rows = session.execute(
            select(Attempt.cycle_id, Attempt.endpoint_id)
            .join(Cycle, Cycle.id == Attempt.cycle_id)
            .where(Cycle.kind.in_(list(kinds)),
                   or_(Attempt.status.in_(at.CLAIMABLE),
                       and_(Attempt.status == "running", Attempt.lease_until < now)))
            .distinct()).tuples().all()
    out: dict[int, list[int]] = {}
    for cycle_id, ep_id in rows:
        out.setdefault(cycle_id, []).append(ep_id)
    return out


def complete_orphans(store: Store, kinds: tuple[str, ...] = ("probe",)) -> list[int]:
    """Marks done the cycles with nothing left to do that no run marked done (the process
    that recorded their last attempt died first); returns those this call completed."""
    with store.session() as session:
        unfinished = select(Attempt.id).where(Attempt.cycle_id == Cycle.id,
                                              Attempt.status.in_(at.UNFINISHED))
        ids = list(session.scalars(select(Cycle.id).where(
            Cycle.kind.in_(list(kinds)), Cycle.status != "done", ~unfinished.exists())))
    completed = []
    for cycle_id in ids:
        with store.session() as session:
            if at.finish_cycle(session, cycle_id) == "completed":
                completed.append(cycle_id)
    return completed


def analysis_hook() -> Callable[..., Any] | None:
    """``auditor.analysis.analyze_all`` when that stage is installed, else None."""
    try:
        module = importlib.import_module("auditor.analysis")
    except ImportError as exc:
        if exc.name not in ("auditor.analysis",):
            raise
        return None
    return getattr(module, "analyze_all", None)


def observe_cycle(store: Store, metrics: Metrics, cycle_id: int) -> None:
    """Adds a finished cycle's attempts (outcomes and latencies) to this process's metrics."""
    with store.session() as session:
        names = dict(session.execute(select(Endpoint.id, Endpoint.name)).tuples().all())
        rows = session.execute(
            select(Attempt.endpoint_id, Attempt.status, Attempt.error_class, Attempt.latency_ms)
            .where(Attempt.cycle_id == cycle_id)).tuples()
        for ep_id, status, error_class, latency in rows:
            metrics.observe_attempt(names.get(ep_id, "?"), status, error_class, latency)


def _report_problems(problems: list[Any], metrics: Metrics | None) -> int:
    """One log line per channel or pair without a result; failures counted. -> failures."""
    failures = 0
    if metrics is not None:
        metrics.analysis_left_out.clear()
    for p in problems:
        fields = {"suspect": p.suspect, "protected": p.protected, "channel": p.channel,
                  "reason": p.reason}
        if p.failed:
            failures += 1
            log.error(f"analysis failed for {p.pair}; the other pairs and channels went on",
                      extra=fields)
            if metrics is not None:
                metrics.analysis_failures.labels(p.suspect, p.protected, p.channel).inc()
        else:
            log.warning(f"channel {p.channel} left out of the verdict of {p.pair}",
                        extra=fields)
            if metrics is not None:
                metrics.analysis_left_out.labels(p.suspect, p.protected, p.channel).set(1)
    return failures


def after_cycle(store: Store, settings: Settings, metrics: Metrics | None) -> dict[str, Any]:
    """Runs the analysis (if enabled and installed), then writes and delivers alerts.

    A failing analysis is logged and counted; the alerts are checked and delivered anyway.
    """
    out: dict[str, Any] = {"analysis": "off"}
    if settings.daemon.analyze_after_cycle:
        analyze = analysis_hook()
        if analyze is None:
            log.debug("analysis stage not installed; skipped")
            out["analysis"] = "missing"
        else:
            problems: list[Any] = []
            try:
                with store.session() as session:
                    verdicts = analyze(session, settings, problems=problems,
                                       changed_only=True)
            except Exception as exc:
                out["analysis"] = "failed"
                out["gaps"] = [{"pair": "*", "channel": "*", "failed": True,
                                "reason": f"{type(exc).__name__}: {exc}"[:300]}]
                log.error("analysis failed; tried again after the next cycle", extra={
                    "suspect": "*", "protected": "*",
                    "error": f"{type(exc).__name__}: {exc}"[:500]})
                if metrics is not None:
                    metrics.analysis_failures.labels("*", "*", "*").inc()
            else:
                failures = _report_problems(problems, metrics)
                out["analysis"] = "ok" if not failures else "partial"
                out["verdicts"] = len(verdicts or [])
                out["gaps"] = [{"pair": p.pair, "channel": p.channel, "failed": p.failed,
                                "reason": p.reason[:300]} for p in problems]
                if metrics is not None and not failures:
                    metrics.analysis_ok.set_to_current_time()
                log.info("analysis done", extra={"verdicts": out["verdicts"],
                                                 "left_out_or_failed": len(problems)})
    with store.session() as session:
        created = alerts.new_alerts(session, settings)
    with store.session() as session:
        alerts.deliver_pending(session, settings)
    out["alerts"] = len(created)
    if metrics is not None:
        metrics.alerts.inc(len(created))
        with store.session() as session:
            metrics.refresh_from_store(session)
    return out
