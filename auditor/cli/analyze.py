"""``auditor analyze``: verdicts on what is stored."""

from __future__ import annotations

import json

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from auditor.cli._common import console, console_err, open_session, settings
from auditor.store import sync_endpoints
from auditor.store.models import Endpoint
from auditor.verdicts import flagged_control_lines, verdict_json, verdict_table


def analyze(
    suspect: list[str] = typer.Option(
        None, "--suspect", "-s",
        help="Only this suspect (repeatable; a control name scores it as a pseudo-suspect)."),
    as_json: bool = typer.Option(False, "--json", help="Print the full results as JSON."),
    full: bool = typer.Option(
        False, "--full",
        help="Recompute the feature cache from every raw response first, and check it: exit 1 "
             "if a stored sum disagreed (it is replaced)."),
) -> None:
    """Test every suspect against every protected model on the stored responses.

    Each free-text answer is featurised once and kept as per-(endpoint, canary) sums (the
    feature cache), so an analysis reads only what is new; --full recomputes them all.
    """
    from auditor.analysis import AnalysisProblem, analyze_all

    s = settings()
    for name in suspect or []:
        s.endpoint(name)  # an unknown name is an error naming the known ones
    with open_session() as session, Progress(
            TextColumn("featurising new answers"), BarColumn(), TaskProgressColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console_err,
            transient=True) as bar:
        sync_endpoints(session, s)
        problems: list[AnalysisProblem] = []
        task = bar.add_task("features", total=None, visible=False)
        verdicts = analyze_all(
            session, s, suspects=suspect or None, problems=problems, full=full,
            progress=lambda done, total: bar.update(task, completed=done, total=total,
                                                    visible=True))
        names = {e.id: e.name for e in session.query(Endpoint)}
    cache = next((v.params.get("features") for v in verdicts if v.params.get("features")), None)
    mismatched = int((cache or {}).get("mismatched_sums") or 0)
    if as_json:
        print(json.dumps([verdict_json(v, names) for v in verdicts], indent=2))
        if mismatched:
            raise typer.Exit(1)
        return
    if full and cache:
        console.print(f"feature cache rebuilt from {cache['answers_added']} free-text answers "
                      f"(basis {cache['basis'][:12]}, fitted on {cache['basis_answers']}); "
                      + (f"{mismatched} stored sums disagreed and were replaced"
                         if mismatched else "every stored sum agreed"),
                      markup=False, highlight=False)
    for p in problems:  # channels (or pairs) without a result, and why
        what = "failed" if p.failed else "left out"
        console.print(f"{p.pair}: {p.channel if p.channel != '*' else 'analysis'} {what}: "
                      f"{p.reason}", markup=False, highlight=False)
    if not verdicts:
        console.print("no verdicts: no suspect has responses to canaries the protected model "
                      "also answered, with enough controls (run `auditor fingerprint` and "
                      "`auditor probe --once`)")
        return
    console.print(verdict_table(verdicts, names, s.analysis.alpha))
    for line in flagged_control_lines(verdicts, names):
        console.print(line, markup=False, highlight=False)
    if mismatched:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
