"""The evidence store: ORM tables, engines and sessions, the hash-chained ledger."""

from __future__ import annotations

__all__ = ["Store", "open_store", "sync_endpoints"]

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from auditor.config import Settings
from auditor.store import db
from auditor.store.models import Endpoint


@dataclass
class Store:
    engine: Engine
    sessions: sessionmaker[Session]

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self.sessions.begin() as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def open_store(settings: Settings | str, *, migrate: bool | None = None) -> Store:
    """Opens the configured database.

    SQLite (the embedded default) is migrated to the head revision automatically; other
    databases must be at head already (``auditor db upgrade``) unless ``migrate=True``.
    """
    url = settings if isinstance(settings, str) else settings.resolved_database_url()
    engine = db.make_engine(url)
    if migrate is None:
        migrate = engine.dialect.name == "sqlite"
    if migrate:
        db.upgrade(engine)
    else:
        db.ensure_current(engine)
    return Store(engine, db.sessions(engine))


def sync_endpoints(session: Session, settings: Settings) -> dict[str, Endpoint]:
    """Upserts a row for every configured endpoint (never a key: only the variable's name)."""
    rows = {e.name: e for e in session.scalars(select(Endpoint))}
    for ep in settings.endpoints:
        row = rows.get(ep.name)
        if row is None:
            row = Endpoint(name=ep.name)
            session.add(row)
            rows[ep.name] = row
        digest = ep.config_hash()
        if row.config_hash != digest:
            row.provider, row.model, row.base_url = ep.provider, ep.model, ep.base_url
            row.role, row.api_key_env, row.config_hash = ep.role, ep.api_key_env, digest
    session.flush()
    return rows
