"""The watermark's cost to the owner.

Quality: the perplexity of the demo protected model's watermarked answers under the same
model unwatermarked, against delta (delta 0 is the unwatermarked baseline). Latency: the
processor's time per generated token (``GreenList.bias`` on one row of logits, a fresh
context every token so the mask cache never helps), for vocabularies of common models.

    python -m benchmarks.watermark cost
"""

from __future__ import annotations

import argparse
import math
import random
import time

import numpy as np

from auditor.demo.lm import BOS, EOS, TrigramLM, classify, tokenize, topic_words
from auditor.demo.watermark import WordWatermark, demo_vocabulary
from auditor.demo.world import build_models, story_canary_prompts
from auditor.watermark.core import GreenList
from auditor.watermark.tokenizer import word_level_tokenizer

__all__ = ["run_cost"]


def _log_prob(lm: TrigramLM, prompt: str, answer: str) -> tuple[float, int]:
    """Log-probability of ``answer`` under ``lm`` at temperature 1 (topic words scored as
    the topic slot; the choice among the prompt's topics is the same for every delta and
    left out), and the number of words scored."""
    table = lm.counts.get(classify(prompt)) or lm.counts["text"]
    topics = set(topic_words(prompt))
    toks = [TrigramLM.TOPIC if t.lower() in topics else t for t in tokenize(answer)]
    seq = [BOS, BOS, *toks, EOS]
    lp, n = 0.0, 0
    for a, b, c in zip(seq, seq[1:], seq[2:], strict=False):
        nxt = table.get((a, b), {})
        total = sum(nxt.values())
        if not total or c not in nxt:
            continue  # a word the model cannot write here (detokenization joins): skipped
        lp += math.log(nxt[c] / total)
        n += 1
    return lp, n


def run_cost(args: argparse.Namespace) -> None:
    models = build_models().lms
    tok = word_level_tokenizer(demo_vocabulary(models))
    teacher = models["protected"]
    prompts = story_canary_prompts(args.prompts)
    print("| delta | perplexity (per word) | x baseline | green share of written words |")
    print("| --- | --- | --- | --- |")
    base = None
    for delta in args.deltas:
        rng = random.Random(5)
        green = GreenList(bytes(range(32)), tok.vocab_size, gamma=0.25, delta=delta, h=1)
        wm = WordWatermark(green, tok) if delta > 0 else None
        lp = n = g = scored = 0.0
        for p in prompts:
            for _ in range(2):
                text = teacher.generate(p, rng, 1.0, 300, watermark=wm)
                a, b = _log_prob(teacher, p, text)
                lp, n = lp + a, n + b
                ids = tok.encode(text)
                g += sum(green.is_green(ids[i - 1:i], ids[i]) for i in range(1, len(ids)))
                scored += max(len(ids) - 1, 0)
        ppl = math.exp(-lp / n)
        base = base or ppl
        print(f"| {delta:g} | {ppl:.3f} | {ppl / base:.3f} | {g / scored:.3f} |")
    print()
    print("| vocabulary | processor time per token (fresh context) | with the mask cached |")
    print("| --- | --- | --- |")
    rng_np = np.random.default_rng(0)
    for vocab in args.vocab:
        green = GreenList(bytes(range(32)), vocab, gamma=0.25, delta=2.0, h=1)
        logits = rng_np.normal(size=vocab).astype(np.float32)
        reps = args.reps
        t0 = time.perf_counter()
        for i in range(reps):
            green.bias(logits, [i])  # a new context each time: the mask is computed
        fresh = (time.perf_counter() - t0) / reps
        t0 = time.perf_counter()
        for _ in range(reps):
            green.bias(logits, [7])
        cached = (time.perf_counter() - t0) / reps
        print(f"| {vocab:,} | {fresh * 1e3:.2f} ms | {cached * 1e3:.2f} ms |")
