"""Per-canary similarity between models, for every representation.

Input is ``responses[model][canary_id] -> list of texts`` (k >= 1 samples). Every text is
featurised once (linear cost), the samples of one model on one canary are averaged into
one unit-scale vector, and for each canary the Gram matrix between models is computed.
The result, ``SimilarityTensor.sims[rep, canary, model_a, model_b]``, is all the
free-text provenance test needs, so many (suspect, protected) pairs share one pass; the
raw style rates per (canary, model) ride along in ``SimilarityTensor.style``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .text import REPRESENTATIONS, TextConfig, featurise, style_features, style_rows

__all__ = ["SimilarityTensor", "canary_similarities"]

Responses = Mapping[str, Mapping[str, Sequence[str]]]


@dataclass(frozen=True)
class SimilarityTensor:
    """``sims[r, q, a, b]``: mean cosine between model a's and model b's samples on canary q
    in representation ``reps[r]``; NaN where either model has no sample. ``counts[q, a]``
    is the number of samples of model a on canary q. ``style[q, a, f]``: model a's style
    rates (``text.STYLE_FEATURES``, raw, averaged over samples) on canary q, NaN where
    missing; ``None`` when not computed (the residual channel is then skipped)."""

    models: tuple[str, ...]
    canaries: tuple[str, ...]
    reps: tuple[str, ...]
    sims: np.ndarray
    counts: np.ndarray
    style: np.ndarray | None = None

    def index(self, model: str) -> int:
        try:
            return self.models.index(model)
        except ValueError:
            raise KeyError(f"model {model!r} has no responses in this similarity tensor") from None


def canary_similarities(
    responses: Responses,
    canaries: Sequence[str] | None = None,
    reps: Sequence[str] = ("word", "layout", "style"),
    config: TextConfig | None = None,
) -> SimilarityTensor:
    """Featurise every response once and return per-canary model-by-model similarities."""
    models = tuple(responses)
    if canaries is None:
        seen: dict[str, None] = {}
        for m in models:
            for c in responses[m]:
                seen.setdefault(c, None)
        canaries = tuple(seen)
    canaries = tuple(canaries)
    qi = {c: i for i, c in enumerate(canaries)}
    n_q, n_m = len(canaries), len(models)

    texts: list[str] = []
    group: list[int] = []
    counts = np.zeros((n_q, n_m), dtype=np.int64)
    for mi, m in enumerate(models):
        for c, samples in responses[m].items():
            q = qi.get(c)
            if q is None:
                continue
            for t in samples:
                texts.append(t or "")
                group.append(q * n_m + mi)
                counts[q, mi] += 1
    g = np.asarray(group, dtype=np.int64)
    w = 1.0 / counts.ravel()[g] if g.size else np.zeros(0)
    # sparse averaging operator: (canary, model) group x response
    agg = sp.csr_matrix((w.astype(np.float32), (g, np.arange(g.size))), shape=(n_q * n_m, g.size))

    sims = np.full((len(reps), n_q, n_m, n_m), np.nan, dtype=np.float64)
    present = counts > 0
    # raw style rates per (canary, model): the residual channel of provenance_test
    raw = style_features(texts, config)
    style = np.asarray(agg @ raw).reshape(n_q, n_m, -1)
    style[~present] = np.nan
    for r, rep in enumerate(reps):
        if rep not in REPRESENTATIONS:
            raise ValueError(f"unknown representation {rep!r}; choose from {REPRESENTATIONS}")
        x = style_rows(raw) if rep == "style" else featurise(texts, rep, config)
        if isinstance(x, np.ndarray):
            means = np.asarray(agg @ x).reshape(n_q, n_m, -1)
            gram = np.einsum("qad,qbd->qab", means, means)
        else:
            means_sp = (agg @ x).tocsr()
            gram = np.empty((n_q, n_m, n_m))
            for q in range(n_q):
                block = means_sp[q * n_m : (q + 1) * n_m]
                gram[q] = (block @ block.T).toarray()
        mask = present[:, :, None] & present[:, None, :]
        sims[r] = np.where(mask, gram, np.nan)
    return SimilarityTensor(models, canaries, tuple(reps), sims, counts, style)
