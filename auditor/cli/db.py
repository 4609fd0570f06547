"""``auditor db``: schema migrations."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from sqlalchemy import Engine

from auditor.cli._common import console, settings
from auditor.config import _redact_url
from auditor.errors import AuditorError, Problem
from auditor.store import db

app = typer.Typer(help="Database schema: apply or roll back migrations, show the revision.",
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
