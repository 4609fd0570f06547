"""``auditor probe --once`` and ``auditor fingerprint``: collect evidence now."""

from __future__ import annotations

__all__ = ["register"]

import asyncio
import signal
import sys
from collections.abc import Sequence

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from auditor.cli._common import console, console_err, settings, store
from auditor.errors import AuditorError
from auditor.probe import CycleRun, RunOptions, prepare, resume, unloadable
from auditor.store import Store
from auditor.store.attempts import UNFINISHED
from auditor.store.models import Attempt, Endpoint


def _pending(st: Store, endpoints: Sequence[str] | None) -> int:
    with st.session() as session:
        q = select(func.count()).select_from(Attempt).where(Attempt.status.in_(UNFINISHED))
        if endpoints:
            q = q.join(Endpoint, Endpoint.id == Attempt.endpoint_id).where(
                Endpoint.name.in_(list(endpoints)))
        return int(session.scalar(q) or 0)


async def _run(st: Store, endpoints: Sequence[str] | None, total: int) -> list[CycleRun]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with Progress(TextColumn("probing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console_err, transient=False) as progress:
        task = progress.add_task("probe", total=total)
        options = RunOptions(stop=stop, on_progress=lambda n: progress.advance(task, n))
        runs = await resume(st, settings(), endpoints=endpoints, options=options)
    if stop.is_set():
        console_err.print("stopped: unfinished attempts are kept and resume on the next run")
    return runs


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _table(runs: list[CycleRun]) -> Table:
    table = Table("cycle", "endpoint", "sent", "ok", "failed", "skipped", "retried", "tokens",
                  "cost", "p50", "p95", title="probe results")
    for run in runs:
        for name, s in sorted(run.summary.items()):
            failed = ", ".join(f"{k} {v}" for k, v in sorted(s["failed"].items())) or "0"
            skipped = ", ".join(f"{k} {v}" for k, v in sorted(s["skipped"].items())) or "0"
            table.add_row(
                str(run.cycle_id), name, str(s["sent"]), str(s["ok"]), failed, skipped,
                str(s["retried"]), str(s["prompt_tokens"] + s["completion_tokens"]),
                f"${s['cost_usd']:.4f}", _fmt_ms(s["p50_ms"]), _fmt_ms(s["p95_ms"]))
    return table


def _collect(kind: str, endpoint: list[str] | None, canary: list[str] | None,
             plan: bool) -> None:
    s = settings()
    st = store()
    try:
        if plan:
            planned = prepare(st, s, kind=kind, endpoints=endpoint or None,
                              canaries=canary or None)
            note = (f" ({planned.skipped_logprob} logprob samples left out: their endpoints "
                    "do not return log-probabilities)" if planned.skipped_logprob else "")
            console_err.print(f"planned cycle {planned.cycle_id}: "
                              f"{planned.attempts} attempts{note}")
        for problem in unloadable(st):
            console_err.print(f"[yellow]warning:[/] {escape(str(problem))}", soft_wrap=True)
        names = endpoint or None
        if kind == "fingerprint" and not names:
            names = [e.name for e in s.by_role("protected")]
        # The recorder's thread waits for the GIL after each SQLite call; a shorter switch
        # interval than the default 5 ms lets it get on while the event loop is busy.
        sys.setswitchinterval(0.001)
        runs = asyncio.run(_run(st, names, _pending(st, names)))
    finally:
        st.close()
    if not runs:
        console.print("nothing to do: no unfinished attempts")
        return
    console.print(_table(runs))


def probe(
    once: bool = typer.Option(False, "--once", help="Plan one cycle now and run it."),
    resume_only: bool = typer.Option(False, "--resume",
                                     help="Only finish unfinished cycles; plan nothing."),
    endpoint: list[str] = typer.Option(None, "--endpoint", "-e", help="Only this endpoint "
                                       "(repeatable)."),
    canary: list[str] = typer.Option(None, "--canary", help="Only this canary id (repeatable)."),
) -> None:
    """Send the canaries to the endpoints and record every answer in the ledger.

    Unfinished attempts of earlier cycles (a crash, a stop) are finished first.
    """
    if not once and not resume_only:
        raise AuditorError("say what to run: --once (one cycle now) or --resume "
                           "(finish interrupted cycles); the daemon runs scheduled cycles")
    _collect("probe", endpoint, canary, plan=once)


def fingerprint(
    endpoint: list[str] = typer.Option(None, "--endpoint", "-e",
                                       help="Protected endpoint (default: every one)."),
    canary: list[str] = typer.Option(None, "--canary", help="Only this canary id (repeatable)."),
) -> None:
    """Probe the protected endpoint(s) to collect the fingerprint, stored and chained."""
    _collect("fingerprint", endpoint, canary, plan=True)


def register(app: typer.Typer) -> None:
    app.command("probe")(probe)
    app.command("fingerprint")(fingerprint)
