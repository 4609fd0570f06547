"""Identity claims: does the suspect claim the protected model's identity more often than
independent models do?

The p-value is model-level, like every p-value the auditor combines. Two nulls, the
second a refinement of the first:

- *Rank* (``rank_p_value``): under the null the suspect is exchangeable with the K
  controls, so the chance that its claim rate is at least as high as it is, ranked among
  the K + 1 models (ties counted against the suspect), is at most
  ``(1 + #{controls at or above it}) / (K + 1)``. Exact, but never below ``1 / (K + 1)``,
  and no test valid under exchangeability alone can go lower.
- *Population* (``p_value``): the suspect and the controls are a random sample from a
  population of at least ``POPULATION`` (100) independent models, whatever their claim
  rates (a claiming family at any share and any rate included). At most one of the
  K + 1 models claims strictly more than all others, and by exchangeability it is the
  suspect with chance 1/(K + 1); the population bounds the chance that so few models
  claim at all. So the suspect claiming strictly more than every control while at most
  ``j`` controls claim has probability at most ``max P(1 <= Z <= j + 1) / (K + 1)``, ``Z``
  the number of claiming models among the K + 1 (``lone_claimer_bound``). With every
  control silent that is about ``K^K / (K + 1)^(K + 1)``, nearly ``1 / (e (K + 1))``:
  0.045 with 8 controls against the rank's 0.111 (0.043 for an unbounded population;
  a population of only K + 1 models gives back the rank bound). The bound is attained by
  a two-point population (a share of models that always claim, the rest never), so no
  test assuming only this can go lower, and it does not use how often the suspect
  claims: 64 claims in 64 answers and 1 in 64 get the same p. Tests that do (a
  beta-binomial or logit-normal null fitted to the controls) assume the shape of the
  population, and exceed alpha on a pool with a claiming family
  (``benchmarks/identity_null.py``, BENCHMARKS.md). The bound needs the controls'
  answers to cover the suspect's: every control answered each of the suspect's canaries
  at least as often (``j = 0``), or exactly as often (``j >= 1``); otherwise the
  population p is the rank p. It is never above the rank p.

The response-level Fisher exact test (suspect's claims against the controls' pooled
claims) is reported beside them as a description of the strength of the contrast; it
treats responses as independent, which the models are not, so it never enters the
verdict."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

__all__ = ["POPULATION", "IdentityResult", "count_claims", "identity_test",
           "lone_claimer_bound", "population_p"]


@dataclass(frozen=True)
class IdentityResult:
    p_value: float  # model-level population p-value (never above rank_p_value)
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
    rank_p_value: float = 1.0  # model-level rank p-value among suspect and controls


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


POPULATION = 100  # independent models the suspect and the controls are drawn from, at least


def lone_claimer_bound(k: int, j: int, population: int | None = POPULATION) -> float:
    """Largest chance, over every population of ``population`` independent models (any
    claim rates), that a suspect drawn with ``k`` controls from it claims strictly more
    often than each control while at most ``j`` controls claim at all.

    At most one of the k + 1 exchangeable models is the strict maximum, so the chance is at
    most ``P(1 <= Z <= j + 1) / (k + 1)`` for the number ``Z`` of claiming models among
    them; maximised over the population, ``Z`` is hypergeometric (``population`` models of
    which ``c`` claim, any ``c``) or, for ``population=None`` (a random sample from an
    unbounded population), binomial with the claiming share ``s``, whose maximum is at
    ``s = 1 / (1 + C(k, j + 1) ** (1 / (j + 1)))`` (``j = 0``: ``k^k / (k + 1)^(k + 1)``).
    ``population = k + 1`` gives the rank bound ``1 / (k + 1)``, as does ``j >= k``."""
    if k < 1:
        return 1.0
    cap = 1 / (k + 1)
    if j >= k:
        return cap
    m = k + 1
    if population is None:
        s = 1.0 / (1.0 + float(special.comb(k, j + 1, exact=True)) ** (1.0 / (j + 1)))
        mass = float(stats.binom.sf(0, m, s) - stats.binom.sf(j + 1, m, s))
    else:
        big = max(int(population), m)
        c = np.arange(1, big + 1)
        mass = float(np.max(stats.hypergeom.cdf(j + 1, big, c, m)
                            - stats.hypergeom.pmf(0, big, c, m)))
    return min(cap, mass / (k + 1))


def _design(resp: Mapping[str, Sequence[str]]) -> dict[str, int]:
    return {cid: len(texts) for cid, texts in resp.items() if texts}


def population_p(
    suspect_claims: int,
    control_claims: Sequence[int],
    rank_p: float,
    suspect_design: Mapping[str, int] | None = None,
    control_designs: Sequence[Mapping[str, int]] | None = None,
    population: int | None = POPULATION,
) -> float:
    """The population p-value (module docstring): ``lone_claimer_bound(K, j)`` when the
    suspect claims strictly more than each of the K controls and ``j`` of them claim at
    all, the design permitting; otherwise ``rank_p``. Designs (canary id -> answers) left
    out are taken as equal."""
    k = len(control_claims)
    if k == 0 or suspect_claims <= max(control_claims):
        return rank_p
    j = sum(1 for c in control_claims if c > 0)
    if suspect_design is not None and control_designs is not None:
        if j == 0:
            ok = all(d.get(cid, 0) >= n for d in control_designs
                     for cid, n in suspect_design.items())
        else:
            ok = all(dict(d) == dict(suspect_design) for d in control_designs)
        if not ok:
            return rank_p
    return min(rank_p, lone_claimer_bound(k, j, population))


def identity_test(
    suspect: Mapping[str, Sequence[str]],
    controls: Mapping[str, Mapping[str, Sequence[str]]],
    patterns: Sequence[str | re.Pattern[str]],
    population: int | None = POPULATION,
) -> IdentityResult:
    """Population p (``p_value``) and rank p of the suspect's claim rate among the
    controls' (model level), plus Fisher."""
    sh, st, where = count_claims(suspect, patterns)
    ch = ct = 0
    rates = []
    hits: list[int] = []
    designs: list[dict[str, int]] = []
    for resp in controls.values():
        h, t, _ = count_claims(resp, patterns)
        ch, ct = ch + h, ct + t
        if t:
            rates.append(h / t)
            hits.append(h)
            designs.append(_design(resp))
    if st == 0 or not rates:
        return IdentityResult(1.0, float("nan"), sh, st, ch, ct, tuple(where), informative=False)
    rate = sh / st
    at_or_above = sum(r >= rate for r in rates)
    p_rank = (1 + at_or_above) / (len(rates) + 1) if sh else 1.0
    p_pop = population_p(sh, hits, p_rank, _design(suspect), designs, population) if sh else 1.0
    res = stats.fisher_exact([[sh, st - sh], [ch, ct - ch]], alternative="greater")
    return IdentityResult(p_pop, float(res.statistic), sh, st, ch, ct, tuple(where),
                          float(res.pvalue), tuple(rates), informative=len({rate, *rates}) > 1,
                          rank_p_value=p_rank)
