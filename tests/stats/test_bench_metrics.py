"""The benchmark's metrics: AUROC and the oracle ceiling on TPR at a fixed FPR."""

from __future__ import annotations

import numpy as np

from benchmarks.bench_data import auroc, ceiling_tpr


def test_auroc_counts_ordered_pairs_and_half_ties() -> None:
    y = np.array([1, 1, 0, 0])
    assert auroc(np.array([4.0, 3.0, 2.0, 1.0]), y) == 1.0
    assert auroc(np.array([1.0, 2.0, 3.0, 4.0]), y) == 0.0
    assert auroc(np.array([2.0, 2.0, 2.0, 2.0]), y) == 0.5


def test_ceiling_tpr_allows_alpha_of_the_negatives_above_the_threshold() -> None:
    neg = np.arange(20, dtype=float)  # 0..19: at alpha 0.05 one negative may be flagged
    pos = np.array([18.5, 18.0, 30.0, 17.0])
    scores = np.concatenate([pos, neg])
    y = np.r_[np.ones(4, int), np.zeros(20, int)]
    # threshold just above the second-highest negative (18): 18.5 and 30 pass, 18.0 ties
    assert ceiling_tpr(scores, y, 0.05) == 0.5
    # alpha 0.10 allows two negatives above the bar (17 and above): 18.5, 18.0, 30 pass
    assert ceiling_tpr(scores, y, 0.10) == 0.75
    # below one negative's worth, no negative may be flagged
    assert ceiling_tpr(scores, y, 0.01) == 0.25


def test_ceiling_tpr_is_one_when_every_positive_outranks_every_negative() -> None:
    rng = np.random.default_rng(0)
    scores = np.r_[rng.uniform(5, 6, 10), rng.uniform(0, 1, 100)]
    y = np.r_[np.ones(10, int), np.zeros(100, int)]
    assert ceiling_tpr(scores, y, 0.0) == 1.0
    assert np.isnan(ceiling_tpr(scores[:10], y[:10]))
