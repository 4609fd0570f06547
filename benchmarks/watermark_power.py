"""Power of the watermark channel on real (toy-scale) distillation: the demo world.

For each seed: a fresh key; the protected model (a word-trigram persona) serves answers
to the distiller's own prompts (``harvest_prompts``: never the canaries), a share of them
watermarked (the rest from the same model unwatermarked); a fresh trigram student is
trained on all of them; the auditor probes ``N`` story canaries (2 samples each) on the
protected model (watermarked: the filter's windows), the student and an independent
suspect, and runs the exact de-duplicated binomial test with the Sander filter. The
canary sets are nested (the first N of the 400), so the budgets share answers.

    python -m benchmarks.watermark power --seeds 5
"""

from __future__ import annotations

import argparse
import random
import time
from collections import defaultdict

import numpy as np

from auditor.demo.lm import TrigramLM, classify
from auditor.demo.watermark import WordWatermark, demo_vocabulary
from auditor.demo.world import build_models, harvest_prompts, story_canary_prompts
from auditor.stats.watermark import radioactivity_test, windows_of
from auditor.watermark.core import GreenList
from auditor.watermark.tokenizer import word_level_tokenizer

__all__ = ["run_power"]

SAMPLES = 2


def run_power(args: argparse.Namespace) -> None:
    t0 = time.monotonic()
    models = build_models().lms
    tok = word_level_tokenizer(demo_vocabulary(models))
    teacher, indie = models["protected"], models["indie-suspect"]
    budgets = sorted(args.canaries)
    canaries = story_canary_prompts(max(budgets))
    if len(canaries) < max(budgets):
        raise SystemExit(f"the demo world has {len(canaries)} story canaries")
    harvest = [p for p in harvest_prompts() for _ in range(args.harvest_samples)]
    modes = ("distinct", "favourite")
    cells: dict[tuple[str, float, int], list[float]] = defaultdict(list)
    null: dict[tuple[str, int], list[float]] = defaultdict(list)
    rates: dict[tuple[str, float, int], list[float]] = defaultdict(list)
    for seed in range(args.seeds):
        rng = random.Random(1000 + seed)
        green = GreenList(rng.randbytes(32), tok.vocab_size, gamma=args.gamma,
                          delta=args.delta, h=args.h)
        wm = WordWatermark(green, tok)

        def answers(lm: TrigramLM, mark: WordWatermark | None,
                    rng: random.Random) -> list[list[int]]:
            texts = [lm.generate(p, rng, 0.8, 300, watermark=mark)
                     for p in canaries for _ in range(SAMPLES)]
            return tok.encode_batch(texts)

        prot = answers(teacher, wm, rng)
        other = answers(indie, None, rng)
        for b in budgets:
            ref = windows_of(prot[: b * SAMPLES], args.h)
            for mode in modes:
                null[(mode, b)].append(radioactivity_test(other[: b * SAMPLES], green, ref,
                                                          tuples=mode).p_value)
        for share in args.shares:
            order = list(range(len(harvest)))
            rng.shuffle(order)
            marked = set(order[: max(1, round(share * len(harvest)))])
            pairs = [(p, teacher.generate(p, rng, 1.0, 200,
                                          watermark=wm if i in marked else None))
                     for i, p in enumerate(harvest)]
            student = TrigramLM().fit(pairs)
            stud = answers(student, None, rng)
            for b in budgets:
                ref = windows_of(prot[: b * SAMPLES], args.h)
                for mode in modes:
                    r = radioactivity_test(stud[: b * SAMPLES], green, ref, tuples=mode)
                    cells[(mode, share, b)].append(r.p_value)
                    rates[(mode, share, b)].append(r.green_rate)
        print(f"seed {seed} done ({time.monotonic() - t0:.0f} s)", flush=True)
    print(f"\ngamma {args.gamma}, delta {args.delta}, h {args.h}; {args.seeds} seeds; "
          f"{len(harvest)} harvested answers, of which "
          f"{sum(classify(p) == 'story' for p in harvest)} stories; {SAMPLES} samples per canary")
    for mode in modes:
        print(f"\nscoring: {mode}; median p (median green rate)")
        print("| watermarked share | " + " | ".join(f"{b} canaries" for b in budgets) + " |")
        print("| --- |" + " --- |" * len(budgets))
        for share in args.shares:
            row = [f"{np.median(cells[(mode, share, b)]):.2g} "
                   f"({np.median(rates[(mode, share, b)]):.3f})" for b in budgets]
            print(f"| {share:g} | " + " | ".join(row) + " |")
        row = [f"{np.median(null[(mode, b)]):.2g} (min {min(null[(mode, b)]):.2g})"
               for b in budgets]
        print("| independent suspect | " + " | ".join(row) + " |")
    print(f"total {time.monotonic() - t0:.0f} s")
