"""``auditor probe --once`` and ``auditor fingerprint``: collect evidence now."""

from __future__ import annotations

__all__ = ["register"]

import asyncio
import signal
import sys
from collections.abc import Sequence

import typer
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from auditor.cli._common import console, console_err, settings, store
from auditor.config import Settings
from auditor.endpoints import base_url
from auditor.errors import AuditorError
from auditor.probe import CycleRun, RunOptions, prepare, resume, unloadable
from auditor.store import Store
from auditor.store.attempts import UNFINISHED
from auditor.store.models import Attempt, Cycle, Endpoint


def _pending(st: Store, endpoints: Sequence[str] | None) -> int:
    with st.session() as session:
        q = select(func.count()).select_from(Attempt).where(Attempt.status.in_(UNFINISHED))
        if endpoints:
            q = q.join(Endpoint, Endpoint.id == Attempt.endpoint_id).where(
                Endpoint.name.in_(list(endpoints)))
        return int(session.scalar(q) or 0)


async def _run(st: Store, endpoints: Sequence[str] | None,
               total: int) -> tuple[list[CycleRun], bool]:
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
    return runs, stop.is_set()


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _table(runs: list[CycleRun]) -> Table:
    table = Table("cycle", "endpoint", "sent", "ok", "failed", "skipped", "retried", "tokens",
                  "cost", "p50", "p95", "queued p50", title="probe results")
    for run in runs:
        for name, s in sorted(run.summary.items()):
            failed = ", ".join(f"{k} {v}" for k, v in sorted(s["failed"].items())) or "0"
            skipped = ", ".join(f"{k} {v}" for k, v in sorted(s["skipped"].items())) or "0"
            table.add_row(
                str(run.cycle_id), name, str(s["sent"]), str(s["ok"]), failed, skipped,
                str(s["retried"]), str(s["prompt_tokens"] + s["completion_tokens"]),
                f"${s['cost_usd']:.4f}", _fmt_ms(s["p50_ms"]), _fmt_ms(s["p95_ms"]),
                _fmt_ms(s.get("queue_p50_ms")))
    return table


def _print_summary(runs: list[CycleRun], s: Settings) -> list[str]:
    """The results table, or one block per endpoint where the table would not fit (80
    columns, no terminal); then per endpoint its last error and URL. Returns the
    endpoints without a single answer."""
    table = _table(runs)
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if natural <= console.width:
        console.print(table)
    else:  # plain lines wrap at any width; table cells would be cut to "bad…"
        columns = [(str(c.header), [str(cell) for cell in c.cells]) for c in table.columns]
        for i in range(table.row_count):
            (_, cycle), (_, name), *rest = ((h, cells[i]) for h, cells in columns)
            console.print(f"cycle {cycle} · {name}", highlight=False, markup=False)
            console.print("  " + "  ".join(f"{h} {v}" for h, v in rest), highlight=False,
                          markup=False)
    oks: dict[str, int] = {}
    for run in runs:
        for name, summary in sorted(run.summary.items()):
            oks[name] = oks.get(name, 0) + summary["ok"]
            last = summary.get("last_error")
            if last is None:
                continue
            ep = next((e for e in s.endpoints if e.name == name), None)
            url = base_url(ep) if ep is not None else "(not in the config)"
            console.print(f"{name}: last error {last['class']}: {last['message']} ({url})",
                          highlight=False, markup=False)
    return sorted(name for name, n in oks.items() if n == 0)


def _collect(kind: str, endpoint: list[str] | None, canary: list[str] | None,
             plan: bool, new_cycle: bool = False) -> None:
    s = settings()
    st = store()
    try:
        names = endpoint or None
        if kind == "fingerprint" and not names:
            names = [e.name for e in s.by_role("protected")]
        if plan:
            _plan(st, s, kind, endpoint, canary, new_cycle)
        for problem in unloadable(st):
            console_err.print(f"[yellow]warning:[/] {escape(str(problem))}", soft_wrap=True)
        # The recorder's thread waits for the GIL after each SQLite call; a shorter switch
        # interval than the default 5 ms lets it get on while the event loop is busy.
        sys.setswitchinterval(0.001)
        runs, stopped = asyncio.run(_run(st, names, _pending(st, names)))
    finally:
        st.close()
    if not runs:
        console.print("nothing to do: no unfinished attempts")
        return
    failing = _print_summary(runs, s)
    if stopped:
        raise SystemExit(130)
    if failing:
        console_err.print(f"[bold red]error:[/] no successful answer from {', '.join(failing)}; "
                          "the last error of each is above", highlight=False)
        raise SystemExit(1)


def _plan(st: Store, s: Settings, kind: str, endpoint: list[str] | None,
          canary: list[str] | None, new_cycle: bool) -> None:
    """Plans a cycle, leaving out endpoints that still have one unfinished (they resume
    instead) unless ``new_cycle``."""
    chosen = endpoint or None
    if not new_cycle:
        busy = _unfinished_endpoints(st, kind)
        if busy:
            wanted = chosen or [e.name for e in (
                s.by_role("protected") if kind == "fingerprint" else s.endpoints)
                if e.enabled]
            chosen = [n for n in wanted if n not in busy]
            held = sorted(n for n in wanted if n in busy)
            if held:
                console_err.print(f"resuming the unfinished {kind} cycle of {', '.join(held)} "
                                  "instead of planning a new one (--new-cycle plans one anyway)",
                                  highlight=False)
            if not chosen:
                return
    planned = prepare(st, s, kind=kind, endpoints=chosen, canaries=canary or None)
    note = (f" ({planned.skipped_logprob} logprob samples left out: their endpoints "
            "do not return log-probabilities)" if planned.skipped_logprob else "")
    console_err.print(f"planned cycle {planned.cycle_id}: {planned.attempts} attempts{note}")


def _unfinished_endpoints(st: Store, kind: str) -> set[str]:
    with st.session() as session:
        return set(session.scalars(
            select(Endpoint.name).join(Attempt, Attempt.endpoint_id == Endpoint.id)
            .join(Cycle, Cycle.id == Attempt.cycle_id)
            .where(Attempt.status.in_(UNFINISHED), Cycle.kind == kind).distinct()))


def probe(
    once: bool = typer.Option(False, "--once", help="Plan one cycle now and run it."),
    resume_only: bool = typer.Option(False, "--resume",
                                     help="Only finish unfinished cycles; plan nothing."),
    endpoint: list[str] = typer.Option(None, "--endpoint", "-e", help="Only this endpoint "
                                       "(repeatable)."),
    canary: list[str] = typer.Option(None, "--canary", help="Only this canary id (repeatable)."),
    new_cycle: bool = typer.Option(False, "--new-cycle", help="With --once: plan a new cycle "
                                   "even for endpoints that still have an unfinished one."),
) -> None:
    """Send the canaries to the endpoints and record every answer in the ledger.

    Unfinished attempts of earlier cycles (a crash, a stop) are finished first; --once
    plans no new cycle for an endpoint that still has one unfinished.
    """
    if not once and not resume_only:
        raise AuditorError("say what to run: --once (one cycle now) or --resume "
                           "(finish interrupted cycles); the daemon runs scheduled cycles")
    _collect("probe", endpoint, canary, plan=once, new_cycle=new_cycle)


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
