"""Change points in a suspect's behaviour over cycles.

``mean_shift``: the single most likely shift in the mean of a per-cycle series (e.g. the
suspect's per-cycle similarity to P), with the maximum standardised CUSUM statistic and
a permutation p-value (cycles are exchangeable under no change). ``label_changes``:
indices where the reported ``model`` / ``system_fingerprint`` changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["ChangePoint", "cusum_statistic", "mean_shift", "label_changes"]


@dataclass(frozen=True)
class ChangePoint:
    index: int  # first cycle after the change; 0 when the series is too short
    statistic: float
    p_value: float
    mean_before: float
    mean_after: float


def cusum_statistic(x: np.ndarray) -> tuple[int, float]:
    """(split, max over splits of the standardised two-sample mean difference)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    if n < 2:
        return 0, 0.0
    k = np.arange(1, n)
    s = np.cumsum(x)[:-1]
    total = x.sum()
    diff = s / k - (total - s) / (n - k)
    sd = x.std(ddof=1) if n > 2 else 0.0
    stat = np.abs(diff) * np.sqrt(k * (n - k) / n) / (sd if sd > 0 else 1.0)
    i = int(np.argmax(stat))
    return i + 1, float(stat[i])


def mean_shift(series: Sequence[float], n_perm: int = 999, seed: int = 0) -> ChangePoint:
    """Most likely single mean shift and its permutation p-value."""
    x = np.asarray(series, dtype=np.float64)
    if x.size < 3:
        return ChangePoint(0, 0.0, 1.0, float(np.mean(x)) if x.size else float("nan"), float("nan"))
    idx, stat = cusum_statistic(x)
    rng = np.random.default_rng(seed)
    exceed = sum(cusum_statistic(rng.permutation(x))[1] >= stat - 1e-12 for _ in range(n_perm))
    return ChangePoint(
        idx, stat, (1 + exceed) / (1 + n_perm), float(x[:idx].mean()), float(x[idx:].mean())
    )


def label_changes(labels: Sequence[str | None]) -> list[int]:
    """Indices i where labels[i] differs from labels[i-1] (None counts as a value)."""
    return [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]]
