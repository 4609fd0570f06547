"""Verdicts as people read them: the terminal table and the JSON of ``auditor analyze``
(also the demo's summary)."""

from __future__ import annotations

__all__ = ["plain_words", "verdict_json", "verdict_table"]

import math

from rich import box
from rich.table import Column, Table

from auditor.store.models import Verdict


def plain_words(v: Verdict, alpha: float) -> str:
    if v.significant:
        return "DERIVED"
    if v.p_value <= alpha:
        return "suggestive"
    return "insufficient evidence"


def _fmt(x: float | None, spec: str = ".2g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def verdict_table(verdicts: list[Verdict], names: dict[int, str], alpha: float) -> Table:
    protected = sorted({names[v.protected_id] for v in verdicts})
    one = len(protected) == 1
    rows = [_row(v, names, one, alpha) for v in verdicts]
    columns = ["suspect", *([] if one else ["protected"]), "p", "q", "e", "effect (CI)", "n",
               "verdict"]
    # in a narrow terminal the words wrap (a name stays whole); the numbers keep their
    # width (an 80-column terminal once showed p as "7…")
    names_width = max(len(n) for n in names.values())
    longest_word = max([len(w) for r in rows for w in r[-1].split()] or [0])
    table = Table(*(Column(c, min_width=longest_word) if c == "verdict" else
                    Column(c, min_width=names_width) if c in ("suspect", "protected") else
                    Column(c, no_wrap=True, min_width=max([len(c)] + [len(r[i]) for r in rows]))
                    for i, c in enumerate(columns)), box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True,
                  title=f"Verdicts against {protected[0]}" if one else "Verdicts", caption=(
                      f"p: model-level p-value; q: after FDR control across suspects; "
                      f"DERIVED when q <= {alpha:g}. e: anytime-valid monitoring e-value "
                      f"(alarm at {1 / alpha:g}). effect: control SDs above the controls. "
                      "n: canaries. Suggestive: p <= alpha but not after FDR."))
    for v, row in zip(verdicts, rows, strict=True):
        table.add_row(*row, style="bold red" if v.significant else None)
    return table


def _row(v: Verdict, names: dict[int, str], one: bool, alpha: float) -> list[str]:
    ci = f"{_fmt(v.effect, '.1f')} ({_fmt(v.effect_low, '.1f')}..{_fmt(v.effect_high, '.1f')})"
    row = [names[v.suspect_id] + (f" ({v.segment})" if v.segment else "")]
    if not one:
        row.append(names[v.protected_id])
    return row + [_fmt(v.p_value), _fmt(v.q_value), _fmt(v.e_value), ci, str(v.n_canaries),
                  plain_words(v, alpha)]


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


def flagged_control_lines(verdicts: list[Verdict], names: dict[int, str]) -> list[str]:
    """One line per (protected model, control) the control audit found significantly close
    to the protected model, with its p-value, and whether it was left out of the null."""
    seen: dict[tuple[str, str], str] = {}
    for v in verdicts:
        params = v.params or {}
        flagged = params.get("flagged_controls") or {}
        excluded = params.get("excluded_controls") or {}
        prot = names[v.protected_id]
        for c, p in sorted({**flagged, **excluded}.items()):
            how = "left out of the null" if c in excluded else "kept in the null"
            seen.setdefault((prot, c), (
                f"control {c} is itself significantly close to {prot} "
                f"(p = {_fmt(float(p))} against the other controls; {how}): "
                "a finding to check, it may be derived from it"))
    return [seen[k] for k in sorted(seen)]
