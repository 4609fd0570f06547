"""What the portal reads: cases from STORED verdicts (never re-running the analysis).

A case is one (suspect, protected) pair. Everything here is a query; nothing writes
except the custody log and report jobs elsewhere.
"""

from __future__ import annotations

__all__ = ["CaseRow", "case_detail", "case_rows", "sparkline"]

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auditor.store.models import (
    Alert,
    CustodyEntry,
    Cycle,
    Endpoint,
    MonitorState,
    Report,
    ReportJob,
    Verdict,
)

TREND_POINTS = 20
SORTS = ("suspect", "protected", "p", "q", "effect", "e", "alert", "probe", "analysis")


@dataclass
class CaseRow:
    suspect: str
    protected: str
    verdict_id: int
    significant: bool
    p_value: float
    q_value: float | None
    effect: float | None
    effect_low: float | None
    effect_high: float | None
    e_value: float | None
    alarm_level: float
    alert_at: datetime | None
    last_probe: datetime | None
    last_analysis: datetime
    trend: list[float] = field(default_factory=list)  # -log10 p, oldest first

    @property
    def key(self) -> str:
        return f"{self.suspect}/{self.protected}"


def _neglog(p: float | None) -> float:
    return -math.log10(max(p, 1e-300)) if p is not None and math.isfinite(p) else 0.0


def case_rows(session: Session, alpha: float, *, query: str = "", sort: str = "analysis",
              descending: bool = True, only_alerts: bool = False,
              only_significant: bool = False) -> list[CaseRow]:
    """One row per (suspect, protected) pair with a stored verdict."""
    names = dict(session.execute(select(Endpoint.id, Endpoint.name)).tuples().all())
    latest_ids = (select(func.max(Verdict.id)).where(Verdict.segment.is_(None))
                  .group_by(Verdict.suspect_id, Verdict.protected_id).scalar_subquery())
    # only the columns the row shows: the JSON columns (contributions) stay in the database
    latest = session.execute(select(
        Verdict.id, Verdict.suspect_id, Verdict.protected_id, Verdict.significant,
        Verdict.p_value, Verdict.q_value, Verdict.effect, Verdict.effect_low,
        Verdict.effect_high, Verdict.e_value, Verdict.created_at,
    ).where(Verdict.id.in_(latest_ids))).all()
    monitors = {(m.suspect_id, m.protected_id): m.e_value
                for m in session.scalars(select(MonitorState))}
    alerts: dict[tuple[int, int], datetime] = {}
    for s_id, p_id, at in session.execute(
            select(Alert.suspect_id, Alert.protected_id, func.max(Alert.created_at))
            .group_by(Alert.suspect_id, Alert.protected_id)).tuples():
        alerts[(s_id, p_id)] = at
    probes = dict(session.execute(
        select(Cycle.endpoint_id, func.max(Cycle.finished_at))
        .where(Cycle.endpoint_id.is_not(None)).group_by(Cycle.endpoint_id)).tuples().all())
    trend: dict[tuple[int, int], list[float]] = {}
    for s_id, p_id, p in session.execute(
            select(Verdict.suspect_id, Verdict.protected_id, Verdict.p_value)
            .where(Verdict.segment.is_(None))
            .order_by(Verdict.created_at, Verdict.id)).tuples():
        trend.setdefault((s_id, p_id), []).append(_neglog(p))
    rows = []
    needle = query.strip().lower()
    for v in latest:
        pair = (v.suspect_id, v.protected_id)
        row = CaseRow(
            suspect=names.get(v.suspect_id, "?"), protected=names.get(v.protected_id, "?"),
            verdict_id=v.id, significant=bool(v.significant), p_value=v.p_value,
            q_value=v.q_value, effect=v.effect, effect_low=v.effect_low,
            effect_high=v.effect_high,
            e_value=monitors.get(pair, v.e_value), alarm_level=1.0 / alpha,
            alert_at=alerts.get(pair), last_probe=probes.get(v.suspect_id),
            last_analysis=v.created_at, trend=trend.get(pair, [])[-TREND_POINTS:])
        if needle and needle not in row.suspect.lower() and needle not in row.protected.lower():
            continue
        if only_alerts and row.alert_at is None:
            continue
        if only_significant and not row.significant:
            continue
        rows.append(row)
    rows.sort(key=_sort_key(sort), reverse=descending)
    return rows


def _sort_key(sort: str) -> Any:
    def t(x: datetime | None) -> float:
        return x.timestamp() if x is not None else -math.inf

    keys = {
        "suspect": lambda r: (r.suspect, r.protected),
        "protected": lambda r: (r.protected, r.suspect),
        "p": lambda r: r.p_value,
        "q": lambda r: r.q_value if r.q_value is not None else 2.0,
        "effect": lambda r: r.effect if r.effect is not None else -math.inf,
        "e": lambda r: r.e_value if r.e_value is not None else -math.inf,
        "alert": lambda r: t(r.alert_at),
        "probe": lambda r: t(r.last_probe),
        "analysis": lambda r: t(r.last_analysis),
    }
    return keys.get(sort, keys["analysis"])


def sparkline(values: list[float], width: int = 96, height: int = 24) -> str:
    """SVG points of a small trend line (higher = stronger evidence); '' when too short."""
    if len(values) < 2:
        return ""
    top = max(max(values), 1e-9)
    step = width / (len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}"
                    for i, v in enumerate(values))


def _endpoint(session: Session, name: str) -> Endpoint | None:
    return session.scalars(select(Endpoint).where(Endpoint.name == name)).first()


def case_detail(session: Session, suspect: str, protected: str,
                show_canary_ids: bool) -> dict[str, Any] | None:
    """Everything the case page shows; None when the pair has no stored verdict.

    Canaries appear by id (analyst and admin) or by rank only (legal); their text never."""
    s_ep, p_ep = _endpoint(session, suspect), _endpoint(session, protected)
    if s_ep is None or p_ep is None:
        return None
    verdicts = list(session.scalars(select(Verdict).where(
        Verdict.suspect_id == s_ep.id, Verdict.protected_id == p_ep.id)
        .order_by(Verdict.created_at.desc(), Verdict.id.desc())))
    if not verdicts:
        return None
    # the verdict on all answers; the history also lists segments (a model change, recent)
    latest = next((v for v in verdicts if v.segment is None), verdicts[0])
    channels = []
    for name, ch in sorted((latest.channels or {}).items()):
        if isinstance(ch, dict):
            figures = {k: x for k, x in sorted(ch.items())
                       if isinstance(x, int | float) and not isinstance(x, bool)
                       and k != "p_value"}
            channels.append({"name": name.replace("_", " "), "p_value": ch.get("p_value"),
                             "figures": figures})
    contributions = [c for c in (latest.contributions or []) if isinstance(c, dict)]
    contributions.sort(key=lambda c: -float(c.get("contribution") or 0.0))
    strongest = [{"rank": i + 1,
                  "canary_id": str(c.get("canary_id")) if show_canary_ids else None,
                  "contribution": c.get("contribution"), "z": c.get("z")}
                 for i, c in enumerate(contributions[:10])]
    reports = list(session.scalars(select(Report).where(
        Report.suspect_id == s_ep.id, Report.protected_id == p_ep.id)
        .order_by(Report.created_at.desc())))
    report_ids = [r.id for r in reports]
    custody_rows = list(session.scalars(select(CustodyEntry).where(
        CustodyEntry.report_id.in_(report_ids)).order_by(CustodyEntry.seq.desc()))
    ) if report_ids else []
    alerts = list(session.scalars(select(Alert).where(
        Alert.suspect_id == s_ep.id, Alert.protected_id == p_ep.id)
        .order_by(Alert.created_at.desc())))
    jobs = list(session.scalars(select(ReportJob).where(
        ReportJob.suspect == suspect, ReportJob.protected == protected)
        .order_by(ReportJob.id.desc()).limit(5)))
    monitor = session.scalars(select(MonitorState).where(
        MonitorState.suspect_id == s_ep.id, MonitorState.protected_id == p_ep.id)).first()
    health = []
    if show_canary_ids:  # analyst: endpoint health
        names = [suspect, protected, *[str(c) for c in latest.controls or []]]
        for name in names:
            ep = _endpoint(session, name)
            if ep is None:
                continue
            cyc = session.scalars(select(Cycle).where(Cycle.endpoint_id == ep.id)
                                  .order_by(Cycle.id.desc())).first()
            health.append({"name": name, "role": ep.role, "model": ep.model,
                           "last_cycle": cyc.finished_at if cyc else None,
                           "status": cyc.status if cyc else "never probed",
                           "summary": {k: v for k, v in (cyc.summary or {}).items()
                                       if isinstance(v, int | float)} if cyc else {}})
    return {"suspect": s_ep, "protected": p_ep, "latest": latest, "verdicts": verdicts,
            "channels": channels, "controls": [str(c) for c in latest.controls or []],
            "strongest": strongest, "reports": reports, "custody": custody_rows,
            "alerts": alerts, "jobs": jobs,
            "e_value": monitor.e_value if monitor else latest.e_value, "health": health}
