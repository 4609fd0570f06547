"""Engines, sessions and migrations for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

__all__ = ["check_reachable", "connect", "current_revision", "downgrade", "head_revision",
           "make_engine", "upgrade"]

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from auditor.errors import AuditorError, Problem

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "migrations"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite gets WAL mode, foreign keys and a busy timeout."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise AuditorError(
            f"database_url {url!r} is not a valid URL",
            [
                Problem(
                    str(exc),
                    fix="use sqlite:///var/auditor.db or "
                    "postgresql+psycopg://user@host:5432/dbname",
                )
            ],
        ) from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            try:
                Path(db).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _unreachable(url, parsed.get_backend_name(), exc) from None
        kwargs.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy own transactions (pysqlite's implicit BEGIN is off by default).
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


_FIX = {
    "sqlite": "point database_url (or AUDITOR_DATABASE_URL) at an auditor database, or a new "
              "file, in a folder you can write, e.g. sqlite:///var/auditor.db",
    "postgresql": "start the PostgreSQL server, or correct user, host, port and database name "
                  "in database_url (or AUDITOR_DATABASE_URL)",
}


def _unreachable(url: str, backend: str, exc: BaseException) -> AuditorError:
    """One line: the URL without its password, the reason, and the fix."""
    parsed = make_url(url)
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    first = reason[0] if reason else type(exc).__name__
    if parsed.password:
        first = first.replace(str(parsed.password), "***")
    fix = _FIX.get(backend, "correct database_url (or AUDITOR_DATABASE_URL)")
    return AuditorError(f"cannot connect to the database "
                        f"{parsed.render_as_string(hide_password=True)}: {first} (fix: {fix})")


def check_reachable(engine: Engine) -> None:
    """Opens one connection; a server that is down or a file that cannot be created
    becomes an AuditorError naming the URL (password masked) and the fix."""
    try:
        with engine.connect():
            pass
    except (DatabaseError, OSError) as exc:  # OperationalError: server down, no file
        url = engine.url.render_as_string(hide_password=False)
        raise _unreachable(url, engine.url.get_backend_name(), exc) from None


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def connect(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Applies migrations up to ``revision`` (the same ones on SQLite and PostgreSQL)."""
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(_alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def ensure_current(engine: Engine) -> None:
    """Refuses to run on a database whose schema is not at the code's head revision."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        tables = inspect(engine).get_table_names()
        hint = (
            "run `auditor db upgrade`" if tables or current is None else "run `auditor db upgrade`"
        )
        raise AuditorError(
            f"database schema is at {current or 'no revision'}, the code needs {head}",
            [Problem("migrations not applied", fix=hint)],
        )
