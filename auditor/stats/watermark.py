"""Watermark radioactivity over the protected model's own token ids (Kirchenbauer et al.
2023; Sander et al., "Watermarking Makes Language Models Radioactive", 2024).

The suspect's answers arrive already re-tokenized with the protected model's tokenizer
(``analysis`` does that; tokenizers are passed in, as encoders are for embeddings). Each
token after a full window of the ``h`` previous ids of the same answer is a (window,
token) tuple; its colour is ``GreenList.is_green(window, token)`` under the owner's key.

Under H0 (the suspect's text does not depend on the key) every *distinct* tuple is green
with probability ``gamma`` independently of the others, so the number of green tuples
among ``n`` distinct scored tuples is Binomial(n, gamma) and the p-value is its exact
upper tail. A tuple seen again is not scored again (de-duplication): repeated phrases
would otherwise count one coin flip many times, and the binomial would not hold.

The filter of Sander et al.: score only the tuples whose window the protected model
itself produced on the same canaries (``windows``). It is chosen from the protected
model's answers, never from the colours of the suspect's tuples, so it keeps the test
exact while dropping windows a student cannot have learnt a bias for.
"""

from __future__ import annotations

__all__ = [
    "WatermarkResult",
    "radioactivity_test",
    "scored_tuples",
    "windows_of",
    "worst_key",
]

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

from auditor.watermark.core import GreenList

Window = tuple[int, ...]


@dataclass(frozen=True)
class WatermarkResult:
    p_value: float
    green: int  # green tuples among the scored ones
    scored: int  # distinct (window, token) tuples scored
    gamma: float
    green_rate: float  # green / scored (nan when nothing was scored)
    skipped_duplicates: int  # tuples seen before in these answers
    filtered_out: int = 0  # distinct tuples whose window the protected model never produced
    h: int = 1
    keys_tested: int = 1  # the p-value is Bonferroni-corrected over this many keys


def windows_of(sequences: Iterable[Sequence[int]], h: int) -> set[Window]:
    """Every full window of ``h`` consecutive ids followed by a token, in ``sequences``
    (the protected model's own answers: the Sander et al. filter)."""
    out: set[Window] = set()
    for ids in sequences:
        seq = [int(t) for t in ids]
        out.update(tuple(seq[i - h : i]) for i in range(h, len(seq)))
    return out


def scored_tuples(
    sequences: Iterable[Sequence[int]], h: int, windows: Collection[Window] | None = None
) -> tuple[list[Window], list[int], int, int]:
    """(windows, tokens, duplicates, filtered out): the distinct (window, token) tuples of
    ``sequences`` in order of first appearance, each window the ``h`` ids before its token
    in the same answer (the first ``h`` tokens of an answer have no full window and are
    not scored). With ``windows``, tuples whose window is not in it are left out."""
    if h < 1:
        raise ValueError(f"h must be >= 1, got {h}")
    seen: set[tuple[Window, int]] = set()
    out_w: list[Window] = []
    out_t: list[int] = []
    dup = filtered = 0
    for ids in sequences:
        seq = [int(t) for t in ids]
        for i in range(h, len(seq)):
            pair = (tuple(seq[i - h : i]), seq[i])
            if pair in seen:
                dup += 1
                continue
            seen.add(pair)
            if windows is not None and pair[0] not in windows:
                filtered += 1
                continue
            out_w.append(pair[0])
            out_t.append(pair[1])
    return out_w, out_t, dup, filtered


def favourite_tuples(
    sequences: Iterable[Sequence[int]], h: int, windows: Collection[Window] | None = None
) -> tuple[list[Window], list[int], int, int]:
    """Like :func:`scored_tuples`, but one tuple per distinct window: the token the text
    wrote most often after it (ties: the first written). Which token is chosen depends
    on the text alone, never on the key, and distinct windows have independent green
    lists, so the green count is still exactly binomial; it keeps what de-duplication
    throws away, how often a continuation is preferred."""
    if h < 1:
        raise ValueError(f"h must be >= 1, got {h}")
    after: dict[Window, Counter[int]] = {}
    total = filtered = 0
    for ids in sequences:
        seq = [int(t) for t in ids]
        for i in range(h, len(seq)):
            w = tuple(seq[i - h : i])
            total += 1
            if windows is not None and w not in windows:
                filtered += 1
                continue
            after.setdefault(w, Counter())[seq[i]] += 1
    ws = list(after)
    ts = [after[w].most_common(1)[0][0] for w in ws]
    return ws, ts, total - filtered - len(ws), filtered


def radioactivity_test(
    sequences: Iterable[Sequence[int]],
    green: GreenList,
    windows: Collection[Window] | None = None,
    tuples: Literal["distinct", "favourite"] = "distinct",
) -> WatermarkResult:
    """Exact binomial test of the green share of the distinct (window, token) tuples in
    ``sequences`` (token ids of the protected model's tokenizer), under ``green``'s key,
    ``gamma`` and ``h``; ``windows`` restricts scoring to the protected model's windows.
    ``tuples="favourite"`` scores one tuple per window (:func:`favourite_tuples`)."""
    pick = favourite_tuples if tuples == "favourite" else scored_tuples
    ws, ts, dup, filtered = pick(sequences, green.h, windows)
    n = len(ts)
    g = int(green.green_pairs(ws, np.asarray(ts, dtype=np.int64)).sum()) if n else 0
    p = float(stats.binom.sf(g - 1, n, green.gamma)) if n else 1.0
    return WatermarkResult(
        p_value=min(1.0, max(p, 0.0)),
        green=g,
        scored=n,
        gamma=green.gamma,
        green_rate=g / n if n else float("nan"),
        skipped_duplicates=dup,
        filtered_out=filtered,
        h=green.h,
    )


def worst_key(results: Sequence[WatermarkResult]) -> WatermarkResult:
    """The result of the key with the smallest p-value, its p Bonferroni-corrected for the
    number of keys tested (each key is a separate hypothesis: the student may have learnt
    from answers marked under any of the owner's keys)."""
    if not results:
        raise ValueError("no watermark results to combine")
    best = min(results, key=lambda r: r.p_value)
    k = len(results)
    return WatermarkResult(
        p_value=min(1.0, best.p_value * k),
        green=best.green,
        scored=best.scored,
        gamma=best.gamma,
        green_rate=best.green_rate,
        skipped_duplicates=best.skipped_duplicates,
        filtered_out=best.filtered_out,
        h=best.h,
        keys_tested=k,
    )
