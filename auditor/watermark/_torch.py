"""The one torch operation the transformers and vLLM adapters share (torch imported lazily)."""

from __future__ import annotations

from typing import Any

from auditor.watermark.core import GreenList


def add_green(green: GreenList, row: Any, ids: Any) -> None:
    """Adds ``delta`` in place to the green entries of one torch logits row."""
    import torch

    mask = torch.from_numpy(green.green_mask(ids).copy()).to(device=row.device,
                                                             dtype=row.dtype)
    row[: green.vocab_size] += green.delta * mask
