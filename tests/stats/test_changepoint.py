from __future__ import annotations

import numpy as np

from auditor.stats.changepoint import label_changes, mean_shift


def test_mean_shift_finds_the_cycle_where_behaviour_changed() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0.3, 0.05, 20), rng.normal(0.5, 0.05, 15)])
    cp = mean_shift(x, n_perm=299)
    assert abs(cp.index - 20) <= 1 and cp.p_value < 0.01 and cp.mean_after > cp.mean_before


def test_mean_shift_pvalue_is_not_small_without_a_change() -> None:
    rng = np.random.default_rng(1)
    ps = np.array([mean_shift(rng.normal(size=25), n_perm=99, seed=i).p_value for i in range(200)])
    assert np.mean(ps < 0.05) <= 0.08


def test_label_changes_reports_switches_of_reported_model() -> None:
    assert label_changes(["a", "a", "b", "b", None, "b"]) == [2, 4, 5]
