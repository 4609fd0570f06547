"""The watermark test on real, never-watermarked text is calibrated (a small version of
``python -m benchmarks.watermark calibration``); skipped without the benchmark data."""

from __future__ import annotations

import pytest

from benchmarks.bench_data import bench_available, draw_canaries, load_outputs

pytestmark = [
    pytest.mark.skipif(not bench_available(),
                       reason="provenance-bench data not found at ../shared/provenance-bench "
                       "(set PROVENANCE_BENCH to its directory)"),
    pytest.mark.slow,
]
pytest.importorskip("tokenizers", reason="the watermark extra is not installed")

MODELS = ["alpaca-7b", "gpt4", "Meta-Llama-3-8B-Instruct", "vicuna-13b", "Qwen-14B-Chat",
          "oasst-sft-llama-33b", "Mistral-7B-Instruct-v0.2", "claude-2", "guanaco-7b",
          "Yi-34B-Chat"]


def test_real_unwatermarked_answers_give_uniform_p_values_under_fresh_keys() -> None:
    from benchmarks.bench_data import bench_dir, load_prompts
    from benchmarks.watermark import calibrate, train_tokenizer

    have = {p.name.removesuffix(".jsonl.gz") for p in (bench_dir() / "outputs").iterdir()}
    models = [m for m in MODELS if m in have] or sorted(have)[:10]
    tok = train_tokenizer(list(load_prompts().values()), 4096)
    seqs = []
    for i, m in enumerate(models):
        out = load_outputs(m)
        seqs.append(tok.encode_batch([out[k] for k in draw_canaries(sorted(out), 30, i)]))
    rows = calibrate(seqs, tok.vocab_size, hs=[1, 2], gammas=[0.25, 0.5], keys=60, seed=3)
    for r in rows:
        assert r.median_scored > 2000
        # FPR within sampling error between keys (3 SE), the KS test not rejecting
        assert r.fpr05 <= 0.05 + 3 * max(r.se05, 0.01), r
        assert r.fpr01 <= 0.01 + 3 * max(r.se01, 0.005), r
        assert r.ks_p > 1e-3, r
