"""The watermark as a llama-cpp-python logits processor.

    from llama_cpp import Llama, LogitsProcessorList
    llm = Llama(model_path=...)
    wm = LlamaCppWatermark(GreenList(key, llm.n_vocab(), gamma=0.25, delta=2.0, h=1))
    llm.create_completion(prompt, logits_processor=LogitsProcessorList([wm]))

llama-cpp-python calls a processor as ``(input_ids, scores) -> scores`` with numpy arrays:
``input_ids`` the prompt and the tokens generated so far, ``scores`` the next token's
logits over the vocabulary. Nothing here imports llama_cpp.
"""

from __future__ import annotations

__all__ = ["LlamaCppWatermark"]

from typing import Any

import numpy as np
import numpy.typing as npt

from auditor.watermark.core import GreenList


class LlamaCppWatermark:
    def __init__(self, green: GreenList) -> None:
        self.green = green

    def __call__(self, input_ids: npt.NDArray[np.intc],
                 scores: npt.NDArray[np.single]) -> npt.NDArray[Any]:
        return self.green.bias(scores, input_ids)
