"""The model-level null: the suspect is exchangeable with the independent controls.

Every channel reduces a model to one number per (model, protected) pair: how much it
behaves like the protected model. Under the null the suspect's number is one more draw
from the distribution the controls' numbers come from. With ``m`` controls, a rank
p-value cannot go below ``1/(m+1)``, so the controls' numbers are modelled as normal and
the suspect is compared with them through a Student-t prediction interval::

    t = (x_S - mean(x_C)) / (sd(x_C) * sqrt(1 + 1/m)),   p = P(T_{m-1} >= t)

which is exact when the numbers are i.i.d. normal, whatever the number of canaries. When
several representations are combined, each is standardised by the controls and averaged
(``composite``); a control's composite is computed against the *other* controls
(leave-one-out), so the suspect and every control are scored the same way.

A composite averages z-scores, so one representation far out dominates it. That is
power when the suspect is far out on one representation, and a weakness when a control
is: scored against only m - 1 = 4 others, a control's z-score has a t distribution with
3 degrees of freedom, and one control that sits far from four tightly packed others on
one representation got a composite of 95, inflated the controls' spread and hid an exact
copy of the protected model (p = 0.44). The *normal-score* composite (``normal=True``)
first maps each z-score through its own Student-t prediction distribution to the
standard normal scale (``normal_score``), which is exactly N(0, 1) when the values are
i.i.d. normal and bounded where a z-score of few references is not, then clips it at
+-``SCORE_CLIP`` (3; under the null that touches 0.3 % of scores), so one control far out
on one representation adds at most 3/R to its composite. It rewards agreement across
representations and cannot be inflated by one such control. ``provenance`` uses both.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = [
    "MIN_CONTROLS",
    "composite_scores",
    "composite_scores_batch",
    "normal_score",
    "prediction_pvalue",
]

MIN_CONTROLS = 3
SCORE_CLIP = 3.0


def prediction_pvalue(x: float, null: np.ndarray) -> tuple[float, float]:
    """One-sided p-value and t statistic of ``x`` against the control values ``null``."""
    null = np.asarray(null, dtype=np.float64)
    null = null[np.isfinite(null)]
    m = null.size
    if m < MIN_CONTROLS:
        raise ValueError(f"need at least {MIN_CONTROLS} controls with data, got {m}")
    if not np.isfinite(x):
        return 1.0, float("nan")
    sd = float(np.std(null, ddof=1))
    if sd <= 0:
        sd = 1e-12
    t = (x - float(np.mean(null))) / (sd * np.sqrt(1.0 + 1.0 / m))
    return float(stats.t.sf(t, m - 1)), float(t)


def _z(values: np.ndarray, ref: np.ndarray, axis: int = 0, normal: bool = False) -> np.ndarray:
    """z-scores of ``values`` against the reference rows of ``ref`` along ``axis``; with
    ``normal``, their normal scores (``normal_score``) given the number of references."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.nanmean(ref, axis=axis)
        sd = np.nanstd(ref, axis=axis, ddof=1)
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    z = (values - mu) / sd
    if not normal:
        return z
    return np.clip(normal_score(z, np.sum(np.isfinite(ref), axis=axis)), -SCORE_CLIP, SCORE_CLIP)


def normal_score(z: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """``Phi^-1(F_{T_{n-1}}(z / sqrt(1 + 1/n)))``: N(0, 1) for a new draw standardised by
    ``n`` i.i.d. normal references; bounded where a raw z-score of a few references is not
    (a z of 380 against 4 references becomes about 5). NaN where ``n < 2``."""
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.asarray(z, dtype=np.float64) / np.sqrt(1.0 + 1.0 / n)
        df = np.where(n >= 2, n - 1.0, np.nan)
        return np.where(
            t > 0, stats.norm.isf(stats.t.sf(t, df)), stats.norm.ppf(stats.t.cdf(t, df))
        )


def composite_scores(
    suspect: np.ndarray, controls: np.ndarray, symmetric: bool = False, normal: bool = False
) -> tuple[float, np.ndarray]:
    """Composite of several per-representation values.

    ``suspect``: shape (R,); ``controls``: shape (m, R). The suspect's composite is the
    mean over R of its z-scores against the m controls; a control's composite is its
    z-score against the other m-1 controls (``symmetric=False``, the default) or against
    the other m-1 controls *and the suspect* (``symmetric=True``). ``normal``: average
    normal scores instead of z-scores (see the module docstring).

    The default makes each control's composite slightly more dispersed than the
    suspect's under the null, so the p-value is conservative (super-uniform); measured on
    the real-output benchmark it keeps FPR under alpha where the symmetric form (exactly
    exchangeable, uniform on Gaussian simulations) does not, because real independent
    models have a heavier upper tail than the normal model assumes.
    """
    suspect = np.asarray(suspect, dtype=np.float64)
    controls = np.asarray(controls, dtype=np.float64)
    if suspect.size == 1:  # one representation: the raw values are already comparable
        return float(suspect[0]), controls[:, 0].copy()
    m = controls.shape[0]
    zs = float(np.nanmean(_z(suspect, controls, normal=normal)))
    zc = np.empty(m)
    for j in range(m):
        rest = np.delete(controls, j, axis=0)
        if symmetric:
            rest = np.vstack([rest, suspect[None, :]])
        zc[j] = np.nanmean(_z(controls[j], rest, normal=normal))
    return zs, zc


def composite_scores_batch(
    suspect: np.ndarray, controls: np.ndarray, symmetric: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``composite_scores`` for a batch (e.g. bootstrap replicates) at once.

    ``suspect``: shape (B, R); ``controls``: shape (B, m, R). Returns (B,) and (B, m).
    """
    suspect = np.asarray(suspect, dtype=np.float64)
    controls = np.asarray(controls, dtype=np.float64)
    if suspect.shape[1] == 1:
        return suspect[:, 0].copy(), controls[:, :, 0].copy()
    m = controls.shape[1]
    with np.errstate(invalid="ignore"):
        zs = np.nanmean(_z(suspect, controls, axis=1), axis=1)
        zc = np.empty((suspect.shape[0], m))
        for j in range(m):
            rest = np.delete(controls, j, axis=1)
            if symmetric:
                rest = np.concatenate([rest, suspect[:, None, :]], axis=1)
            zc[:, j] = np.nanmean(_z(controls[:, j], rest, axis=1), axis=1)
    return zs, zc
