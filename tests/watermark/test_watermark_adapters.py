"""The serving-stack adapters, called the way each stack calls them."""

from __future__ import annotations

import importlib.util
import inspect

import numpy as np
import pytest

from auditor.watermark.core import GreenList
from auditor.watermark.llama_cpp_processor import LlamaCppWatermark
from auditor.watermark.vllm_processor import VllmWatermark

KEY = b"adapter-test-key-0123456789abcdef"
V = 1000


def test_llama_cpp_processor_biases_after_the_last_ids_and_keeps_dtype() -> None:
    g = GreenList(KEY, V, gamma=0.25, delta=3.0, h=2)
    input_ids = np.array([2, 40, 41], dtype=np.intc)  # prompt and generated so far
    scores = np.linspace(-1, 1, V, dtype=np.single)
    out = LlamaCppWatermark(g)(input_ids, scores)
    mask = g.green_mask([40, 41])
    assert out.dtype == np.single
    assert np.array_equal(out - scores, np.where(mask, np.single(3.0), np.single(0.0)))
    assert np.array_equal(scores, np.linspace(-1, 1, V, dtype=np.single))  # not mutated


def test_vllm_processor_reads_prompt_then_output_ids() -> None:
    g = GreenList(KEY, V, delta=1.5, h=2)
    proc = VllmWatermark(g)
    assert list(inspect.signature(proc).parameters) == [
        "prompt_token_ids", "output_token_ids", "logits"]
    logits = np.zeros(V, dtype=np.float32)
    # at the first output token the context is the prompt's end...
    first = proc([5, 6, 7], [], logits)
    assert np.array_equal(first > 0, g.green_mask([6, 7]))
    # ...and later it spans the prompt and the output
    later = proc([5, 6, 7], [9], logits)
    assert np.array_equal(later > 0, g.green_mask([7, 9]))
    assert np.all(later[later > 0] == np.float32(1.5))


def test_an_unbiased_sample_is_green_at_gamma_and_a_biased_one_far_above() -> None:
    """Sampling with the processor from flat logits raises the green rate from gamma to
    gamma*e^delta / (gamma*e^delta + 1 - gamma); the generation loop here is the one every
    stack runs."""
    gamma, delta, n = 0.25, 2.0, 3000
    g = GreenList(KEY, V, gamma=gamma, delta=delta)
    proc = LlamaCppWatermark(g)
    rng = np.random.default_rng(1)

    def green_rate(watermark: bool) -> float:
        ids, green = [1], 0
        for _ in range(n):
            logits = np.zeros(V)
            if watermark:
                logits = proc(np.array(ids), logits)
            p = np.exp(logits - logits.max())
            tok = int(rng.choice(V, p=p / p.sum()))
            green += g.is_green(ids, tok)
            ids.append(tok)
        return green / n

    expected = gamma * np.e**delta / (gamma * np.e**delta + 1 - gamma)
    sd = lambda q: (q * (1 - q) / n) ** 0.5  # noqa: E731
    assert abs(green_rate(False) - gamma) < 5 * sd(gamma)
    assert abs(green_rate(True) - expected) < 5 * sd(expected)


@pytest.mark.skipif(importlib.util.find_spec("transformers") is None
                    or importlib.util.find_spec("torch") is None,
                    reason="transformers and torch are not installed (not a dependency; "
                           "pip install torch transformers to run this)")
def test_transformers_processor_is_a_logits_processor_and_biases_each_row() -> None:
    import torch
    from transformers import LogitsProcessor

    from auditor.watermark.transformers_processor import transformers_processor

    g = GreenList(KEY, V, delta=2.0, h=1)
    proc = transformers_processor(g)
    assert isinstance(proc, LogitsProcessor)
    scores = torch.zeros((2, V + 8))
    out = proc(torch.tensor([[1, 2], [3, 4]]), scores)
    for row, last in ((0, 2), (1, 4)):
        expect = torch.from_numpy(g.green_mask([last]).astype(np.float32)) * 2.0
        assert torch.equal(out[row, :V], expect)
        assert torch.equal(out[row, V:], torch.zeros(8))
