"""``auditor abandon``: give up unfinished attempts instead of resuming them."""

from __future__ import annotations

__all__ = ["register"]

import typer

from auditor.cli._common import console, open_session, settings
from auditor.store import sync_endpoints
from auditor.store.attempts import abandon as abandon_attempts


def abandon(
    cycle: int = typer.Option(None, "--cycle", help="Only this cycle's attempts."),
    endpoint: list[str] = typer.Option(None, "--endpoint", "-e",
                                       help="Only this endpoint's attempts (repeatable)."),
) -> None:
    """Close unfinished attempts (planned, interrupted, running) as skipped, so that
    `probe --resume` and the daemon do not send them.

    Stop daemons and workers first: an attempt one of them is sending is abandoned too.
    Nothing is deleted; the attempts stay in the store with error class `abandoned`.
    """
    s = settings()
    with open_session() as session:
        ids = None
        if endpoint:
            for name in endpoint:
                s.endpoint(name)  # an unknown name is an error naming the known ones
            rows = sync_endpoints(session, s)
            ids = [rows[n].id for n in endpoint]
        n = abandon_attempts(session, cycle_id=cycle, endpoint_ids=ids)
    console.print(f"abandoned {n} unfinished attempt(s)")


def register(app: typer.Typer) -> None:
    app.command("abandon")(abandon)
