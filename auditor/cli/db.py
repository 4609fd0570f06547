"""``auditor db``: schema migrations and the store's size."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from auditor.cli._common import console, settings
from auditor.config import _redact_url
from auditor.errors import AuditorError, Problem
from auditor.store import db

app = typer.Typer(help="Database schema: apply or roll back migrations, show the revision; "
                  "rows, size and growth of the store.",
                  no_args_is_help=True)


@contextmanager
def _engine() -> Iterator[Engine]:
    """The configured database's engine, checked reachable, disposed afterwards."""
    engine = db.make_engine(settings().resolved_database_url())
    try:
        db.check_reachable(engine)
        yield engine
    finally:
        engine.dispose()


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    s = settings()
    with _engine() as engine:
        db.upgrade(engine, revision)
        console.print(f"database {_redact_url(s.database_url)} at revision "
                      f"{db.current_revision(engine)}")


@app.command()
def downgrade(
    revision: str = typer.Argument(..., help="Target revision, or 'base'."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Roll migrations back to REVISION ('base' drops every table: evidence is lost).

    Asks first; without a terminal to ask on, it needs --yes.
    """
    s = settings()
    shown = _redact_url(s.database_url)
    what = ("drops every table" if revision == "base"
            else f"drops the tables and columns added after {revision}")
    if not yes:
        asked = sys.stdin.isatty() and typer.confirm(
            f"Downgrading {shown} to {revision} {what}; the evidence in them is lost. "
            "Continue?", default=False)
        if not asked:
            raise AuditorError(f"not downgrading {shown}: it {what}", [Problem(
                "not confirmed", fix="back up the database, then run "
                f"`auditor db downgrade {revision} --yes`")])
    with _engine() as engine:
        db.downgrade(engine, revision)
        console.print(f"database at revision {db.current_revision(engine) or 'base'}")


@app.command()
def current() -> None:
    """Show the database's revision and the code's newest one."""
    with _engine() as engine:
        console.print(f"database: {db.current_revision(engine) or 'none'}  "
                      f"code: {db.head_revision()}")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


_SOURCES = {
    "pg_total_relation_size": "pg_total_relation_size (table, TOAST and indexes) and "
                              "pg_database_size",
    "dbstat": "SQLite's dbstat table (pages of the table and its indexes); on disk: the "
              "file and its write-ahead log",
    "file": "the file and its write-ahead log only",
}


@app.command()
def stats(
    days: int = typer.Option(14, "--days", min=1, max=3660,
                             help="Responses per day over this many UTC days (today included)."),
    exact: bool = typer.Option(False, "--exact", help="PostgreSQL: count every table row by "
                               "row (default: the planner's estimate above 1,000,000 rows)."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Rows and on-disk size per table, the whole database's size, responses per day.

    Reads only; a database without the auditor's tables is refused (`auditor db upgrade`).
    """
    from auditor.store.stats import collect

    s = settings()
    url = s.resolved_database_url()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).exists():  # do not create an empty file to report on
            raise AuditorError(f"no database at {parsed.database} "
                               "(fix: run `auditor db upgrade`, or correct database_url)")
    with _engine() as engine:
        result = collect(engine, days=days, exact=exact)
    if as_json:
        print(json.dumps({"database": _redact_url(s.database_url), **result.as_dict()},
                         indent=2))
        return
    console.print(f"{_redact_url(s.database_url)}: revision {result.revision}, "
                  f"{_size(result.database_bytes)} on disk", highlight=False, soft_wrap=True)
    t = Table()
    t.add_column("table")
    t.add_column("rows", justify="right")
    t.add_column("size", justify="right")
    t.add_column("of which indexes", justify="right")
    for row in sorted(result.tables, key=lambda r: (-(r.bytes or 0), r.name)):
        t.add_row(row.name, ("~" if row.rows_estimated else "") + f"{row.rows:,}",
                  _size(row.bytes), _size(row.index_bytes))
    console.print(t)
    console.print(f"sizes from {_SOURCES[result.size_source]}", highlight=False)
    for note in result.notes:
        console.print(f"  {note}", highlight=False)
    if result.revision != result.head:
        console.print(f"[yellow]schema at {result.revision}, the code's newest is "
                      f"{result.head}: run `auditor db upgrade`[/]")
    console.print(f"responses per day, last {days} days (UTC days of collected_at; ~size: "
                  "at the responses table's average bytes per row)", highlight=False)
    g = Table()
    g.add_column("day")
    g.add_column("responses", justify="right")
    g.add_column("imported", justify="right")
    g.add_column("~size", justify="right")
    for d in result.days:
        g.add_row(d.day.isoformat(), f"{d.rows:,}", f"{d.imported:,}", _size(d.approx_bytes))
    console.print(g)
    total = sum(d.rows for d in result.days)
    console.print(f"{total:,} responses in {days} days, {total / days:,.1f} a day on average")
