from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from auditor.stats.combine import benjamini_hochberg, cauchy_combine


def test_cauchy_combination_is_uniform_for_independent_null_pvalues() -> None:
    rng = np.random.default_rng(0)
    ps = [cauchy_combine(rng.uniform(size=4)) for _ in range(3000)]
    assert stats.kstest(ps, "uniform").pvalue > 0.01


def test_cauchy_combination_keeps_size_under_strong_dependence() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4000, 1)) * 0.9 + rng.normal(size=(4000, 4)) * np.sqrt(1 - 0.81)
    ps = np.array([cauchy_combine(stats.norm.sf(row)) for row in z])
    assert np.mean(ps < 0.05) <= 0.06


def test_cauchy_combination_follows_one_strong_channel() -> None:
    assert cauchy_combine([1e-8, 0.6, 0.9]) < 1e-7
    assert cauchy_combine([0.0, 0.5]) == 0.0
    assert np.isnan(cauchy_combine([]))


def test_benjamini_hochberg_matches_scipy_and_rejects_at_alpha() -> None:
    p = np.array([0.001, 0.02, 0.03, 0.5, 0.9])
    adj, rej = benjamini_hochberg(p, 0.05)
    assert np.allclose(adj, stats.false_discovery_control(p))
    assert rej.tolist() == [True, True, True, False, False]


def test_a_channel_at_p_one_does_not_veto_a_strong_channel() -> None:
    """Issue 12 item 9: a flat identity channel (p = 1) pulled an exact copy's p to ~1."""
    assert cauchy_combine([1e-4, 1.0]) < 1e-3
    assert cauchy_combine([1e-7, 1.0, 1.0]) < 1e-5
    assert cauchy_combine([0.3, 0.3]) == pytest.approx(0.3)
    assert cauchy_combine([1.0, 1.0]) == 1.0


def test_cauchy_combination_keeps_size_with_p_values_at_one() -> None:
    """Discrete null p-values with mass at 1 (a rank p-value among six models) next to an
    independent continuous one: FPR stays at alpha."""
    rng = np.random.default_rng(2)
    rank, cont = rng.integers(1, 7, size=20000) / 6.0, rng.uniform(size=20000)
    ps = np.array([cauchy_combine([a, b]) for a, b in zip(rank, cont, strict=True)])
    for u in (0.01, 0.05, 0.1):
        assert np.mean(ps <= u) <= u + 2.5 * np.sqrt(u * (1 - u) / ps.size)
