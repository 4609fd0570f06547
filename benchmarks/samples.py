"""Power against samples per canary in the demo world (issue 14, item 3).

    .venv/bin/python -m benchmarks.samples --canaries 10 --samples 1 2 4 8 --draws 20

The demo's toy models (``auditor.demo``): the protected model, the 8 controls, the
independent suspect, and a *weak* student: a trigram model fitted on ``--teacher-pairs``
of the protected model's answers (to harvest prompts, never the canaries) diluted with
``--other-pairs`` answers of the independent suspect. For each number of samples per
canary, ``--draws`` fresh draws of every model's answers (temperature 0.8) go through
``stats.text_provenance``; prints the share with p <= 0.05 for the student (power) and
for the independent suspect (false positives).
"""

from __future__ import annotations

import argparse
import random

import numpy as np

from auditor.demo.lm import TrigramLM
from auditor.demo.world import build_models, canary_prompts, harvest_prompts
from auditor.stats.provenance import text_provenance

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--canaries", type=int, default=10)
    ap.add_argument("--samples", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--teacher-pairs", type=int, default=40)
    ap.add_argument("--other-pairs", type=int, default=400)
    ap.add_argument("--alpha", type=float, default=0.05)
    args = ap.parse_args(argv)
    lms = build_models().lms
    rng = random.Random(11)
    harvest = harvest_prompts()
    teacher, other = lms["protected"], lms["indie-suspect"]
    pairs = [(p, teacher.generate(p, rng)) for p in rng.sample(harvest, args.teacher_pairs)]
    pairs += [(p, other.generate(p, rng)) for p in rng.choices(harvest, k=args.other_pairs)]
    lms["student"] = TrigramLM().fit(pairs)
    canaries = canary_prompts()[0][: args.canaries]
    controls = sorted(n for n in lms if n.startswith("control-"))
    for k in args.samples:
        hits: dict[str, list[float]] = {"student": [], "indie-suspect": []}
        for d in range(args.draws):
            r = random.Random(1000 * k + d)

            def answers(name: str, r: random.Random = r, k: int = k) -> dict[str, list[str]]:
                return {c: [lms[name].generate(c, r, 0.8) for _ in range(k)] for c in canaries}

            ctrl = {c: answers(c) for c in controls}
            prot = answers("protected")
            for s in hits:
                p = text_provenance(prot, answers(s), ctrl, suspect_name=s, n_boot=0).p_value
                hits[s].append(p)
        stu, ind = np.array(hits["student"]), np.array(hits["indie-suspect"])
        print(f"samples={k} canaries={args.canaries} student: power "
              f"{np.mean(stu <= args.alpha):.2f} (median p {np.median(stu):.3g}); "
              "independent suspect: "
              f"FPR {np.mean(ind <= args.alpha):.2f} (median p {np.median(ind):.3g}) "
              f"draws={args.draws}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
