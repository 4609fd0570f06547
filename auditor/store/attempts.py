"""Attempts in the store: plan a cycle, claim work under a lease, record outcomes.

The life of an attempt::

    planned --claim--> running --record--> ok | failed | skipped
                          |  \\--release--> planned | interrupted --claim--> running ...
                          \\-- lease expired, or claimer's process gone --> claimable again

A claim marks rows ``running`` with ``claimed_by`` and ``lease_until`` in one statement
(``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`` on PostgreSQL;
the same statement inside SQLite's single-writer transaction), so several workers never
get the same row. Recording checks the claim is still held, in the same transaction that
updates the attempts and appends the responses to the ledger: an answer is stored once
or not at all. Every function here takes a session; callers commit.
"""

from __future__ import annotations

__all__ = [
    "CLAIMABLE",
    "Claimed",
    "Outcome",
    "Planned",
    "abandon",
    "claim",
    "finish_cycle",
    "finish_if_done",
    "pid_alive",
    "plan_cycle",
    "reap_dead_claims",
    "record",
    "release",
    "renew",
    "skip_remaining",
    "summarize",
    "unfinished_cycles",
    "worker_id",
]

import os
import socket
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from auditor.config import Endpoint as EndpointConfig
from auditor.errors import AuditorError, Problem
from auditor.store import ledger, live_versions
from auditor.store.models import (
    Attempt,
    CanaryVersion,
    Cycle,
    Endpoint,
    RegistryCommit,
    Response,
    utcnow,
)

CLAIMABLE = ("planned", "interrupted")
UNFINISHED = ("planned", "running", "interrupted")
_CHUNK = 5000


def worker_id() -> str:
    """``host:pid:random``: names this process in ``claimed_by``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# -- planning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    cycle_id: int
    attempts: int
    existing: bool = False
    skipped_logprob: int = 0


def _wants(ep: EndpointConfig, version: CanaryVersion) -> bool:
    """Logprob canaries go only to endpoints that return log-probabilities."""
    if version.kind != "logprob":
        return True
    return ep.logprobs and ep.provider != "anthropic"


def plan_cycle(
    session: Session,
    endpoints: Sequence[EndpointConfig],
    *,
    kind: str = "probe",
    canary_ids: Sequence[str] | None = None,
    schedule_key: str | None = None,
) -> Planned:
    """Writes a cycle and one ``planned`` attempt per (endpoint, canary version, sample).

    Endpoint rows must exist (``sync_endpoints``) and the registry be synced. With a
    ``schedule_key`` already used, returns that cycle instead of planning a second one.
    Nothing is sent here; commit before running, so a crash leaves a to-do list.
    """
    if schedule_key is not None:
        found = session.scalars(select(Cycle).where(Cycle.schedule_key == schedule_key)).first()
        if found is not None:
            n = session.scalar(select(func.count()).where(Attempt.cycle_id == found.id)) or 0
            return Planned(found.id, n, existing=True)
    if not endpoints:
        raise AuditorError("no endpoint to probe",
                           [Problem("none selected or enabled", fix="add an [[endpoints]] entry "
                                    "to auditor.toml, or check --endpoint and `enabled`")])
    rows = {e.name: e for e in session.scalars(
        select(Endpoint).where(Endpoint.name.in_([ep.name for ep in endpoints])))}
    missing = [ep.name for ep in endpoints if ep.name not in rows]
    if missing:
        raise AuditorError(f"endpoint(s) {missing} are not in the store; sync endpoints first")
    versions = live_versions(session)
    if canary_ids:
        known = {v.canary_id for v in versions}
        unknown = [c for c in canary_ids if c not in known]
        if unknown:
            raise AuditorError(
                f"unknown canary id(s): {', '.join(unknown)}",
                [Problem("not in the synced registry",
                         fix="check the id with `auditor canaries list`")])
        versions = [v for v in versions if v.canary_id in set(canary_ids)]
    if not versions:
        raise AuditorError("no canaries to send",
                           [Problem("the registry has no live canary",
                                    fix="add canaries under canaries_dir and sync them")])
    root = session.scalar(select(RegistryCommit.root).order_by(RegistryCommit.id.desc()).limit(1))
    cycle = Cycle(kind=kind, endpoint_id=rows[endpoints[0].name].id if len(endpoints) == 1
                  else None, schedule_key=schedule_key, status="planned", registry_root=root,
                  planned_at=utcnow())
    session.add(cycle)
    session.flush()
    skipped = 0

    def slots() -> Iterator[dict[str, Any]]:
        nonlocal skipped
        for v in versions:
            samples = int(v.content.get("samples", 1))
            for ep in endpoints:
                if not _wants(ep, v):
                    skipped += samples
                    continue
                for s in range(samples):
                    yield {"cycle_id": cycle.id, "endpoint_id": rows[ep.name].id,
                           "canary_version_id": v.id, "sample_index": s,
                           "status": "planned", "tries": 0}

    total = 0
    chunk: list[dict[str, Any]] = []
    for slot in slots():
        chunk.append(slot)
        if len(chunk) >= _CHUNK:
            session.execute(insert(Attempt), chunk)
            total += len(chunk)
            chunk = []
    if chunk:
        session.execute(insert(Attempt), chunk)
        total += len(chunk)
    cycle.summary = {"planned": total}
    session.flush()
    return Planned(cycle.id, total, skipped_logprob=skipped)


# -- claiming ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: int
    endpoint_id: int
    canary_version_id: int
    sample_index: int
    tries: int


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _claim_where(session: Session, cycle_id: int, endpoint_id: int, condition: Any,
                 worker: str, lease_until: datetime, limit: int) -> list[Claimed]:
    pick = (select(Attempt.id)
            .where(Attempt.cycle_id == cycle_id, Attempt.endpoint_id == endpoint_id, condition)
            .limit(limit))
    if _is_pg(session):
        pick = pick.with_for_update(skip_locked=True)
    rows = session.execute(
        update(Attempt).where(Attempt.id.in_(pick.scalar_subquery()))
        .values(status="running", claimed_by=worker, lease_until=lease_until)
        .returning(Attempt.id, Attempt.endpoint_id, Attempt.canary_version_id,
                   Attempt.sample_index, Attempt.tries)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted((Claimed(*r) for r in rows), key=lambda c: c.id)


def claim(session: Session, cycle_id: int, endpoint_id: int, worker: str, *, limit: int,
          lease_seconds: float) -> list[Claimed]:
    """Up to ``limit`` claimable attempts of one endpoint in one cycle, now ``worker``'s."""
    now = utcnow()
    until = now + timedelta(seconds=lease_seconds)
    got: list[Claimed] = []
    for condition in (
        Attempt.status == "planned",
        Attempt.status == "interrupted",
        and_(Attempt.status == "running", Attempt.lease_until < now),
    ):
        if len(got) >= limit:
            break
        got += _claim_where(session, cycle_id, endpoint_id, condition, worker, until,
                            limit - len(got))
    return got


def renew(session: Session, worker: str, lease_seconds: float) -> int:
    """Extends the lease of every attempt ``worker`` holds; returns how many."""
    result = session.execute(
        update(Attempt).where(Attempt.claimed_by == worker, Attempt.status == "running")
        .values(lease_until=utcnow() + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def pid_alive(pid: int) -> bool:
    """Whether a process of this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_dead_claims(session: Session, cycle_id: int | None = None) -> int:
    """Frees claims of processes on this host that no longer exist (no lease wait needed).

    Claims of other hosts are left to their lease.
    """
    host = socket.gethostname()
    q = select(Attempt.claimed_by).where(Attempt.status == "running").distinct()
    if cycle_id is not None:
        q = q.where(Attempt.cycle_id == cycle_id)
    dead = []
    for claimer in session.scalars(q):
        if not claimer:
            continue
        h, _, rest = claimer.rpartition(":")[0].rpartition(":")
        if h == host and rest.isdigit() and int(rest) != os.getpid() and not pid_alive(
                int(rest)):
            dead.append(claimer)
    if not dead:
        return 0
    result = session.execute(
        update(Attempt).where(Attempt.claimed_by.in_(dead), Attempt.status == "running")
        .values(status="interrupted", claimed_by=None, lease_until=None,
                error_class="interrupted", error_message="the claiming process died")
        .execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def release(session: Session, worker: str, ids: Sequence[int] | None = None, *,
            status: str = "planned", message: str | None = None) -> int:
    """Gives back ``worker``'s claims (all, or ``ids``) as ``planned`` or ``interrupted``."""
    values: dict[str, Any] = {"status": status, "claimed_by": None, "lease_until": None}
    if status == "interrupted":
        values.update(error_class="interrupted", error_message=message or "stopped")
    q = update(Attempt).where(Attempt.claimed_by == worker, Attempt.status == "running")
    if ids is not None:
        if not ids:
            return 0
        q = q.where(Attempt.id.in_(list(ids)))
    result = session.execute(q.values(**values).execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def skip_remaining(session: Session, cycle_id: int, endpoint_id: int, *,
                   error_class: str, message: str) -> int:
    """Closes the endpoint's unclaimed attempts (for example when the budget is spent).

    Attempts claimed by others stay theirs; ``worker``'s own claims it records itself.
    """
    now = utcnow()
    result = session.execute(
        update(Attempt).where(
            Attempt.cycle_id == cycle_id, Attempt.endpoint_id == endpoint_id,
            Attempt.status.in_(CLAIMABLE))
        .values(status="skipped", error_class=error_class, error_message=message,
                claimed_by=None, lease_until=None, finished_at=now)
        .execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def abandon(session: Session, *, cycle_id: int | None = None,
            endpoint_ids: Sequence[int] | None = None,
            canary_version_ids: Sequence[int] | None = None) -> int:
    """Closes unfinished attempts (all, or those matching every filter given) as
    ``skipped``/``abandoned``; cycles left with nothing to do are marked done. Caller commits.
    Run it with no daemon or probe working on them: a claim holder's answer is then lost."""
    where: list[ColumnElement[bool]] = [Attempt.status.in_(UNFINISHED)]
    if cycle_id is not None:
        where.append(Attempt.cycle_id == cycle_id)
    if endpoint_ids is not None:
        where.append(Attempt.endpoint_id.in_(list(endpoint_ids)))
    if canary_version_ids is not None:
        where.append(Attempt.canary_version_id.in_(list(canary_version_ids)))
    cycles = list(session.scalars(select(Attempt.cycle_id).where(*where).distinct()))
    result = session.execute(
        update(Attempt).where(*where)
        .values(status="skipped", error_class="abandoned",
                error_message="abandoned by `auditor abandon` or `auditor canaries retire`",
                claimed_by=None, lease_until=None, finished_at=utcnow())
        .execution_options(synchronize_session=False))
    for c in cycles:
        finish_if_done(session, c)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# -- recording -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """The end of one attempt in this run, ready to be stored."""

    attempt_id: int
    endpoint_id: int
    canary_version_id: int
    sample_index: int
    status: str  # ok | failed | skipped
    tries: int
    started_at: datetime | None = None
    finished_at: datetime = field(default_factory=utcnow)
    latency_ms: float | None = None
    http_status: int | None = None
    error_class: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    response: dict[str, Any] | None = None  # Response columns when status == "ok"


def record(session: Session, worker: str, outcomes: Sequence[Outcome]) -> int:
    """Stores outcomes whose claim ``worker`` still holds; returns how many were stored.

    Attempts and their responses are written in this one transaction and the responses
    are appended to the ledger in one go. Outcomes of claims lost (lease expired, taken
    over) are dropped: the other worker's answer is the one that counts.
    """
    if not outcomes:
        return 0
    ids = [o.attempt_id for o in outcomes]
    held: set[int] = set()
    for i in range(0, len(ids), _CHUNK):
        held.update(session.scalars(
            update(Attempt)
            .where(Attempt.id.in_(ids[i:i + _CHUNK]), Attempt.claimed_by == worker,
                   Attempt.status == "running")
            .values(claimed_by=None, lease_until=None)
            .returning(Attempt.id)
            .execution_options(synchronize_session=False)))
    kept = [o for o in outcomes if o.attempt_id in held]
    if not kept:
        return 0
    session.execute(_UPDATE_OUTCOME, [
        {"b_id": o.attempt_id, "b_status": o.status, "b_tries": o.tries,
         "b_started_at": o.started_at, "b_finished_at": o.finished_at,
         "b_latency_ms": o.latency_ms, "b_http_status": o.http_status,
         "b_error_class": o.error_class, "b_error_message": o.error_message,
         "b_request_id": o.request_id}
        for o in kept
    ])
    ledger.append(session, [
        {"attempt_id": o.attempt_id, "endpoint_id": o.endpoint_id,
         "canary_version_id": o.canary_version_id, "sample_index": o.sample_index,
         "imported": False, **o.response}
        for o in kept if o.status == "ok" and o.response is not None])
    return len(kept)


_OUTCOME_COLUMNS = ("status", "tries", "started_at", "finished_at", "latency_ms", "http_status",
                    "error_class", "error_message", "request_id")
_attempts = cast(Table, Attempt.__table__)
# Core executemany: one statement for the batch, without the ORM's per-row bookkeeping.
_UPDATE_OUTCOME = (
    update(_attempts).where(_attempts.c.id == bindparam("b_id"))
    .values({c: bindparam(f"b_{c}") for c in _OUTCOME_COLUMNS})
)


# -- cycles --------------------------------------------------------------------------------


def unfinished_cycles(session: Session, endpoint_ids: Sequence[int] | None = None,
                      kinds: Sequence[str] = ("probe", "fingerprint")) -> list[int]:
    """Cycles with attempts not yet done (of the given endpoints), oldest first."""
    q = (select(Attempt.cycle_id).join(Cycle, Cycle.id == Attempt.cycle_id)
         .where(Attempt.status.in_(UNFINISHED), Cycle.kind.in_(list(kinds))).distinct())
    if endpoint_ids is not None:
        q = q.where(Attempt.endpoint_id.in_(list(endpoint_ids)))
    return sorted(session.scalars(q))


def _percentile(session: Session, base: Any, count: int, q: float) -> float | None:
    if count == 0:
        return None
    offset = min(count - 1, max(0, int(round(q * (count - 1)))))
    return session.scalar(base.order_by(Attempt.latency_ms).offset(offset).limit(1))


def summarize(session: Session, cycle_id: int,
              prices: dict[int, tuple[float, float]] | None = None) -> dict[str, Any]:
    """Per endpoint: planned, sent, ok, failed by class, retried, tokens, cost, p50/p95,
    and the last error (class and message) of a failed or skipped attempt.

    ``prices`` maps endpoint id to (USD per input token, USD per output token).
    """
    names = dict(session.execute(select(Endpoint.id, Endpoint.name)).tuples().all())
    out: dict[str, Any] = {}
    by_status = session.execute(
        select(Attempt.endpoint_id, Attempt.status, Attempt.error_class, func.count(),
               func.sum(Attempt.tries), func.count().filter(Attempt.tries > 1))
        .where(Attempt.cycle_id == cycle_id)
        .group_by(Attempt.endpoint_id, Attempt.status, Attempt.error_class)).all()
    for ep_id, status, error_class, n, tries, retried in by_status:
        s = out.setdefault(names[ep_id], {
            "planned": 0, "sent": 0, "ok": 0, "failed": {}, "skipped": {}, "pending": 0,
            "retried": 0, "tries": 0, "prompt_tokens": 0, "completion_tokens": 0,
            "cost_usd": 0.0, "p50_ms": None, "p95_ms": None, "_id": ep_id})
        s["planned"] += n
        s["tries"] += int(tries or 0)
        s["retried"] += int(retried or 0)
        if status == "ok":
            s["ok"] += n
        elif status == "failed":
            s["failed"][error_class or "unknown"] = s["failed"].get(error_class or "unknown",
                                                                    0) + n
        elif status == "skipped":
            s["skipped"][error_class or "unknown"] = n
        else:
            s["pending"] += n
    sent = session.execute(
        select(Attempt.endpoint_id, func.count()).where(
            Attempt.cycle_id == cycle_id, Attempt.tries > 0).group_by(Attempt.endpoint_id))
    for ep_id, n in sent:
        out[names[ep_id]]["sent"] = n
    tokens = session.execute(
        select(Response.endpoint_id, func.sum(Response.prompt_tokens),
               func.sum(Response.completion_tokens))
        .join(Attempt, Attempt.id == Response.attempt_id)
        .where(Attempt.cycle_id == cycle_id).group_by(Response.endpoint_id))
    for ep_id, p, c in tokens:
        s = out[names[ep_id]]
        s["prompt_tokens"], s["completion_tokens"] = int(p or 0), int(c or 0)
        pin, pout = (prices or {}).get(ep_id, (0.0, 0.0))
        s["cost_usd"] = round(s["prompt_tokens"] * pin + s["completion_tokens"] * pout, 6)
    for s in out.values():
        ep_id = s.pop("_id")
        base = select(Attempt.latency_ms).where(
            Attempt.cycle_id == cycle_id, Attempt.endpoint_id == ep_id,
            Attempt.latency_ms.is_not(None))
        count = session.scalar(select(func.count()).select_from(base.subquery())) or 0
        s["p50_ms"] = _percentile(session, base, count, 0.50)
        s["p95_ms"] = _percentile(session, base, count, 0.95)
        last = session.execute(
            select(Attempt.error_class, Attempt.error_message).where(
                Attempt.cycle_id == cycle_id, Attempt.endpoint_id == ep_id,
                Attempt.status.in_(("failed", "skipped")))
            .order_by(Attempt.finished_at.desc().nulls_last(), Attempt.id.desc())
            .limit(1)).first()
        s["last_error"] = None if last is None else {"class": last[0], "message": last[1]}
    return out


def finish_if_done(session: Session, cycle_id: int,
                   prices: dict[int, tuple[float, float]] | None = None) -> bool:
    """Marks the cycle done (with its summary) once no attempt is left to do."""
    return finish_cycle(session, cycle_id, prices) is not None


def finish_cycle(session: Session, cycle_id: int,
                 prices: dict[int, tuple[float, float]] | None = None) -> str | None:
    """Like :func:`finish_if_done`: None while attempts are left, else ``"completed"``
    for the one call (of any process) that marked the cycle done, ``"done"`` for the rest.

    The guarded UPDATE makes the transition exactly once: on PostgreSQL a second writer
    waits for the first one's row lock, then finds the cycle done.
    """
    left = session.scalar(select(func.count()).where(
        Attempt.cycle_id == cycle_id, Attempt.status.in_(UNFINISHED)))
    if left:
        return None
    cycle = session.get(Cycle, cycle_id)
    assert cycle is not None
    if cycle.status == "done":
        return "done"
    planned = (cycle.summary or {}).get("planned")
    summary = {"planned": planned, "endpoints": summarize(session, cycle_id, prices)}
    won = session.execute(
        update(Cycle).where(Cycle.id == cycle_id, Cycle.status != "done")
        .values(status="done", finished_at=utcnow(), summary=summary)
        .execution_options(synchronize_session=False))
    session.expire(cycle)
    return "completed" if won.rowcount == 1 else "done"  # type: ignore[attr-defined]


def spent_today(session: Session, endpoint_id: int) -> tuple[int, int]:
    """Prompt and completion tokens of the endpoint's responses collected today (UTC)."""
    start = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    p, c = session.execute(
        select(func.sum(Response.prompt_tokens), func.sum(Response.completion_tokens))
        .where(Response.endpoint_id == endpoint_id, Response.collected_at >= start,
               Response.imported.is_(False))).one()
    return int(p or 0), int(c or 0)
