from __future__ import annotations

import numpy as np
from scipy import stats

from auditor.stats.nullmodel import composite_scores, prediction_pvalue


def test_prediction_pvalue_is_uniform_for_an_exchangeable_normal_suspect() -> None:
    rng = np.random.default_rng(1)
    ps = [prediction_pvalue(rng.normal(), rng.normal(size=8))[0] for _ in range(3000)]
    assert stats.kstest(ps, "uniform").pvalue > 0.01


def _composite_null_pvalues(symmetric: bool, seed: int, n: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.6, 0.3], [0.6, 1.0, 0.5], [0.3, 0.5, 1.0]])
    ps = []
    for _ in range(n):
        vals = rng.multivariate_normal(np.zeros(3), cov, size=10)
        zs, zc = composite_scores(vals[0], vals[1:], symmetric=symmetric)
        ps.append(prediction_pvalue(zs, zc)[0])
    return np.array(ps)


def test_symmetric_composite_pvalue_is_uniform_under_exchangeable_models() -> None:
    ps = _composite_null_pvalues(symmetric=True, seed=2)
    assert stats.kstest(ps, "uniform").pvalue > 0.01


def test_default_composite_pvalue_is_conservative_at_every_level() -> None:
    ps = _composite_null_pvalues(symmetric=False, seed=3)
    for u in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5):
        assert np.mean(ps <= u) <= u + 2.5 * np.sqrt(u * (1 - u) / ps.size)


def test_prediction_pvalue_is_small_for_an_outlying_suspect() -> None:
    p, t = prediction_pvalue(10.0, np.array([0.0, 1.0, -1.0, 0.5, -0.5]))
    assert p < 0.01 and t > 5


def test_batch_composite_matches_the_single_composite() -> None:
    from auditor.stats.nullmodel import composite_scores_batch

    rng = np.random.default_rng(4)
    s, c = rng.normal(size=(5, 3)), rng.normal(size=(5, 7, 3))
    c[2, 3, 1] = np.nan
    for sym in (False, True):
        zs, zc = composite_scores_batch(s, c, symmetric=sym)
        for b in range(5):
            zs1, zc1 = composite_scores(s[b], c[b], symmetric=sym)
            assert np.isclose(zs[b], zs1) and np.allclose(zc[b], zc1)


def test_normal_scores_are_standard_normal_against_few_normal_references() -> None:
    from auditor.stats.nullmodel import normal_score

    rng = np.random.default_rng(5)
    for n in (3, 4, 8):
        ref = rng.normal(size=(4000, n))
        z = (rng.normal(size=4000) - ref.mean(axis=1)) / ref.std(axis=1, ddof=1)
        assert stats.kstest(normal_score(z, n), "norm").pvalue > 0.01
    assert normal_score(np.array([380.0]), 4)[0] < 6.5


def test_normal_score_composite_pvalue_keeps_size_with_five_controls() -> None:
    rng = np.random.default_rng(6)
    cov = np.array([[1.0, 0.6, 0.3], [0.6, 1.0, 0.5], [0.3, 0.5, 1.0]])
    ps = []
    for _ in range(3000):
        vals = rng.multivariate_normal(np.zeros(3), cov, size=6)
        ps.append(prediction_pvalue(*composite_scores(vals[0], vals[1:], normal=True))[0])
    p = np.array(ps)
    for u in (0.01, 0.05, 0.1, 0.2):
        assert np.mean(p <= u) <= u + 2.5 * np.sqrt(u * (1 - u) / p.size)
