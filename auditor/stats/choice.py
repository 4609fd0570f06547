"""Choice / distribution canaries ("pick a random number", "name a colour").

Per canary, each model's answers form a categorical distribution. The suspect's
closeness to P is ``1 - JSD`` (Jensen-Shannon distance, base 2) averaged over canaries;
the model-level p-value compares it with the controls' closeness to P (Student-t
prediction, as for free text). A per-canary G-test of S against P is also available
for the evidence table (it tests equality of distributions, not derivation).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

from .nullmodel import prediction_pvalue

__all__ = ["normalise_choice", "js_distance", "g_test", "ChoiceResult", "choice_test"]

_WS = re.compile(r"\s+")
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")


def normalise_choice(text: str) -> str:
    """Lower case, collapse spaces, strip surrounding punctuation: 'Blue.' -> 'blue'."""
    return _EDGE.sub("", _WS.sub(" ", (text or "").strip().lower()))


def _dist(a: Sequence[str], b: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    ca, cb = Counter(map(normalise_choice, a)), Counter(map(normalise_choice, b))
    keys = sorted(set(ca) | set(cb))
    return (
        np.array([ca[k] for k in keys], dtype=np.float64),
        np.array([cb[k] for k in keys], dtype=np.float64),
    )


def js_distance(a: Sequence[str], b: Sequence[str]) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two samples of answers."""
    x, y = _dist(a, b)
    if x.sum() == 0 or y.sum() == 0:
        return float("nan")
    return float(jensenshannon(x / x.sum(), y / y.sum(), base=2))


def g_test(a: Sequence[str], b: Sequence[str]) -> tuple[float, float]:
    """G-test of homogeneity of two samples of answers: (G statistic, p-value)."""
    x, y = _dist(a, b)
    keep = (x + y) > 0
    table = np.vstack([x[keep], y[keep]])
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    g, p, _, _ = stats.chi2_contingency(table, lambda_="log-likelihood", correction=False)
    return float(g), float(p)


@dataclass(frozen=True)
class ChoiceResult:
    p_value: float
    statistic: float
    suspect_closeness: float
    control_closeness: dict[str, float]
    per_canary: tuple[tuple[str, float, float], ...]  # (canary, 1-JSD(S,P), mean 1-JSD(C,P))


def _closeness(x: Mapping[str, Sequence[str]], p: Mapping[str, Sequence[str]]) -> dict[str, float]:
    out = {}
    for cid, ans in p.items():
        if cid in x and x[cid] and ans:
            out[cid] = 1.0 - js_distance(x[cid], ans)
    return out


def choice_test(
    protected: Mapping[str, Sequence[str]],
    suspect: Mapping[str, Sequence[str]],
    controls: Mapping[str, Mapping[str, Sequence[str]]],
) -> ChoiceResult:
    """Model-level test: is the suspect's answer distribution closer to P's than controls' are?"""
    cs = _closeness(suspect, protected)
    cc = {name: _closeness(resp, protected) for name, resp in controls.items()}
    s_val = float(np.mean(list(cs.values()))) if cs else float("nan")
    c_val = {k: float(np.mean(list(v.values()))) if v else float("nan") for k, v in cc.items()}
    p, t = prediction_pvalue(s_val, np.array(list(c_val.values())))
    per = []
    for cid, v in cs.items():
        ctrl = [d[cid] for d in cc.values() if cid in d]
        per.append((cid, v, float(np.mean(ctrl)) if ctrl else float("nan")))
    per.sort(key=lambda r: -(r[1] - (0.0 if np.isnan(r[2]) else r[2])))
    return ChoiceResult(p, t, s_val, c_val, tuple(per))
