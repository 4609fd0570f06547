"""The identity channel's population p-value (issue 14, item 5): below the rank cap
1/(K+1) for a clear clone, and still valid on a pool with a claiming family."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from auditor.stats.identity import identity_test, lone_claimer_bound, population_p

PATS = [r"\bAurora\b", r"\bNorthwind\b"]
CLAIM, PLAIN = "I am Aurora, made by Northwind.", "I am a helpful assistant."


def _model(answers: dict[str, list[bool]]) -> dict[str, list[str]]:
    return {cid: [CLAIM if c else PLAIN for c in claims] for cid, claims in answers.items()}


def test_a_clear_clone_gets_a_p_value_below_the_rank_cap() -> None:
    """64 claims in 64 answers against 0 in 528 (8 controls): the rank p is 1/9 = 0.111;
    the population p is K^K/(K+1)^(K+1) for a population of at least 100 models (0.045),
    below 0.05, which no rank p of 8 controls reaches."""
    canaries = [f"q{i}" for i in range(16)]
    suspect = _model({c: [True] * 4 for c in canaries})
    # each control answered the suspect's canaries as often, and one canary more
    control = _model({**{c: [False] * 4 for c in canaries}, "extra": [False, False]})
    controls = {f"C{j}": control for j in range(8)}
    r = identity_test(suspect, controls, PATS)
    assert (r.suspect_claims, r.suspect_total) == (64, 64)
    assert (r.control_claims, r.control_total) == (0, 528)
    assert r.rank_p_value == pytest.approx(1 / 9)
    assert r.p_value == pytest.approx(lone_claimer_bound(8, 0)) and r.p_value < 0.05
    assert r.p_value < 0.45 * r.rank_p_value
    unbounded = identity_test(suspect, controls, PATS, population=None)
    assert unbounded.p_value == pytest.approx(8**8 / 9**9)  # 0.0433, about 1 / (9 e)
    assert identity_test(suspect, controls, PATS, population=9).p_value == pytest.approx(1 / 9)
    # a control that did not answer one of the suspect's canaries: the bound does not hold
    # as stated, so the rank p stands
    short = {**controls, "C0": _model({c: [False] * 4 for c in canaries[1:]})}
    assert identity_test(suspect, short, PATS).p_value == pytest.approx(1 / 9)


def test_the_bound_grows_with_the_controls_that_claim_and_meets_the_rank_p() -> None:
    k = 8
    bounds = [lone_claimer_bound(k, j) for j in range(k + 1)]
    assert all(a < b for a, b in zip(bounds, bounds[1:], strict=False))
    assert bounds[-1] == pytest.approx(1 / (k + 1))
    # one control claims a little, the suspect more: the bound for j = 1 (equal designs)
    assert population_p(10, [0] * 7 + [2], 1 / 9) == pytest.approx(bounds[1])
    # a control at or above the suspect: the rank p
    assert population_p(2, [0] * 7 + [2], 2 / 9) == pytest.approx(2 / 9)
    # j >= 1 needs every control to have answered exactly like the suspect
    design = {"q0": 4}
    assert population_p(3, [0, 1], 1 / 3, design, [design, {"q0": 5}]) == pytest.approx(1 / 3)


@pytest.mark.parametrize("k", [3, 5, 8, 12])
def test_lone_claimer_bound_is_the_maximum_over_claiming_shares(k: int) -> None:
    s = np.linspace(0.0, 1.0, 100_001)
    for j in range(k):
        mass = stats.binom.sf(0, k + 1, s) - stats.binom.sf(j + 1, k + 1, s)
        assert lone_claimer_bound(k, j, None) == pytest.approx(mass.max() / (k + 1), rel=1e-6)
    assert lone_claimer_bound(k, 0, None) == pytest.approx(k**k / (k + 1) ** (k + 1))
    assert lone_claimer_bound(k, 0, k + 1) == pytest.approx(1 / (k + 1))  # the rank bound
    # a finite population is harder to rule out than an unbounded one
    assert lone_claimer_bound(k, 0, None) < lone_claimer_bound(k, 0) < lone_claimer_bound(k, 0, 30)


def _pool_fpr(rng: np.random.Generator, share: float, lo: float, hi: float, k: int,
              draws: int) -> np.ndarray:
    """p-values of one more independent model among k controls, all drawn from a pool
    where a share of models claim at a rate in [lo, hi] and the rest never do."""
    canaries = [f"q{i}" for i in range(8)]
    ps = np.empty(draws)
    for d in range(draws):
        fam = rng.random(k + 1) < share
        rates = np.where(fam, rng.uniform(lo, hi, k + 1), 0.0)
        models = [_model({c: list(rng.random(2) < r) for c in canaries}) for r in rates]
        ps[d] = identity_test(models[0], {f"C{j}": m for j, m in enumerate(models[1:])},
                              PATS).p_value
    return ps


@pytest.mark.parametrize(("share", "lo", "hi"), [
    (1 / 9, 0.8, 1.0),  # the worst case: a claiming family that looks like a clone
    (0.1, 0.10, 0.20),  # a claiming family at 10-20 % (open models trained on chat logs)
    (0.2, 0.10, 0.20),
])
def test_population_p_is_valid_on_a_pool_with_a_claiming_family(
    share: float, lo: float, hi: float
) -> None:
    """FPR at alpha = 0.05 and at the bound itself stays at alpha within 2.5 standard
    errors. A hierarchical beta-binomial predictive fitted to the controls gives the lone
    claimer of the first pool p ~ 0.007 and rejects at 0.01 in up to 3 % of such draws
    (BENCHMARKS.md, "Identity channel: a null beyond the rank cap"): this is the test
    such a null fails, and the rank p (never below 1/9) fails the last assertion."""
    rng = np.random.default_rng(14)
    k, draws = 8, 3000
    ps = _pool_fpr(rng, share, lo, hi, k, draws)
    for u in (0.01, lone_claimer_bound(k, 0), 0.05, lone_claimer_bound(k, 1), 1 / 9):
        fpr = float((ps <= u + 1e-12).mean())
        assert fpr <= u + 2.5 * np.sqrt(u * (1 - u) / draws), (u, fpr)
    if share == 1 / 9:  # the bound is attained: the worst pool rejects near it
        assert (ps <= 0.05).mean() > 0.03
