"""The owner's side of the watermark: a keyed green list over the protected model's own
token ids, and one small adapter per serving stack.

``core`` is pure (hmac, numpy); the adapters (``llama_cpp``, ``transformers``, ``vllm``)
import their stack only when used. Keys and their public ids live in ``keys``. Detection
stays in ``auditor.stats.watermark``.
"""

from __future__ import annotations

from auditor.watermark.core import GreenList
from auditor.watermark.keys import key_id

__all__ = ["GreenList", "key_id"]
