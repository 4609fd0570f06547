"""Run the provenance-bench protocol directly on ``auditor.stats`` (no database).

    .venv/bin/python -m benchmarks.stats_experiments --budgets 50 100 200 400 --seeds 5

For each canary budget N and seed: draw N prompts answered by every involved model,
score every case (suspect vs protected, the cases file's controls as the null) and every
control as a pseudo-suspect against each protected model (that control left out of the
pool), then print AUROC of -log10(p), TPR and FPR at alpha.

``--reps word layout style opening`` adds the opening-words representation (measured at
5 seeds: AUROC 0.913/0.940/0.956/0.963, FPR 0.050/0.025/0.030/0.025 at 50/100/200/400,
not better than the default, so it is opt-in).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from auditor.stats.provenance import DEFAULT_REPS, SCREEN_ALPHA, provenance_test
from auditor.stats.similarity import canary_similarities
from auditor.stats.text import TextConfig

from .bench_data import (
    CasesFile,
    bench_available,
    common_prompt_ids,
    draw_canaries,
    load_cases,
    load_outputs,
    score_pvalues,
)

__all__ = ["jobs", "run_budget", "main", "memo_tagger"]

_TAGS: dict[str, list[str]] = {}


def memo_tagger(texts: Sequence[str]) -> list[list[str]]:
    """``auditor.tagging``'s tagger, each distinct text tagged once per process (the same
    answers come back at every budget and seed)."""
    from auditor.tagging import tag_texts

    todo = [t for t in dict.fromkeys(texts) if t not in _TAGS]
    for t, tags in zip(todo, tag_texts(todo), strict=True):
        _TAGS[t] = tags
    return [_TAGS[t] for t in texts]


def jobs(cf: CasesFile) -> list[tuple[str, str, list[str], int]]:
    """(protected, suspect, controls, label): the cases, then controls as pseudo-suspects."""
    out = [
        (
            c.protected,
            c.suspect,
            [k for k in cf.controls if k not in (c.protected, c.suspect)],
            c.label,
        )
        for c in cf.cases
    ]
    for p in cf.protected_models():
        for c in cf.controls:
            if c != p:
                out.append((p, c, [k for k in cf.controls if k not in (c, p)], 0))
    return out


def run_budget(
    cf: CasesFile,
    n: int,
    seed: int,
    reps: tuple[str, ...],
    n_boot: int = 0,
    symmetric: bool = False,
    residual: bool = True,
    screen_alpha: float | None = None,
) -> list[tuple[str, str, int, float, dict[str, float]]]:
    """(protected, suspect, label, p-value, per-representation p-values) for every job."""
    models = cf.models()
    ids = common_prompt_ids(models)
    canaries = draw_canaries(ids, n, seed)
    outs = {m: load_outputs(m) for m in models}
    responses = {m: {c: [outs[m][c]] for c in canaries} for m in models}
    config = TextConfig(tagger=memo_tagger) if "pos" in reps else None
    sim = canary_similarities(responses, canaries, reps=reps, config=config)
    rows = []
    for p, s, ctrl, y in jobs(cf):
        r = provenance_test(
            sim, p, s, ctrl, reps=reps, seed=seed, n_boot=n_boot, symmetric=symmetric,
            residual=residual, screen_alpha=screen_alpha,
        )
        rows.append((p, s, y, r.p_value, r.channel_p_values))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--reps", nargs="+", default=list(DEFAULT_REPS))
    ap.add_argument("--cases", type=Path, default=None)
    ap.add_argument("--symmetric", action="store_true", help="exactly exchangeable composite")
    ap.add_argument("--no-residual", action="store_true",
                    help="leave the residual style correlation out of the composite")
    ap.add_argument("--screen-alpha", type=float, default=0.0,
                    help="leave out of the null the controls the audit finds significant at "
                         f"this level (e.g. {SCREEN_ALPHA}; 0, the default: every control)")
    ap.add_argument("--per-case", action="store_true", help="print median p per job")
    ap.add_argument("--channels", action="store_true",
                    help="also score each representation alone: AUROC and the ceiling TPR "
                         "(the best any threshold on it reaches at FPR <= alpha)")
    args = ap.parse_args(argv)
    if not bench_available():
        print("provenance-bench not found (set PROVENANCE_BENCH)", file=sys.stderr)
        return 2
    cf = load_cases(args.cases)
    for n in args.budgets:
        t0 = time.time()
        rows = []
        for seed in range(args.seeds):
            rows += run_budget(cf, n, seed, tuple(args.reps), symmetric=args.symmetric,
                               residual=not args.no_residual,
                               screen_alpha=args.screen_alpha or None)
        y = np.array([r[2] for r in rows])
        m = score_pvalues(np.array([r[3] for r in rows]), y, args.alpha)
        print(
            f"canaries={n} AUROC={m['auroc']:.3f} TPR@{args.alpha}={m['tpr']:.3f} "
            f"FPR@{args.alpha}={m['fpr']:.3f} cases={len(rows) // args.seeds} "
            f"seeds={args.seeds} ceiling={m['ceiling']:.3f} ({time.time() - t0:.0f}s)",
            flush=True,
        )
        if args.channels:
            for ch in rows[0][4]:
                c = score_pvalues(np.array([r[4][ch] for r in rows]), y, args.alpha)
                print(f"   {ch:16s} AUROC={c['auroc']:.3f} TPR@{args.alpha}={c['tpr']:.3f} "
                      f"FPR@{args.alpha}={c['fpr']:.3f} ceiling={c['ceiling']:.3f}")
        if args.per_case:
            agg: dict[tuple[str, str, int], list[float]] = {}
            for r in rows:
                agg.setdefault((r[0], r[1], r[2]), []).append(r[3])
            for k, v in agg.items():
                print(f"   {k[0]:20s} {k[1]:28s} {k[2]} median p={np.median(v):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
