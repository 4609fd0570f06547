from __future__ import annotations

import numpy as np
import pytest

from auditor.stats.similarity import SimilarityTensor


def simulated_tensor(
    rng: np.random.Generator,
    n_controls: int,
    n_canaries: int,
    derived: float = 0.0,
    dim: int = 16,
    model_spread: float = 1.0,
    canary_noise: float = 3.0,
    reps: tuple[str, ...] = ("word", "layout", "style"),
) -> SimilarityTensor:
    """Models P, S, C1..Cm with latent profiles; S = derived * P + (1 - derived) * new model.

    With derived == 0, S is one more independent model: exchangeable with the controls.
    """
    names = ("P", "S", *[f"C{i}" for i in range(n_controls)])
    m = len(names)
    sims = np.empty((len(reps), n_canaries, m, m))
    for r in range(len(reps)):
        latent = rng.normal(size=(m, dim)) * model_spread
        latent[1] = derived * latent[0] + np.sqrt(1 - derived**2) * latent[1]
        x = latent[None, :, :] + canary_noise * rng.normal(size=(n_canaries, m, dim))
        x /= np.linalg.norm(x, axis=2, keepdims=True)
        sims[r] = np.einsum("qad,qbd->qab", x, x)
    counts = np.ones((n_canaries, m), dtype=np.int64)
    return SimilarityTensor(names, tuple(f"q{i}" for i in range(n_canaries)), reps, sims, counts)


@pytest.fixture
def sim_tensor():  # type: ignore[no-untyped-def]
    """The ``simulated_tensor`` factory."""
    return simulated_tensor
