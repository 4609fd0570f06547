"""The custody log: who made or received which evidence, when, and from which address.

Chained like the evidence ledger (``auditor.store.ledger``): each entry's record is its
canonical JSON, ``record_hash = sha256(record)`` and ``chain = sha256(prev_chain ||
record_hash)``, so changing, removing or reordering an entry breaks every link after it.
Appends lock the single ``custody_head`` row, so several portal processes extend one chain.
"""

from __future__ import annotations

__all__ = ["CustodyCheck", "append", "custody_record", "verify"]

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from auditor.canonical import canonical_json, sha256_hex
from auditor.store.ledger import GENESIS, chain_hash, lock_head
from auditor.store.models import CustodyEntry, CustodyHead, utcnow

ACTIONS = ("generate", "download", "verify", "export")


def custody_record(entry: CustodyEntry) -> dict[str, Any]:
    """The canonical record of one entry, as hashed into the chain."""
    return {
        "seq": entry.seq,
        "at": entry.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": entry.actor,
        "action": entry.action,
        "report_id": entry.report_id,
        "manifest_sha256": entry.manifest_sha256,
        "address": entry.address,
        "detail": entry.detail,
    }


def append(session: Session, *, actor: str, action: str, address: str | None,
           report_id: int | None = None, manifest_sha256: str | None = None,
           detail: dict[str, Any] | None = None, at: datetime | None = None) -> CustodyEntry:
    """Chains one entry and adds it to ``session``; commit with the work it records."""
    if action not in ACTIONS:
        raise ValueError(f"unknown custody action {action!r}")
    head = lock_head(session, CustodyHead)
    entry = CustodyEntry(seq=head.seq + 1, at=(at or utcnow()).astimezone(UTC), actor=actor,
                         action=action, report_id=report_id, manifest_sha256=manifest_sha256,
                         address=address, detail=detail or {})
    entry.record_hash = sha256_hex(canonical_json(custody_record(entry)))
    entry.prev_chain = head.chain
    entry.chain = chain_hash(head.chain, entry.record_hash)
    session.add(entry)
    head.seq, head.chain = entry.seq, entry.chain
    session.flush()
    return entry


@dataclass(frozen=True)
class CustodyCheck:
    rows: int
    head: str
    broken: str | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def verify(session: Session) -> CustodyCheck:
    """Recomputes every record hash and link; names the first entry that disagrees."""
    prev, expected, count = GENESIS, 1, 0
    for row in session.scalars(select(CustodyEntry).order_by(CustodyEntry.seq)):
        count += 1
        if row.seq != expected:
            return CustodyCheck(count, prev, f"custody entry {expected} is missing")
        if row.prev_chain != prev:
            return CustodyCheck(count, prev, f"custody entry {row.seq}: previous-link differs")
        if sha256_hex(canonical_json(custody_record(row))) != row.record_hash:
            return CustodyCheck(count, prev, f"custody entry {row.seq}: altered after recording")
        if chain_hash(prev, row.record_hash) != row.chain:
            return CustodyCheck(count, prev, f"custody entry {row.seq}: chain hash differs")
        prev, expected = row.chain, expected + 1
    head = session.get(CustodyHead, 1)
    if head is not None and (head.seq != expected - 1 or head.chain != prev):
        return CustodyCheck(count, prev, f"the custody head says {head.seq} entries, the rows "
                            f"end at {expected - 1} (entries removed?)")
    return CustodyCheck(count, prev, None)
