"""Logprob canaries: next-token distributions on fixed prefixes, where endpoints return them.

Each observation is a mapping token -> logprob (the top-k list an API returns). Closeness
of X to P, averaged over positions: the top-k overlap (Jaccard of the token sets), or
``1 - KL(P||X) / 20``, the KL on P's listed tokens as a share of its bound (a token the
other list lacks counts at log-probability -20). Model level as for free text: the
suspect's closeness against the controls' (Student-t prediction p-value), on the logit
scale.

Why the logit: closeness to P is bounded and skewed across models (most models are far
from P, a few close), and the prediction p-value assumes a normal law. On simulated
exchangeable models the raw mean overlap rejected 2.7 % of the time at alpha 0.01 and
the mean ``exp(-KL)`` 12 % at alpha 0.05; on the logit scale both stay within sampling
error of alpha (``tests/stats/test_channels.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .nullmodel import prediction_pvalue

__all__ = ["topk_overlap", "kl_divergence", "LogprobResult", "logprob_test"]

TopK = Mapping[str, float]
_EPS = 1e-6
_FLOOR = -20.0  # log-probability of a token the other list does not show


def topk_overlap(a: TopK, b: TopK) -> float:
    """Jaccard overlap of two top-k token sets."""
    sa, sb = set(a), set(b)
    if not sa and not sb:
        return float("nan")
    return len(sa & sb) / len(sa | sb)


def kl_divergence(p: TopK, q: TopK, floor: float = -20.0) -> float:
    """KL(p || q) over p's top-k tokens (p renormalised); tokens missing from q get ``floor``."""
    if not p:
        return float("nan")
    toks = list(p)
    lp = np.array([p[t] for t in toks], dtype=np.float64)
    lq = np.array([q.get(t, floor) for t in toks], dtype=np.float64)
    norm = np.logaddexp.reduce(lp)
    pp = np.exp(lp - norm)
    # both truncated lists are normalised by p's listed mass; tokens q does not list
    # count as the floor log-probability
    return float(max(np.sum(pp * (np.log(pp) - (lq - norm))), 0.0))


@dataclass(frozen=True)
class LogprobResult:
    p_value: float
    statistic: float
    suspect_closeness: float
    control_closeness: dict[str, float]
    measure: str


def _closeness(
    x: Mapping[str, Sequence[TopK]], p: Mapping[str, Sequence[TopK]], measure: str
) -> float:
    vals = []
    for cid, positions in p.items():
        other = x.get(cid)
        if not other:
            continue
        for a, b in zip(positions, other, strict=False):
            if measure == "overlap":
                v = topk_overlap(a, b)
            else:  # 1 - KL as a share of its bound (every listed token missing)
                v = 1.0 + kl_divergence(a, b, _FLOOR) / _FLOOR
            if np.isfinite(v):
                vals.append(v)
    if not vals:
        return float("nan")
    m = min(max(float(np.mean(vals)), _EPS), 1 - _EPS)
    return float(np.log(m) - np.log1p(-m))  # logit


def logprob_test(
    protected: Mapping[str, Sequence[TopK]],
    suspect: Mapping[str, Sequence[TopK]],
    controls: Mapping[str, Mapping[str, Sequence[TopK]]],
    measure: str = "overlap",
) -> LogprobResult:
    """canary_id -> list of top-k dicts (one per position or sample), for P, S and controls."""
    if measure not in ("overlap", "kl"):
        raise ValueError("measure must be 'overlap' or 'kl'")
    s = _closeness(suspect, protected, measure)
    c = {k: _closeness(v, protected, measure) for k, v in controls.items()}
    vals = np.array([v for v in c.values() if np.isfinite(v)])
    p, t = prediction_pvalue(s, vals)
    return LogprobResult(p, t, s, c, measure)
