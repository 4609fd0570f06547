from __future__ import annotations

import numpy as np
from scipy import stats

from auditor.stats.watermark import is_green, radioactivity_test

KEY = b"secret-test-key"


def test_each_context_token_pair_is_scored_once() -> None:
    r = radioactivity_test(["a b a b a b a b"], KEY, context_width=1)
    assert r.scored == 2  # (a, b) and (b, a)
    assert r.skipped_duplicates == 5


def test_repeating_a_text_does_not_change_the_evidence() -> None:
    text = "the quick brown fox jumps over the lazy dog " * 3
    assert radioactivity_test([text], KEY).p_value == radioactivity_test([text] * 20, KEY).p_value


def test_pvalue_is_uniform_on_unwatermarked_random_text() -> None:
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(5000)]
    ps = []
    for _ in range(200):
        text = " ".join(rng.choice(vocab, 300))
        ps.append(radioactivity_test([text], KEY, gamma=0.25).p_value)
    # the binomial tail is discrete, hence conservative: compare the size, not the shape
    ps = np.array(ps)
    for u in (0.05, 0.1, 0.3):
        assert np.mean(ps <= u) <= u + 2.5 * np.sqrt(u * (1 - u) / ps.size)
    assert stats.kstest(ps, "uniform").pvalue > 1e-4


def test_green_biased_text_is_detected() -> None:
    rng = np.random.default_rng(1)
    vocab = [f"w{i}" for i in range(5000)]
    toks = [str(rng.choice(vocab))]
    for _ in range(400):
        cands = rng.choice(vocab, 4)
        greens = [c for c in cands if is_green(KEY, (toks[-1],), str(c), 0.25)]
        toks.append(str(greens[0] if greens and rng.random() < 0.5 else cands[0]))
    r = radioactivity_test([" ".join(toks)], KEY, gamma=0.25)
    assert r.p_value < 1e-6 and r.green_rate > 0.3


def test_wrong_key_sees_no_watermark() -> None:
    rng = np.random.default_rng(2)
    vocab = [f"w{i}" for i in range(5000)]
    toks = [str(rng.choice(vocab))]
    for _ in range(400):
        cands = rng.choice(vocab, 4)
        greens = [c for c in cands if is_green(KEY, (toks[-1],), str(c), 0.25)]
        toks.append(str(greens[0] if greens else cands[0]))
    assert radioactivity_test([" ".join(toks)], b"other-key").p_value > 0.001
