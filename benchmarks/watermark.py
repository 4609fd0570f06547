"""The watermark channel measured: calibration on real text, power on real distillation.

Calibration (``calibration``): the real answers of the 66 models in the provenance
benchmark were never watermarked with our keys, so under every fresh key they are true
negatives. Each model's answers to ``--canaries`` prompts (drawn once per model, seeded)
are tokenized with a byte-level BPE tokenizer trained here on the benchmark's
instructions (a stand-in for a protected model's tokenizer.json; nothing is downloaded),
and scored with the exact de-duplicated binomial test under ``--keys`` fresh random keys,
for every h and gamma asked. Per (h, gamma): FPR at 0.05 and 0.01 with a binomial
sampling interval, and the KS test of the p-values against uniform.

Power (``power``): the demo world's word-trigram models. The protected model serves
watermarked answers (the owner's core over its word vocabulary); a distiller harvests
answers to prompts of its own, of which a share ``--shares`` is watermarked (the rest
comes from an unwatermarked protected model: the same model, other serving stack), trains
a fresh trigram student, and the auditor probes ``--canaries`` canaries. Median p of
the watermark channel (Sander filter on) per cell over ``--seeds`` worlds, and the same
for an independent suspect.

    python -m benchmarks.watermark calibration --keys 1000 --canaries 100
    python -m benchmarks.watermark power --seeds 5
    python -m benchmarks.watermark cost
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from auditor.watermark.core import GreenList
from auditor.watermark.tokenizer import ModelTokenizer

__all__ = ["CalibrationRow", "calibrate", "train_tokenizer"]


def train_tokenizer(texts: Sequence[str], vocab_size: int = 8192) -> ModelTokenizer:
    """A byte-level BPE tokenizer trained in memory on ``texts``."""
    import tokenizers as tk

    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    return ModelTokenizer(tok, f"byte-level BPE, {vocab_size} ids, trained on the prompts")


@dataclass
class _Tuples:
    """The distinct (window, token) tuples of every model for one h, as flat arrays."""

    windows: list[tuple[int, ...]]  # the distinct windows of all models
    window_index: np.ndarray  # per tuple: index into windows
    token: np.ndarray
    model_index: np.ndarray
    n_models: int


def _tuples(seqs_by_model: list[list[list[int]]], h: int, mode: str = "distinct") -> _Tuples:
    from auditor.stats.watermark import favourite_tuples, scored_tuples

    pick = favourite_tuples if mode == "favourite" else scored_tuples
    widx: dict[tuple[int, ...], int] = {}
    wi: list[int] = []
    tk: list[int] = []
    mi: list[int] = []
    for m, seqs in enumerate(seqs_by_model):
        ws, ts, _, _ = pick(seqs, h)
        wi += [widx.setdefault(w, len(widx)) for w in ws]
        tk += ts
        mi += [m] * len(ts)
    return _Tuples(list(widx), np.asarray(wi), np.asarray(tk, dtype=np.int64),
                   np.asarray(mi), len(seqs_by_model))


@dataclass
class CalibrationRow:
    """FPRs over all (model, key) p-values, with a standard error between keys (the models'
    p-values under one key share green lists, so keys are the independent units), and the
    KS test on one p-value per key (model ``k mod M`` under key ``k``): independent draws."""

    h: int
    gamma: float
    keys: int
    n_p: int
    fpr05: float
    se05: float
    fpr01: float
    se01: float
    ks_p: float
    median_scored: float

    def line(self) -> str:
        def ci(rate: float, se: float, a: float) -> str:
            floor = (a * (1 - a) / self.n_p) ** 0.5  # no spread seen: the binomial SE
            ok = "ok" if abs(rate - a) <= 2.58 * max(se, floor) else (
                "HIGH" if rate > a else "low")
            return f"{rate:.4f} ± {1.96 * se:.4f} {ok}"

        return (f"| {self.h} | {self.gamma} | {self.keys} | {self.n_p} | "
                f"{ci(self.fpr05, self.se05, 0.05)} | {ci(self.fpr01, self.se01, 0.01)} | "
                f"{self.ks_p:.3g} | {self.median_scored:.0f} |")


def calibrate(seqs_by_model: list[list[list[int]]], vocab_size: int, hs: Sequence[int],
              gammas: Sequence[float], keys: int, seed: int = 0,
              say: Any = None, mode: str = "distinct") -> list[CalibrationRow]:
    """p-values of every model under ``keys`` fresh keys, per (h, gamma)."""
    rng = random.Random(seed)
    rows = []
    for h in hs:
        t0 = time.monotonic()
        tup = _tuples(seqs_by_model, h, mode)
        scored = np.bincount(tup.model_index, minlength=tup.n_models)
        ps: dict[float, list[np.ndarray]] = {g: [] for g in gammas}
        for _ in range(keys):
            key = rng.randbytes(32)
            base = GreenList(key, vocab_size, gamma=0.5, h=h)
            seeds = base.seeds(tup.windows)[tup.window_index]
            for g in gammas:
                green = GreenList(key, vocab_size, gamma=g, h=h).green_from_seeds(seeds,
                                                                                  tup.token)
                count = np.bincount(tup.model_index, weights=green, minlength=tup.n_models)
                ps[g].append(stats.binom.sf(count - 1, scored, g))
        for g in gammas:
            arr = np.vstack(ps[g])  # keys x models
            one = arr[np.arange(keys), np.arange(keys) % tup.n_models]
            per05, per01 = (arr <= 0.05).mean(axis=1), (arr <= 0.01).mean(axis=1)
            rows.append(CalibrationRow(
                h, g, keys, arr.size, float(per05.mean()), float(per05.std(ddof=1)
                                                                 / keys**0.5),
                float(per01.mean()), float(per01.std(ddof=1) / keys**0.5),
                float(stats.kstest(one, "uniform").pvalue), float(np.median(scored))))
        if say:
            say(f"h={h}: {len(tup.windows)} distinct windows, {tup.token.size} tuples, "
                f"{keys} keys in {time.monotonic() - t0:.0f} s")
    return rows


def _calibration(args: argparse.Namespace) -> None:
    from benchmarks.bench_data import (
        bench_available,
        bench_dir,
        draw_canaries,
        load_outputs,
        load_prompts,
    )

    if not bench_available():
        sys.exit(f"provenance-bench not found at {bench_dir()} (set PROVENANCE_BENCH)")
    t0 = time.monotonic()
    prompts = load_prompts()
    tok = train_tokenizer(list(prompts.values()), args.vocab)
    models = sorted(p.name.removesuffix(".jsonl.gz") for p in (bench_dir() / "outputs").iterdir())
    if args.models:
        models = models[: args.models]
    seqs = []
    for i, m in enumerate(models):
        out = load_outputs(m)
        ids = draw_canaries(sorted(out), args.canaries, args.seed + i)
        seqs.append(tok.encode_batch([out[k] for k in ids]))
    print(f"{len(models)} models x {args.canaries} answers, tokenizer: {tok.source}; "
          f"{time.monotonic() - t0:.0f} s", flush=True)
    rows = calibrate(seqs, tok.vocab_size, args.h, args.gamma, args.keys, args.seed,
                     say=lambda s: print(s, flush=True), mode=args.tuples)
    print(f"scoring: {args.tuples}")
    print("| h | gamma | keys | p-values | FPR at 0.05 (± 1.96 SE) | FPR at 0.01 (± 1.96 SE) "
          "| KS p (one per key) | median tuples scored per model |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(r.line())
    print(f"total {time.monotonic() - t0:.0f} s")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calibration", help="p-values on real, unwatermarked text")
    c.add_argument("--keys", type=int, default=1000)
    c.add_argument("--canaries", type=int, default=100, help="answers per model")
    c.add_argument("--h", type=_ints, default=[1, 2, 4])
    c.add_argument("--gamma", type=_floats, default=[0.1, 0.25, 0.5])
    c.add_argument("--vocab", type=int, default=8192)
    c.add_argument("--models", type=int, default=0, help="first N models only (0: all)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--tuples", choices=["distinct", "favourite"], default="distinct")
    p = sub.add_parser("power", help="median p on the demo world's distilled students")
    p.add_argument("--shares", type=_floats, default=[0.01, 0.05, 0.1, 1.0])
    p.add_argument("--canaries", type=_ints, default=[50, 100, 200, 400])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--delta", type=float, default=2.0)
    p.add_argument("--gamma", type=float, default=0.25)
    p.add_argument("--h", type=int, default=1)
    p.add_argument("--harvest-samples", type=int, default=2,
                   help="answers the distiller harvests per prompt of its own")
    k = sub.add_parser("cost", help="perplexity against delta; processor time per token")
    k.add_argument("--deltas", type=_floats, default=[0.0, 1.0, 2.0, 4.0, 8.0])
    k.add_argument("--prompts", type=int, default=100)
    k.add_argument("--vocab", type=_ints, default=[32000, 128256, 262144])
    k.add_argument("--reps", type=int, default=200)
    args = ap.parse_args(argv)
    if args.cmd == "calibration":
        _calibration(args)
    elif args.cmd == "cost":
        from benchmarks.watermark_cost import run_cost

        run_cost(args)
    else:
        from benchmarks.watermark_power import run_power

        run_power(args)


if __name__ == "__main__":
    main()
