"""Checks on the real-output benchmark; skipped when ../shared/provenance-bench is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.bench_data import bench_available, load_cases  # noqa: E402

pytestmark = pytest.mark.skipif(
    not bench_available(),
    reason="provenance-bench data not found at ../shared/provenance-bench "
    "(set PROVENANCE_BENCH to its directory)",
)


@pytest.mark.slow
def test_benchmark_is_calibrated_and_ranks_derived_models_first() -> None:
    from auditor.stats.provenance import DEFAULT_REPS
    from benchmarks.bench_data import auroc
    from benchmarks.stats_experiments import run_budget

    cf = load_cases()
    rows = run_budget(cf, 100, seed=0, reps=DEFAULT_REPS) + run_budget(cf, 100, 1, DEFAULT_REPS)
    y = np.array([r[2] for r in rows])
    p = np.array([r[3] for r in rows])
    assert np.mean(p[y == 0] < 0.05) <= 0.075
    assert auroc(-np.log10(p), y) >= 0.88
