"""``auditor daemon``, ``auditor worker`` and ``auditor status``."""

from __future__ import annotations

__all__ = ["register"]

import json
import logging
import os
import sys
from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from auditor.cli._common import console, open_session, settings, state
from auditor.config import load_settings
from auditor.logs import setup_logging

_LOG_FILE = typer.Option(
    None, "--log-file", help="Append JSON log lines to this file instead of stderr "
    "(reopened after logrotate moves it).", show_default=False)


def _run(role: str, log_file: Path | None, poll: float) -> None:
    from auditor.daemon import Daemon, run_blocking

    # Validate up front: a broken config stops the start with file:line (exit 2).
    initial = load_settings(state.config_path)
    redactor = setup_logging(initial, file=log_file)
    daemon = Daemon(state.config_path, role=role, redactor=redactor, poll_seconds=poll)
    # As `auditor probe`: the recorder thread gets the GIL sooner while the loop is busy.
    sys.setswitchinterval(0.001)

    def hard_exit(code: int) -> None:
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code)

    code = run_blocking(daemon, on_exit=hard_exit)
    logging.shutdown()
    raise typer.Exit(code)


def daemon(
    log_file: Path = _LOG_FILE,
    poll: float = typer.Option(2.0, help="Seconds between looks for claimable work.",
                               min=0.1),
) -> None:
    """Run the scheduler: probe cycles on each endpoint's schedule, analysis and alerts.

    Stops on SIGTERM/SIGINT (in-flight requests get daemon.shutdown_grace_seconds), reloads
    config and canaries on SIGHUP or when the files change. Any number of daemons and
    workers may share one PostgreSQL database.
    """
    _run("daemon", log_file, poll)


def worker(
    log_file: Path = _LOG_FILE,
    poll: float = typer.Option(2.0, help="Seconds between looks for claimable work.",
                               min=0.1),
) -> None:
    """Only execute planned attempts claimed from the shared database (no scheduling).

    Start as many as you like on any machine pointing at the same PostgreSQL database.
    """
    _run("worker", log_file, poll)


def _when(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "-"
    delta = (value - now).total_seconds()
    ago = abs(delta)
    unit = (f"{ago:.0f}s" if ago < 120 else f"{ago / 60:.0f}m" if ago < 7200
            else f"{ago / 3600:.1f}h" if ago < 172800 else f"{ago / 86400:.1f}d")
    rel = f"in {unit}" if delta > 0 else f"{unit} ago"
    return f"{value.strftime('%Y-%m-%d %H:%M:%S')}Z ({rel})"


def status(
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """Show each endpoint's last cycle, next fire time, failures and budget, and daemon liveness."""
    from auditor.status import collect

    s = settings()
    with open_session() as session:
        result = collect(session, s)
    if as_json:
        console.print_json(json.dumps(result.as_dict()))
        return
    now = result.now
    table = Table("endpoint", "role", "last cycle", "outcome", "next fire",
                  "failures (24h)", "budget today", title="endpoints")
    for e in result.endpoints:
        if e.last_cycle_id is None:
            last, outcome = "never", "-"
        else:
            last = f"#{e.last_cycle_id} {e.last_cycle_status} {_when(e.last_cycle_planned_at, now)}"
            o = e.last_cycle_outcome
            outcome = f"ok {o['ok']}, failed {o['failed']}, skipped {o['skipped']}"
            if o["pending"]:
                outcome += f", pending {o['pending']}"
        failures = ", ".join(f"{k} {v}" for k, v in sorted(e.failures_last_day.items())) or "0"
        budget = f"${e.spent_today_usd:.2f}" + (
            f" of ${e.daily_budget_usd:.2f}" if e.daily_budget_usd is not None else "")
        table.add_row(e.name + ("" if e.enabled else " (disabled)"), e.role, last, outcome,
                      _when(e.next_fire, now) if e.enabled else "-", failures, budget)
    console.print(table)
    procs = Table("process", "role", "status", "last heartbeat", "started", "cycles in flight",
                  title="daemons and workers")
    shown = [p for p in result.processes if p.alive or p.status != "stopped"][:50]
    for p in shown:
        procs.add_row(p.id, p.role, "[green]alive[/]" if p.alive else f"[red]{p.status}[/]",
                      _when(p.beat_at, now), _when(p.started_at, now),
                      str(len((p.info or {}).get("cycles_in_flight", []))))
    console.print(procs)
    for g in result.analysis_gaps:  # channels the last analysis could not test
        what = "failed" if g.get("failed") else "left out"
        console.print(f"analysis: {g.get('pair')}: {g.get('channel')} {what}: "
                      f"{g.get('reason')}", markup=False, highlight=False)
    if not result.daemon_alive:
        console.print("[yellow]no daemon is alive[/]: start one with `auditor daemon` "
                      "(or check its logs)")


def register(app: typer.Typer) -> None:
    app.command("daemon")(daemon)
    app.command("worker")(worker)
    app.command("status")(status)
