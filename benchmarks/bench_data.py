"""Load the provenance benchmark (third-party text, read at run time, never copied).

The benchmark lives in ``../shared/provenance-bench`` relative to the repository (or the
directory named by the ``PROVENANCE_BENCH`` environment variable):

- ``prompts.jsonl``: ``{"id", "instruction", "source"}`` rows;
- ``outputs/<model>.jsonl.gz``: ``{"id", "output"}`` rows, one per answered prompt;
- ``cases.dev.json``: ``{"controls": [...], "cases": [{"protected", "suspect", "label"}]}``.
"""

from __future__ import annotations

import gzip
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "Case",
    "CasesFile",
    "bench_dir",
    "bench_available",
    "load_prompts",
    "load_outputs",
    "load_cases",
    "common_prompt_ids",
    "auroc",
    "draw_canaries",
]

_REPO = Path(__file__).resolve().parents[1]


def bench_dir() -> Path:
    """Directory of the provenance benchmark."""
    env = os.environ.get("PROVENANCE_BENCH")
    if env:
        return Path(env)
    return _REPO.parent / "shared" / "provenance-bench"


def bench_available() -> bool:
    d = bench_dir()
    return (d / "prompts.jsonl").is_file() and (d / "outputs").is_dir()


@dataclass(frozen=True)
class Case:
    protected: str
    suspect: str
    label: int


@dataclass(frozen=True)
class CasesFile:
    controls: tuple[str, ...]
    cases: tuple[Case, ...]

    def models(self) -> list[str]:
        names: list[str] = list(self.controls)
        for c in self.cases:
            for m in (c.protected, c.suspect):
                if m not in names:
                    names.append(m)
        return names

    def protected_models(self) -> list[str]:
        out: list[str] = []
        for c in self.cases:
            if c.protected not in out:
                out.append(c.protected)
        return out


def load_prompts(root: Path | None = None) -> dict[str, str]:
    """Prompt id -> instruction."""
    path = (root or bench_dir()) / "prompts.jsonl"
    out: dict[str, str] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                out[row["id"]] = row["instruction"]
    return out


@lru_cache(maxsize=128)
def _load_outputs_cached(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                out[row["id"]] = row["output"] or ""
    return out


def load_outputs(model: str, root: Path | None = None) -> dict[str, str]:
    """Prompt id -> the model's output (one sample per prompt)."""
    path = (root or bench_dir()) / "outputs" / f"{model}.jsonl.gz"
    return _load_outputs_cached(str(path))


def load_cases(path: Path | None = None) -> CasesFile:
    p = path or (bench_dir() / "cases.dev.json")
    data = json.loads(p.read_text(encoding="utf-8"))
    cases = tuple(
        Case(str(c["protected"]), str(c["suspect"]), int(c["label"])) for c in data["cases"]
    )
    return CasesFile(controls=tuple(data["controls"]), cases=cases)


def common_prompt_ids(models: list[str], root: Path | None = None) -> list[str]:
    """Sorted prompt ids answered by every model in ``models``."""
    ids: set[str] | None = None
    for m in models:
        got = set(load_outputs(m, root))
        ids = got if ids is None else ids & got
    return sorted(ids or set())


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).mean()
    eq = (pos[:, None] == neg[None, :]).mean()
    return float(gt + 0.5 * eq)


def ceiling_tpr(scores: np.ndarray, labels: np.ndarray, alpha: float = 0.05) -> float:
    """The highest TPR any threshold on ``scores`` reaches while its FPR stays <= ``alpha``.

    An oracle that sets the threshold with the labels in hand: no p-value computed from
    the same statistic, however well calibrated, can flag more positives at that FPR.
    It shows whether a statistic *can* separate the cases, apart from its null model.
    """
    pos, neg = scores[labels == 1], scores[labels == 0]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    allowed = int(np.floor(alpha * neg.size))  # negatives allowed at or above the threshold
    neg_desc = np.sort(neg)[::-1]
    # flag scores strictly above the (allowed+1)-th highest negative
    bar = neg_desc[allowed] if allowed < neg.size else -np.inf
    return float((pos > bar).mean())


def score_pvalues(p: np.ndarray, labels: np.ndarray, alpha: float = 0.05) -> dict[str, float]:
    """The protocol's metrics of p-values: AUROC of -log10(p), TPR and FPR at ``p <= alpha``,
    and the ceiling TPR of that ordering (``ceiling_tpr``)."""
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(labels)
    score = -np.log10(np.clip(p, 1e-300, 1.0))
    tpr = float((p[y == 1] <= alpha).mean()) if (y == 1).any() else float("nan")
    fpr = float((p[y == 0] <= alpha).mean()) if (y == 0).any() else float("nan")
    return {"auroc": auroc(score, y), "tpr": tpr, "fpr": fpr,
            "ceiling": ceiling_tpr(score, y, alpha)}


def draw_canaries(ids: list[str], n: int, seed: int) -> list[str]:
    """Draw ``n`` ids uniformly without replacement (seeded)."""
    rng = np.random.default_rng(seed)
    n = min(n, len(ids))
    idx = rng.choice(len(ids), size=n, replace=False)
    return [ids[i] for i in sorted(idx)]
