"""The watermark in vLLM's per-request logits-processor signature.

vLLM calls a per-request processor as ``(prompt_token_ids, output_token_ids, logits) ->
logits`` (``logits`` the next token's row, a torch tensor). Since the V1 engine, per-request
processors are no longer passed in ``SamplingParams``: they are returned from
``new_req_logits_processor(params)`` of a subclass of
``vllm.v1.sample.logits_processor.AdapterLogitsProcessor`` loaded with the engine
(``logits_processors=[...]``), which applies them row by row; see vLLM's "Custom Logits
Processors" documentation. A numpy row is also accepted (then a new array is returned).
"""

from __future__ import annotations

__all__ = ["VllmWatermark"]

from collections.abc import Sequence
from typing import Any

import numpy as np

from auditor.watermark._torch import add_green
from auditor.watermark.core import GreenList


class VllmWatermark:
    def __init__(self, green: GreenList) -> None:
        self.green = green

    def __call__(self, prompt_token_ids: Sequence[int], output_token_ids: Sequence[int],
                 logits: Any) -> Any:
        ids = [*prompt_token_ids, *output_token_ids]
        if isinstance(logits, np.ndarray):
            return self.green.bias(logits, ids)
        add_green(self.green, logits, ids)
        return logits
