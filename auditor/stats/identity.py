"""Identity claims: does the suspect claim the protected model's identity more often than
independent models do?

The p-value is model-level, like every p-value the auditor combines: under the null the
suspect is exchangeable with the m controls, so the chance that its claim rate is at
least as high as it is, ranked among the m + 1 models (ties counted against the
suspect), is at most ``(1 + #{controls at or above it}) / (m + 1)``. That is exact but
can go no lower than ``1 / (m + 1)``. The response-level Fisher exact test (suspect's
claims against the controls' pooled claims) is reported beside it as a description of
the strength of the contrast; it treats responses as independent, which the models are
not, so it never enters the verdict."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy import stats

__all__ = ["IdentityResult", "count_claims", "identity_test"]


@dataclass(frozen=True)
class IdentityResult:
    p_value: float  # model-level rank p-value among suspect and controls
    odds_ratio: float
    suspect_claims: int
    suspect_total: int
    control_claims: int
    control_total: int
    claiming_canaries: tuple[str, ...]
    fisher_p: float = 1.0  # response-level, descriptive only
    control_rates: tuple[float, ...] = ()
    # False when the suspect and every control claim at the same rate (typically none
    # at all): the rank p-value is then 1 whichever model is the suspect, so the channel
    # says nothing about this pair and is left out of the combination of channels
    informative: bool = True


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
    """Rank of the suspect's claim rate among the controls' (model level), plus Fisher."""
    sh, st, where = count_claims(suspect, patterns)
    ch = ct = 0
    rates = []
    for resp in controls.values():
        h, t, _ = count_claims(resp, patterns)
        ch, ct = ch + h, ct + t
        if t:
            rates.append(h / t)
    if st == 0 or not rates:
        return IdentityResult(1.0, float("nan"), sh, st, ch, ct, tuple(where), informative=False)
    rate = sh / st
    at_or_above = sum(r >= rate for r in rates)
    p_rank = (1 + at_or_above) / (len(rates) + 1) if sh else 1.0
    res = stats.fisher_exact([[sh, st - sh], [ch, ct - ch]], alternative="greater")
    return IdentityResult(p_rank, float(res.statistic), sh, st, ch, ct, tuple(where),
                          float(res.pvalue), tuple(rates), informative=len({rate, *rates}) > 1)
