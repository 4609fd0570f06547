"""``auditor db``: schema migrations."""

from __future__ import annotations

import typer

from auditor.cli._common import console, settings
from auditor.config import _redact_url
from auditor.store import db

app = typer.Typer(help="Database schema: apply or roll back migrations, show the revision.",
                  no_args_is_help=True)


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    s = settings()
    engine = db.make_engine(s.resolved_database_url())
    try:
        db.upgrade(engine, revision)
        console.print(f"database {_redact_url(s.database_url)} at revision "
                      f"{db.current_revision(engine)}")
    finally:
        engine.dispose()


@app.command()
def downgrade(revision: str = typer.Argument(..., help="Target revision, or 'base'.")) -> None:
    """Roll migrations back to REVISION ('base' drops every table: evidence is lost)."""
    s = settings()
    engine = db.make_engine(s.resolved_database_url())
    try:
        db.downgrade(engine, revision)
        console.print(f"database at revision {db.current_revision(engine) or 'base'}")
    finally:
        engine.dispose()


@app.command()
def current() -> None:
    """Show the database's revision and the code's newest one."""
    s = settings()
    engine = db.make_engine(s.resolved_database_url())
    try:
        console.print(f"database: {db.current_revision(engine) or 'none'}  "
                      f"code: {db.head_revision()}")
    finally:
        engine.dispose()
