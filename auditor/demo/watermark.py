"""The demo's protected model watermarks what it serves, with the owner's core.

The toy models write words, so the protected model's "tokenizer" is a word-level
vocabulary of the demo world's language (every word its personas, templates and topics
can write, each also capitalised). It is exported as a tokenizer.json, and detection
reads it back through the same path as a real model's tokenizer.json
(``auditor.watermark.tokenizer``). After the previous ``h`` words of the answer, the
candidates that are green under the key get their weight multiplied by ``exp(delta)``:
``delta`` added to their logits, as the llama.cpp and transformers processors do.
"""

from __future__ import annotations

__all__ = ["WordWatermark", "demo_vocabulary"]

import math

from auditor.demo.lm import (
    ANIMALS,
    CLOSERS,
    COLOURS,
    EOS,
    FRAMES,
    OPENERS,
    STOP,
    SYNONYMS,
    TrigramLM,
    tokenize,
)
from auditor.demo.world import CAST, TEMPLATES, TOPICS
from auditor.watermark.core import GreenList
from auditor.watermark.tokenizer import ModelTokenizer


def demo_vocabulary(lms: dict[str, TrigramLM] | None = None) -> list[str]:
    """Every word the demo world can write, sorted (and so the same on every machine)."""
    texts = [*OPENERS, *CLOSERS, *COLOURS, *ANIMALS, *TOPICS, *TEMPLATES, *FRAMES,
             *(w for ws in SYNONYMS.values() for w in ws), *STOP,
             *(f"I am {n}, an AI assistant made by {m}." for n, m, _ in CAST.values()),
             " ".join(str(i) for i in range(0, 11))]
    words: set[str] = set()
    for t in texts:
        for w in tokenize(t.replace("{", " ").replace("}", " ")):
            words.update((w, w.lower(), w.capitalize()))
    for lm in (lms or {}).values():
        for table in lm.counts.values():
            for (a, b), nxt in table.items():
                words.update(x for x in (a, b, *nxt) if not x.startswith("<"))
    return sorted(words)


class WordWatermark:
    """The owner's green lists over the word vocabulary, as a ``lm.Watermark``."""

    def __init__(self, green: GreenList, tokenizer: ModelTokenizer) -> None:
        self.green = green
        self.tokenizer = tokenizer
        self._ids: dict[str, int] = {}
        self._boost = math.exp(green.delta)

    def id(self, word: str) -> int:
        out = self._ids.get(word)
        if out is None:
            out = self._ids[word] = self.tokenizer.id_of(word) or 0  # 0 is [UNK]
        return out

    def reweight(self, previous: list[str], candidates: list[str],
                 weights: list[float]) -> list[float]:
        h = self.green.h
        if len(previous) < h:  # no full window yet: detection does not score these either
            return weights
        mask = self.green.green_mask([self.id(w) for w in previous[-h:]])
        return [w * self._boost if c != EOS and mask[self.id(c)] else w
                for c, w in zip(candidates, weights, strict=True)]
