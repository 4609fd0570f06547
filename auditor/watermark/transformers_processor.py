"""The watermark as a Hugging Face transformers ``LogitsProcessor``.

    from transformers import LogitsProcessorList
    wm = transformers_processor(GreenList(key, model.config.vocab_size, gamma=0.25, delta=2.0))
    model.generate(**inputs, logits_processor=LogitsProcessorList([wm]), do_sample=True)

transformers calls it as ``(input_ids: LongTensor[batch, seq], scores: FloatTensor[batch,
vocab]) -> FloatTensor``. transformers and torch are imported only when the processor is
made.
"""

from __future__ import annotations

__all__ = ["transformers_processor"]

from typing import Any

from auditor.watermark._torch import add_green
from auditor.watermark.core import GreenList


def transformers_processor(green: GreenList) -> Any:
    """A ``transformers.LogitsProcessor`` adding ``green.delta`` to each row's green ids."""
    from transformers import LogitsProcessor

    class TransformersWatermark(LogitsProcessor):  # type: ignore[misc]
        def __init__(self, green: GreenList) -> None:
            self.green = green

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            scores = scores.clone()
            for row in range(scores.shape[0]):
                add_green(self.green, scores[row], input_ids[row].tolist())
            return scores

    return TransformersWatermark(green)
