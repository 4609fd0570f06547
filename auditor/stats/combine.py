"""Combining dependent p-values and controlling the false discovery rate."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["cauchy_combine", "benjamini_hochberg"]


def cauchy_combine(p_values: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """Cauchy combination (Liu and Xie 2020): valid, approximately, under arbitrary dependence.

    ``T = sum w_i tan((0.5 - p_i) pi)``, ``p = 1/2 - arctan(T)/pi``. NaN p-values are dropped;
    p-values of exactly 0 give 0 and of 1 are clipped so that one channel with no
    information cannot veto the others.
    """
    p = np.asarray(p_values, dtype=np.float64)
    w = np.ones_like(p) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = np.isfinite(p)
    p, w = p[keep], w[keep]
    if p.size == 0:
        return float("nan")
    if np.any(p <= 0):
        return 0.0
    w = w / w.sum()
    p = np.minimum(p, 1.0 - 1e-12)
    small = p < 1e-15
    terms = np.where(small, 1.0 / (np.where(small, p, 1.0) * np.pi), np.tan((0.5 - p) * np.pi))
    t = float(np.sum(w * terms))
    if t > 1e15:
        return float(1.0 / (t * np.pi))
    return float(stats.cauchy.sf(t))


def benjamini_hochberg(
    p_values: Sequence[float], alpha: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Adjusted p-values (``scipy.stats.false_discovery_control``, BH) and rejections at alpha."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p.copy(), np.zeros(0, dtype=bool)
    adj = stats.false_discovery_control(p, method="bh")
    return adj, adj <= alpha
