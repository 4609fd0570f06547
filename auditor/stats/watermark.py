"""Keyed green-list watermark radioactivity (Kirchenbauer et al.; Sander et al. 2024).

A (context, token) pair is green when ``HMAC-SHA256(key, context || token)`` falls in the
first ``gamma`` fraction of the hash range. Under H0 (no watermark inherited) each
distinct pair is green with probability ``gamma`` independently of the text, so the count
of green pairs among distinct scored pairs is Binomial(n, gamma). Repeated pairs are
scored once (otherwise repeated phrases would inflate the count), which is what makes
the exact binomial tail valid. The tokenizer is pluggable: any callable str -> tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from scipy import stats

__all__ = ["whitespace_tokenizer", "is_green", "WatermarkResult", "radioactivity_test"]

Tokenizer = Callable[[str], Sequence[str]]
_TOKEN = re.compile(r"\w+|[^\w\s]")


def whitespace_tokenizer(text: str) -> list[str]:
    """Default tokenizer: words and single punctuation marks."""
    return _TOKEN.findall(text)


def is_green(key: bytes, context: Sequence[str], token: str, gamma: float) -> bool:
    msg = "\x1f".join((*context, "\x1e", token)).encode("utf-8")
    digest = hmac.new(key, msg, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") < int(gamma * 2**64)


@dataclass(frozen=True)
class WatermarkResult:
    p_value: float
    green: int
    scored: int
    gamma: float
    green_rate: float
    skipped_duplicates: int


def radioactivity_test(
    texts: Iterable[str],
    key: bytes,
    gamma: float = 0.25,
    context_width: int = 1,
    tokenizer: Tokenizer = whitespace_tokenizer,
) -> WatermarkResult:
    """Binomial test of the green rate of distinct (context, token) pairs in ``texts``."""
    if not 0.0 < gamma < 1.0:
        raise ValueError("gamma must be in (0, 1)")
    seen: set[tuple[tuple[str, ...], str]] = set()
    green = dup = 0
    for text in texts:
        toks = list(tokenizer(text))
        for i in range(context_width, len(toks)):
            pair = (tuple(toks[i - context_width : i]), toks[i])
            if pair in seen:
                dup += 1
                continue
            seen.add(pair)
            green += is_green(key, pair[0], pair[1], gamma)
    n = len(seen)
    p = float(stats.binom.sf(green - 1, n, gamma)) if n else 1.0
    return WatermarkResult(p, green, n, gamma, green / n if n else float("nan"), dup)
