"""The hash-chained ledger of responses: tamper-evident chain of custody.

Each response's record is its evidence in canonical JSON: endpoint name, canary id,
version and salted commitment (never an unsalted hash a guessed prompt could be checked
against), sample index, text, metadata, SHA-256 of the raw body, time.
``record_hash = sha256(record)`` and ``chain = sha256(prev_chain || record_hash)``, so
changing, removing or reordering any stored response breaks every link after it.
Appends lock the single ``ledger_head`` row, so processes on several machines extend one
chain without forks.
"""

from __future__ import annotations

__all__ = ["GENESIS", "LedgerBreak", "append", "chain_hash", "ledger_record", "lock_head",
           "verify"]

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC
from types import SimpleNamespace
from typing import Any, TypeVar, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.orm import Session

from auditor.canonical import canonical_json, sha256_hex
from auditor.store.models import (
    CanaryVersion,
    CustodyHead,
    Endpoint,
    LedgerHead,
    Response,
    utcnow,
)

GENESIS = "0" * 64
_RESPONSES = cast(Table, Response.__table__)
_OPTIONAL: dict[str, Any] = {c.key: None for c in _RESPONSES.columns if c.nullable} | {
    "imported": False}


def ledger_record(
    response: Response | SimpleNamespace, endpoint: Endpoint, canary: CanaryVersion
) -> dict[str, Any]:
    """The canonical evidence record of one response, as hashed into the chain."""
    return {
        "endpoint": endpoint.name,
        "canary_id": canary.canary_id,
        "canary_version": canary.version,
        "canary_commitment": canary.commitment,
        "sample_index": response.sample_index,
        "text": response.text,
        "finish_reason": response.finish_reason,
        "reported_model": response.reported_model,
        "system_fingerprint": response.system_fingerprint,
        "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens,
        "logprobs_sha256": sha256_hex(canonical_json(response.logprobs))
        if response.logprobs is not None
        else None,
        "raw_sha256": response.raw_sha256,
        "imported": bool(response.imported),
        "collected_at": response.collected_at.astimezone(UTC).isoformat(timespec="microseconds"),
    }


def chain_hash(prev_chain: str, record_hash: str) -> str:
    return sha256_hex((prev_chain + record_hash).encode("ascii"))


def _rows(
    session: Session, rows: Sequence[dict[str, Any]]
) -> tuple[dict[int, Endpoint], dict[int, CanaryVersion]]:
    """The endpoints and canary versions the responses point at, in two queries."""
    ep_ids = {r["endpoint_id"] for r in rows}
    cv_ids = {r["canary_version_id"] for r in rows}
    endpoints = {e.id: e for e in session.scalars(select(Endpoint).where(Endpoint.id.in_(ep_ids)))}
    canaries = {
        c.id: c
        for c in session.scalars(select(CanaryVersion).where(CanaryVersion.id.in_(cv_ids)))
    }
    return endpoints, canaries


Head = TypeVar("Head", LedgerHead, CustodyHead)


def lock_head(session: Session, model: type[Head]) -> Head:
    """The single head row of a chain, locked for this transaction: an UPDATE first (which
    serialises writers on SQLite, where SELECT ... FOR UPDATE is a no-op), then the row."""
    session.execute(update(model).where(model.id == 1).values(updated_at=utcnow()))
    return session.execute(select(model).where(model.id == 1).with_for_update()).scalar_one()


def append(session: Session, rows: Sequence[dict[str, Any]]) -> str:
    """Links responses, given as their column values (an omitted optional column is
    None), into the chain and inserts them in one statement; returns the new head.

    Call inside the transaction that also records their attempts; commit afterwards. The
    head row is locked first (an UPDATE), which serialises appenders on SQLite and
    PostgreSQL alike.
    """
    if not rows:
        return session.scalar(select(LedgerHead.chain).where(LedgerHead.id == 1)) or GENESIS
    head = lock_head(session, LedgerHead)
    endpoints, canaries = _rows(session, rows)
    seq, chain = head.seq, head.chain
    linked = []
    for given in rows:
        row = _OPTIONAL | given
        record = ledger_record(SimpleNamespace(**row), endpoints[row["endpoint_id"]],
                               canaries[row["canary_version_id"]])
        seq += 1
        row["seq"], row["prev_chain"] = seq, chain
        row["record_hash"] = sha256_hex(canonical_json(record))
        chain = row["chain"] = chain_hash(chain, row["record_hash"])
        linked.append(row)
    # Core executemany: one statement, without the ORM's per-row bookkeeping
    session.execute(insert(_RESPONSES), linked)
    head.seq, head.chain = seq, chain
    return chain


@dataclass(frozen=True)
class LedgerBreak:
    """The first place where the stored ledger disagrees with its recomputation."""

    seq: int
    response_id: int
    reason: str

    def __str__(self) -> str:
        return (
            f"ledger broken at position {self.seq} (response id {self.response_id}): {self.reason}"
        )


@dataclass(frozen=True)
class LedgerCheck:
    rows: int
    head: str
    broken: LedgerBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def _iter_rows(session: Session, batch: int = 5000) -> Iterable[Response]:
    last = 0
    while True:
        rows = session.scalars(
            select(Response).where(Response.seq > last).order_by(Response.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session) -> LedgerCheck:
    """Recomputes every record hash and link from the stored rows."""
    endpoints = {e.id: e for e in session.scalars(select(Endpoint))}
    canaries = {c.id: c for c in session.scalars(select(CanaryVersion))}
    prev, expected_seq, count = GENESIS, 1, 0
    for row in _iter_rows(session):
        count += 1
        reason = None
        if row.seq != expected_seq:
            reason = f"position {expected_seq} is missing (next stored is {row.seq})"
        elif row.prev_chain != prev:
            reason = "its previous-link does not match the chain before it"
        else:
            record = ledger_record(row, endpoints[row.endpoint_id], canaries[row.canary_version_id])
            if sha256_hex(canonical_json(record)) != row.record_hash:
                reason = "its content does not match its recorded hash (altered after recording)"
            elif chain_hash(prev, row.record_hash) != row.chain:
                reason = "its chain hash does not match"
        if reason:
            return LedgerCheck(count, prev, LedgerBreak(expected_seq, row.id, reason))
        prev, expected_seq = row.chain, expected_seq + 1
    head = session.execute(select(LedgerHead).where(LedgerHead.id == 1)).scalar_one_or_none()
    if head is not None and (head.seq != expected_seq - 1 or head.chain != prev):
        return LedgerCheck(
            count,
            prev,
            LedgerBreak(
                head.seq,
                0,
                f"the head says {head.seq} entries ending {head.chain[:12]}, "
                f"the rows end at {expected_seq - 1} with {prev[:12]} (rows removed?)",
            ),
        )
    return LedgerCheck(count, prev, None)
