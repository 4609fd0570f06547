"""Why power does not grow with canaries: sampling noise against the spread between models.

    .venv/bin/python -m benchmarks.growth --budgets 50 100 200 400 --seeds 3

For each budget, protected model and representation: the typical standard error of one
control's mean similarity to the protected model (its per-canary SD over the square root
of the canaries) over the SD of the controls' means (the model-level null's spread), and
each positive case's distance from the controls' mean in units of that SD. When the
first is small the null is the difference between models, which more canaries do not
shrink; when the second is flat in the budget, no model-level test gains power from more
canaries (BENCHMARKS.md, "Free text, round two").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from auditor.stats.similarity import canary_similarities

from .bench_data import bench_available, common_prompt_ids, draw_canaries, load_cases, load_outputs

__all__ = ["main", "spread"]

REPS = ("word", "layout", "style")


def spread(cases: Path | None, n: int, seeds: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(SE / between-model SD per representation, mean over protected models and seeds;
    each positive suspect's distance per representation, mean over seeds)."""
    cf = load_cases(cases)
    models = cf.models()
    ids = common_prompt_ids(models)
    outs = {m: load_outputs(m) for m in models}
    ratios: list[np.ndarray] = []
    dist: dict[str, list[np.ndarray]] = {}
    for seed in range(seeds):
        can = draw_canaries(ids, n, seed)
        sim = canary_similarities({m: {c: [outs[m][c]] for c in can} for m in models}, can,
                                  reps=REPS)
        for p in cf.protected_models():
            pi = sim.index(p)
            v = sim.sims[:, :, [sim.index(c) for c in cf.controls if c != p], pi]  # (R, Q, m)
            means = v.mean(axis=1)
            between = means.std(axis=1, ddof=1)
            ratios.append(v.std(axis=1, ddof=1).mean(axis=1) / np.sqrt(n) / between)
            for c in cf.cases:
                if c.protected == p and c.label == 1:
                    x = sim.sims[:, :, sim.index(c.suspect), pi].mean(axis=1)
                    dist.setdefault(c.suspect, []).append((x - means.mean(axis=1)) / between)
    return np.mean(ratios, axis=0), {k: np.mean(d, axis=0) for k, d in dist.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--cases", type=Path, default=None)
    args = ap.parse_args(argv)
    if not bench_available():
        print("provenance-bench not found (set PROVENANCE_BENCH)", file=sys.stderr)
        return 2
    for n in args.budgets:
        ratio, dist = spread(args.cases, n, args.seeds)
        print(f"canaries={n} SE/between-model SD: "
              + ", ".join(f"{r} {x:.2f}" for r, x in zip(REPS, ratio, strict=True)), flush=True)
        print("   distance in model SDs (" + "/".join(REPS) + "): " + "; ".join(
            f"{s} " + "/".join(f"{x:.1f}" for x in d) for s, d in dist.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
