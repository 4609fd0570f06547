"""Identity claims: does the suspect claim the protected model's identity more often than
the controls do? One-sided Fisher exact test of the suspect's claim rate against the
controls' pooled rate."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

__all__ = ["IdentityResult", "count_claims", "identity_test"]


@dataclass(frozen=True)
class IdentityResult:
    p_value: float
    odds_ratio: float
    suspect_claims: int
    suspect_total: int
    control_claims: int
    control_total: int
    claiming_canaries: tuple[str, ...]


def _compile(patterns: Sequence[str | re.Pattern[str]]) -> list[re.Pattern[str]]:
    return [p if isinstance(p, re.Pattern) else re.compile(p, re.IGNORECASE) for p in patterns]


def count_claims(
    responses: Mapping[str, Sequence[str]], patterns: Sequence[str | re.Pattern[str]]
) -> tuple[int, int, list[str]]:
    """(responses matching any pattern, responses, canary ids with at least one match)."""
    pats = _compile(patterns)
    hits = total = 0
    where: list[str] = []
    for cid, texts in responses.items():
        found = False
        for t in texts:
            total += 1
            if any(p.search(t or "") for p in pats):
                hits += 1
                found = True
        if found:
            where.append(cid)
    return hits, total, where


def identity_test(
    suspect: Mapping[str, Sequence[str]],
    controls: Mapping[str, Mapping[str, Sequence[str]]],
    patterns: Sequence[str | re.Pattern[str]],
) -> IdentityResult:
    """Fisher exact (greater): suspect claims vs pooled control claims of P's identity."""
    sh, st, where = count_claims(suspect, patterns)
    ch = ct = 0
    for resp in controls.values():
        h, t, _ = count_claims(resp, patterns)
        ch, ct = ch + h, ct + t
    if st == 0 or ct == 0:
        return IdentityResult(1.0, float("nan"), sh, st, ch, ct, tuple(where))
    res = stats.fisher_exact([[sh, st - sh], [ch, ct - ch]], alternative="greater")
    return IdentityResult(float(res.pvalue), float(res.statistic), sh, st, ch, ct, tuple(where))
