"""The evidence store: ORM tables, engines and sessions, the hash-chained ledger."""

from __future__ import annotations

__all__ = ["Store", "live_versions", "open_store", "sync_endpoints"]

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from auditor.config import Settings
from auditor.errors import AuditorError
from auditor.store import db
from auditor.store.models import CanaryVersion, Endpoint


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
    try:
        db.check_reachable(engine)
    except AuditorError:
        engine.dispose()
        raise
    if migrate is None:
        migrate = engine.dialect.name == "sqlite"
    if migrate and db.current_revision(engine) != db.head_revision():
        with _migration_lock(engine):  # several processes may open a new file at once
            db.upgrade(engine)
    elif not migrate:
        db.ensure_current(engine)
    return Store(engine, db.sessions(engine))


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """An exclusive file lock beside a SQLite database; nothing for other databases."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    import fcntl

    with open(f"{path}.migrate.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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


def live_versions(session: Session) -> list[CanaryVersion]:
    """The current (not retired) version of every canary, ordered by canary id."""
    return list(
        session.scalars(
            select(CanaryVersion)
            .where(CanaryVersion.retired_at.is_(None))
            .order_by(CanaryVersion.canary_id)
        )
    )
