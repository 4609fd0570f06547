from __future__ import annotations

from sqlalchemy import inspect, text

from auditor.store import db
from auditor.store.models import Base


def test_upgrade_creates_every_table_and_downgrade_removes_them(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision()
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        db.downgrade(engine, "base")
        assert db.current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) & set(Base.metadata.tables) == set()
        db.upgrade(engine)  # and up again, from base
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()


def test_migrations_match_the_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = compare_metadata(ctx, Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(sqlite_url: str) -> None:
    engine = db.make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()


def test_ensure_current_refuses_an_unmigrated_database(sqlite_url: str) -> None:
    import pytest

    from auditor.errors import AuditorError

    engine = db.make_engine(sqlite_url)
    try:
        with pytest.raises(AuditorError, match="auditor db upgrade"):
            db.ensure_current(engine)
    finally:
        engine.dispose()
