"""Heartbeat rows: each daemon or worker process says, every few seconds, that it is alive."""

from __future__ import annotations

__all__ = ["Beat", "beat", "prune", "stopped"]

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_
from sqlalchemy.orm import Session

from auditor.store.models import Heartbeat, utcnow


@dataclass
class Beat:
    role: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started_at: datetime = field(default_factory=utcnow)

    @property
    def id(self) -> str:
        return f"{self.host}:{self.pid}:{int(self.started_at.timestamp())}"[:128]


def beat(session: Session, me: Beat, info: dict[str, Any], status: str = "running") -> None:
    row = session.get(Heartbeat, me.id)
    if row is None:
        row = Heartbeat(id=me.id, host=me.host[:200], pid=me.pid, role=me.role,
                        started_at=me.started_at)
        session.add(row)
    row.beat_at, row.status, row.info = utcnow(), status, info


def stopped(session: Session, me: Beat, info: dict[str, Any]) -> None:
    beat(session, me, info, status="stopped")


def prune(session: Session, older_than_days: float = 7.0) -> int:
    """Forgets processes silent for a week (stopped or dead), so the table stays small."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    result = session.execute(delete(Heartbeat).where(
        or_(Heartbeat.beat_at < cutoff)).execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
