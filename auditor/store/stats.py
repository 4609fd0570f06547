"""How big the store is: rows and on-disk size per table, responses per day.

PostgreSQL sizes come from ``pg_total_relation_size`` (table, TOAST and indexes) and
``pg_database_size``. SQLite sizes come from the ``dbstat`` virtual table when the
SQLite library has it (pages of each table plus those of its indexes); without it only
the file sizes and page counts are known, and ``size_source`` says so.
"""

from __future__ import annotations

__all__ = ["DayGrowth", "StoreStats", "TableStats", "collect"]

import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, func, inspect, select, table, text
from sqlalchemy.exc import DatabaseError

from auditor.errors import AuditorError
from auditor.store import db
from auditor.store.models import Response

# Above this many rows (PostgreSQL's own estimate) a table is not counted row by row
# unless asked: count(*) reads every row, which takes seconds at tens of millions.
ESTIMATE_ABOVE = 1_000_000


@dataclass
class TableStats:
    name: str
    rows: int
    rows_estimated: bool = False  # PostgreSQL's planner estimate (pg_class.reltuples)
    bytes: int | None = None  # table, TOAST and indexes; None when unknown
    index_bytes: int | None = None


@dataclass
class DayGrowth:
    day: date
    rows: int  # responses collected that day (UTC)
    imported: int  # of which imported
    approx_bytes: int | None  # rows x the responses table's average bytes per row (None:
    # table size unknown)


@dataclass
class StoreStats:
    backend: str
    revision: str | None
    head: str | None
    database_bytes: int
    size_source: str  # pg_total_relation_size | dbstat | file
    tables: list[TableStats]
    days: list[DayGrowth]
    notes: list[str] = field(default_factory=list)

    def table(self, name: str) -> TableStats | None:
        return next((t for t in self.tables if t.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["days"] = [{**asdict(d), "day": d.day.isoformat()} for d in self.days]
        return out


def _no_schema(engine: Engine) -> AuditorError:
    shown = engine.url.render_as_string(hide_password=True)
    return AuditorError(f"database {shown} has no auditor schema "
                        "(fix: run `auditor db upgrade`)")


def collect(engine: Engine, *, days: int = 14, exact: bool = False,
            today: date | None = None, dbstat: bool = True) -> StoreStats:
    """The store's size. ``days``: how many UTC days (today included) of responses per
    day; ``exact``: count every table row by row on PostgreSQL too; ``dbstat=False``
    reports SQLite as if its library had no ``dbstat`` table."""
    if days < 1:
        raise AuditorError(f"--days must be at least 1, not {days}")
    revision = db.current_revision(engine)
    names = sorted(inspect(engine).get_table_names())
    if revision is None or "responses" not in names:
        raise _no_schema(engine)
    names = [n for n in names if n != "alembic_version"]
    today = today or datetime.now(UTC).date()
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            tables, total, source, notes = _postgresql(conn, names, exact)
        elif engine.dialect.name == "sqlite":
            tables, total, source, notes = _sqlite(conn, engine, names, dbstat)
        else:  # pragma: no cover - the store supports these two
            tables = [TableStats(n, _count(conn, n)) for n in names]
            total, source, notes = 0, "unknown", [f"sizes unknown on {engine.dialect.name}"]
        growth = _growth(conn, engine.dialect.name, today, days)
    responses = next(t for t in tables if t.name == "responses")
    per_row = (responses.bytes / responses.rows
               if responses.bytes is not None and responses.rows else None)
    for d in growth:
        d.approx_bytes = 0 if d.rows == 0 else None if per_row is None else round(
            d.rows * per_row)
    return StoreStats(engine.dialect.name, revision, db.head_revision(), total, source,
                      tables, growth, notes)


def _count(conn: Connection, name: str) -> int:
    return int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())


def _postgresql(conn: Connection, names: list[str], exact: bool
                ) -> tuple[list[TableStats], int, str, list[str]]:
    rows = conn.execute(text(
        "SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid), "
        "pg_indexes_size(c.oid) FROM pg_class c "
        "WHERE c.relkind IN ('r', 'p') AND c.relnamespace = to_regnamespace(current_schema())"
    )).all()
    info = {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}
    tables = []
    for name in names:
        estimate, size, indexes = info.get(name, (-1, 0, 0))
        if not exact and estimate > ESTIMATE_ABOVE:
            tables.append(TableStats(name, estimate, True, size, indexes))
        else:
            tables.append(TableStats(name, _count(conn, name), False, size, indexes))
    total = int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    notes = []
    if any(t.rows_estimated for t in tables):
        notes.append(f"rows of tables over {ESTIMATE_ABOVE:,} rows are PostgreSQL's estimate "
                     "(--exact counts them)")
    return tables, total, "pg_total_relation_size", notes


def _sqlite(conn: Connection, engine: Engine, names: list[str], dbstat: bool
            ) -> tuple[list[TableStats], int, str, list[str]]:
    tables = [TableStats(n, _count(conn, n)) for n in names]
    page_size = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
    pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar_one())
    free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
    path = engine.url.database
    on_disk = pages * page_size
    if path and path != ":memory:":
        on_disk = sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))
    notes = [f"{pages:,} pages of {page_size:,} bytes, {free:,} of them free"]
    sizes: dict[str, tuple[int, int]] | None = None
    if dbstat:
        try:
            owner = dict(conn.exec_driver_sql(
                "SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"
            ).tuples().all())
            sizes = {}
            for name, size in conn.exec_driver_sql(
                    "SELECT name, sum(pgsize) FROM dbstat GROUP BY name").tuples():
                tbl = owner.get(name, name)
                whole, idx = sizes.get(tbl, (0, 0))
                sizes[tbl] = (whole + int(size), idx + (int(size) if tbl != name else 0))
        except DatabaseError:  # "no such table: dbstat": built without SQLITE_ENABLE_DBSTAT_VTAB
            sizes = None
    if sizes is None:
        notes.append("per-table sizes unknown: this SQLite has no dbstat table")
        return tables, on_disk, "file", notes
    for t in tables:
        t.bytes, t.index_bytes = sizes.get(t.name, (0, 0))
    return tables, on_disk, "dbstat", notes


def _growth(conn: Connection, dialect: str, today: date, days: int) -> list[DayGrowth]:
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    end = start + timedelta(days=days)
    col = Response.collected_at
    if dialect == "postgresql":
        day: Any = func.date(func.timezone("UTC", col))
    else:  # SQLite holds UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'
        day = func.date(col)
    q = (select(day, func.count(), func.count().filter(Response.imported.is_(True)))
         .where(col >= start, col < end).group_by(day))
    found: dict[date, tuple[int, int]] = {}
    for d, n, imported in conn.execute(q).tuples():
        key = d if isinstance(d, date) else date.fromisoformat(str(d))
        found[key] = (int(n), int(imported))
    out = []
    for i in range(days):
        d = first + timedelta(days=i)
        n, imported = found.get(d, (0, 0))
        out.append(DayGrowth(d, n, imported, None))
    return out
