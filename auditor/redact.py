"""Redaction of sealed prompt text that a model quotes back in its answer.

A model asked a sealed canary may repeat the prompt (``You asked: "..."``). Before an
answer goes into a report bundle, every run of ``WINDOW`` consecutive words (or the whole
prompt, when shorter) that it shares with a sealed prompt is found, case and punctuation
aside, and the matching span is replaced by ``MARK``. The ledger record keeps the hash of
the full answer, so the chain still verifies; the full text stays in the store.
"""

from __future__ import annotations

__all__ = ["MARK", "WINDOW", "quoted_spans", "redact"]

import re
from collections.abc import Iterable

WINDOW = 6
MARK = "[REDACTED: quotes a sealed canary prompt]"
_WORD = re.compile(r"\w+")


def quoted_spans(text: str, prompts: Iterable[str], window: int = WINDOW
                 ) -> list[tuple[int, int]]:
    """Character spans of ``text`` that repeat ``window`` words in a row of a prompt
    (the whole prompt when it has fewer words), merged where they touch."""
    tokens = [(m.group().casefold(), m.start(), m.end()) for m in _WORD.finditer(text)]
    words = [t[0] for t in tokens]
    spans: list[tuple[int, int]] = []
    for prompt in prompts:
        pw = [w.casefold() for w in _WORD.findall(prompt)]
        k = min(window, len(pw))
        if k == 0:
            continue
        grams = {tuple(pw[i:i + k]) for i in range(len(pw) - k + 1)}
        spans += [(tokens[i][1], tokens[i + k - 1][2]) for i in range(len(words) - k + 1)
                  if tuple(words[i:i + k]) in grams]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and (start <= merged[-1][1] or not _WORD.search(text, merged[-1][1], start)):
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def redact(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each span replaced by ``MARK``."""
    out, last = [], 0
    for start, end in spans:
        out += [text[last:start], MARK]
        last = end
    return "".join(out) + text[last:]
