"""``auditor analyze``: verdicts on what is stored."""

from __future__ import annotations

import json
import math

import typer
from rich import box
from rich.table import Column, Table

from auditor.cli._common import console, open_session, settings
from auditor.store import sync_endpoints
from auditor.store.models import Endpoint, Verdict


def plain_words(v: Verdict, alpha: float) -> str:
    if v.significant:
        return "DERIVED"
    if v.p_value <= alpha:
        return "suggestive"
    return "not derived"


def _fmt(x: float | None, spec: str = ".2g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def verdict_table(verdicts: list[Verdict], names: dict[int, str], alpha: float) -> Table:
    protected = sorted({names[v.protected_id] for v in verdicts})
    one = len(protected) == 1
    columns = ["suspect", *([] if one else ["protected"]), "p", "q", "e", "effect (CI)", "n",
               "verdict"]
    table = Table(*(Column(c, no_wrap=True) for c in columns), box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True,
                  title=f"Verdicts against {protected[0]}" if one else "Verdicts", caption=(
                      f"p: model-level p-value; q: after FDR control across suspects; "
                      f"DERIVED when q <= {alpha:g}. e: anytime-valid monitoring e-value "
                      f"(alarm at {1 / alpha:g}). effect: control SDs above the controls. "
                      "n: canaries. Suggestive: p <= alpha but not after FDR."))
    for v in verdicts:
        ci = f"{_fmt(v.effect, '.1f')} ({_fmt(v.effect_low, '.1f')}..{_fmt(v.effect_high, '.1f')})"
        style = "bold red" if v.significant else None
        row = [names[v.suspect_id] + (f" ({v.segment})" if v.segment else "")]
        if not one:
            row.append(names[v.protected_id])
        row += [_fmt(v.p_value), _fmt(v.q_value), _fmt(v.e_value), ci, str(v.n_canaries),
                plain_words(v, alpha)]
        table.add_row(*row, style=style)
    return table


def verdict_json(v: Verdict, names: dict[int, str]) -> dict[str, object]:
    return {
        "suspect": names[v.suspect_id], "protected": names[v.protected_id],
        "segment": v.segment, "method": v.method, "p_value": v.p_value, "q_value": v.q_value,
        "e_value": v.e_value, "statistic": v.statistic, "effect": v.effect,
        "effect_ci": [v.effect_low, v.effect_high], "significant": v.significant,
        "n_canaries": v.n_canaries, "n_samples": v.n_samples, "controls": v.controls,
        "canaries": v.canaries, "channels": v.channels, "contributions": v.contributions,
        "params": v.params, "code_version": v.code_version,
        "created_at": v.created_at.isoformat(),
    }


def analyze(
    suspect: list[str] = typer.Option(
        None, "--suspect", "-s",
        help="Only this suspect (repeatable; a control name scores it as a pseudo-suspect)."),
    as_json: bool = typer.Option(False, "--json", help="Print the full results as JSON."),
) -> None:
    """Test every suspect against every protected model on the stored responses."""
    from auditor.analysis import AnalysisProblem, analyze_all

    s = settings()
    for name in suspect or []:
        s.endpoint(name)  # an unknown name is an error naming the known ones
    with open_session() as session:
        sync_endpoints(session, s)
        problems: list[AnalysisProblem] = []
        verdicts = analyze_all(session, s, suspects=suspect or None, problems=problems)
        names = {e.id: e.name for e in session.query(Endpoint)}
    if as_json:
        print(json.dumps([verdict_json(v, names) for v in verdicts], indent=2))
        return
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


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
