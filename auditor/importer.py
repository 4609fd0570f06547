"""Import of responses collected elsewhere, chained into the ledger like probed ones.

One JSON object per line::

    {"canary_id": "ft-lighthouse", "sample_index": 0, "text": "...",
     "collected_at": "2026-11-01T12:00:00Z", "raw": "...optional raw body...",
     "canary_version": 2, "reported_model": "...", "finish_reason": "stop"}

Every line is validated before anything is written; a file with any bad line writes
nothing and the error names each bad line. Lines already imported (same endpoint,
canary version, sample, raw body hash and collection time) are skipped, so an import
can be re-run.
"""

from __future__ import annotations

__all__ = ["ImportRecord", "ImportResult", "import_records", "import_jsonl", "parse_jsonl"]

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from auditor.canonical import canonical_json, sha256_hex
from auditor.errors import AuditorError, Problem
from auditor.store import ledger
from auditor.store.models import Attempt, CanaryVersion, Cycle, Endpoint, Response, utcnow

_ATTEMPTS = cast(Table, Attempt.__table__)


class ImportRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    canary_id: str = Field(min_length=1)
    sample_index: int = Field(default=0, ge=0)
    text: str
    collected_at: datetime
    raw: str | None = None
    canary_version: int | None = Field(default=None, ge=1)
    reported_model: str | None = None
    finish_reason: str | None = None
    system_fingerprint: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: list[Any] | None = None

    @field_validator("collected_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("collected_at needs a timezone, e.g. 2026-11-01T12:00:00Z")
        return v.astimezone(UTC)

    def raw_sha256(self) -> str:
        if self.raw is not None:
            return sha256_hex(self.raw)
        return sha256_hex(canonical_json({"text": self.text}))


def parse_jsonl(lines: Iterable[str], source: str) -> list[ImportRecord]:
    records, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(ImportRecord.model_validate(json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(Problem(f"not JSON: {exc.msg}", source, number,
                                    "one JSON object per line"))
        except ValidationError as exc:
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"]) or "record"
                problems.append(Problem(f"{key}: {err['msg'].removeprefix('Value error, ')}",
                                        source, number))
    if problems:
        raise AuditorError(f"{source}: {len(problems)} bad line(s); nothing was imported", problems)
    return records


@dataclass(frozen=True)
class ImportResult:
    cycle_id: int | None
    imported: int
    skipped: int


def import_records(
    session: Session, endpoint: Endpoint, records: list[ImportRecord], source: str = "import"
) -> ImportResult:
    """Chains ``records`` as responses of ``endpoint``; caller commits."""
    versions = list(session.scalars(select(CanaryVersion)))
    live = {v.canary_id: v for v in versions if v.retired_at is None}
    exact = {(v.canary_id, v.version): v for v in versions}
    problems: list[Problem] = []
    resolved: list[tuple[ImportRecord, CanaryVersion]] = []
    slots: dict[tuple[str, int | None, int], int] = {}
    for i, rec in enumerate(records, start=1):
        slot = (rec.canary_id, rec.canary_version, rec.sample_index)
        if slot in slots:
            problems.append(Problem(
                f"canary {rec.canary_id!r} sample {rec.sample_index} appears twice "
                f"(first on record {slots[slot]})", source, i, "give each sample its own index"))
            continue
        slots[slot] = i
        cv = exact.get((rec.canary_id, rec.canary_version)) if rec.canary_version else \
            live.get(rec.canary_id)
        if cv is None:
            what = f"version {rec.canary_version} of " if rec.canary_version else ""
            problems.append(Problem(f"unknown canary: {what}{rec.canary_id!r}", source, i,
                                    "add it to the registry (auditor canaries sync) first"))
        else:
            resolved.append((rec, cv))
    if problems:
        raise AuditorError(f"{source}: {len(problems)} record(s) name unknown canaries; "
                           "nothing was imported", problems)
    seen = _imported(session, endpoint, [rec.collected_at for rec, _ in resolved])
    now = utcnow()
    fresh: list[tuple[ImportRecord, CanaryVersion, str]] = []
    for rec, cv in resolved:
        digest = rec.raw_sha256()
        key = (cv.id, rec.sample_index, digest, rec.collected_at)
        if key in seen:
            continue
        seen.add(key)
        fresh.append((rec, cv, digest))
    if not fresh:
        return ImportResult(None, 0, len(records))
    cycle = Cycle(kind="import", endpoint_id=endpoint.id, status="done", planned_at=now,
                  started_at=now, finished_at=now, summary={"source": Path(source).name})
    session.add(cycle)
    session.flush()
    # one statement per table; an attempt's id is found by its slot in the new cycle
    session.execute(insert(_ATTEMPTS), [
        {"cycle_id": cycle.id, "endpoint_id": endpoint.id, "canary_version_id": cv.id,
         "sample_index": rec.sample_index, "status": "ok", "tries": 0,
         "started_at": rec.collected_at, "finished_at": rec.collected_at}
        for rec, cv, _ in fresh])
    attempt_of = {(v, i): a for a, v, i in session.execute(
        select(Attempt.id, Attempt.canary_version_id, Attempt.sample_index)
        .where(Attempt.cycle_id == cycle.id))}
    ledger.append(session, [
        {"attempt_id": attempt_of[(cv.id, rec.sample_index)], "endpoint_id": endpoint.id,
         "canary_version_id": cv.id,
         "sample_index": rec.sample_index, "text": rec.text, "finish_reason": rec.finish_reason,
         "reported_model": rec.reported_model, "system_fingerprint": rec.system_fingerprint,
         "prompt_tokens": rec.prompt_tokens, "completion_tokens": rec.completion_tokens,
         "logprobs": rec.logprobs, "raw_sha256": digest, "raw_body": rec.raw, "imported": True,
         "collected_at": rec.collected_at}
        for rec, cv, digest in fresh])
    return ImportResult(cycle.id, len(fresh), len(records) - len(fresh))


def _imported(session: Session, endpoint: Endpoint, times: list[datetime],
              ) -> set[tuple[int, int, str, datetime]]:
    """The keys of the responses already imported for ``endpoint`` between the earliest
    and latest of ``times`` (a duplicate has its record's time): what a re-run skips,
    read from that stretch of the store only, not from its whole history."""
    if not times:
        return set()
    return {
        (r.canary_version_id, r.sample_index, r.raw_sha256, r.collected_at)
        for r in session.execute(
            select(Response.canary_version_id, Response.sample_index, Response.raw_sha256,
                   Response.collected_at)
            .where(Response.endpoint_id == endpoint.id, Response.imported.is_(True),
                   Response.collected_at >= min(times), Response.collected_at <= max(times)))
    }


def import_jsonl(session: Session, endpoint: Endpoint, path: str | Path) -> ImportResult:
    p = Path(path)
    try:
        with p.open(encoding="utf-8") as fh:
            records = parse_jsonl(fh, str(p))
    except OSError as exc:
        raise AuditorError(f"cannot read {p}: {exc}") from None
    return import_records(session, endpoint, records, str(p))
