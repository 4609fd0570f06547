from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from auditor.stats.similarity import canary_similarities
from auditor.stats.text import STYLE_FEATURES, TextConfig, featurise, ngram_counts, style_features


def test_hashing_is_deterministic_and_case_insensitive_for_words() -> None:
    a = ngram_counts(["Hello world", "hello WORLD"], "word")
    assert (a[0] != a[1]).nnz == 0 and a[0].sum() == 3  # two words and one bigram


def test_layout_ignores_words_but_keeps_structure() -> None:
    x = featurise(["Alpha beta:\n\n1. gamma", "Delta epsilon:\n\n7. zeta", "plain text"], "layout")
    sims = (x @ x.T).toarray()
    assert sims[0, 1] > 0.99 and sims[0, 2] < 0.5


def test_rows_are_unit_norm_and_empty_text_is_allowed() -> None:
    for rep in ("word", "char", "layout", "style"):
        x = featurise(["some text here.", "", "more text\n- item"], rep)
        norms = np.asarray((x.multiply(x) if hasattr(x, "multiply") else x * x).sum(axis=1)).ravel()
        assert np.allclose(norms[[0, 2]], 1.0, atol=1e-5)


def test_style_features_have_named_columns() -> None:
    f = style_features(["Hi!\n\n- a\n- b", "x"])
    assert f.shape == (2, len(STYLE_FEATURES)) and np.isfinite(f).all()


def test_chunking_does_not_change_the_features() -> None:
    texts = [f"text number {i} with words {i % 7}" for i in range(500)]
    a = ngram_counts(texts, "char", TextConfig(chunk_bytes=100))
    b = ngram_counts(texts, "char", TextConfig(chunk_bytes=10**7))
    assert (a != b).nnz == 0


def test_similarity_tensor_marks_missing_answers_as_nan() -> None:
    resp = {"A": {"q1": ["x y"], "q2": ["z"]}, "B": {"q1": ["x y"]}}
    st = canary_similarities(resp, ["q1", "q2"], reps=("word",))
    assert np.isclose(st.sims[0, 0, 0, 1], 1.0) and np.isnan(st.sims[0, 1, 0, 1])


def test_similarity_tensor_carries_raw_style_rates_with_nan_for_missing_answers() -> None:
    resp = {"A": {"q1": ["Hi!\n- a", "Hello."], "q2": ["z"]}, "B": {"q1": ["x y"]}}
    st = canary_similarities(resp, ["q1", "q2"], reps=("word",))
    assert st.style is not None and st.style.shape == (2, 2, len(STYLE_FEATURES))
    assert np.isnan(st.style[1, 1]).all() and np.isfinite(st.style[0]).all()
    both = style_features(["Hi!\n- a", "Hello."]).mean(axis=0)
    assert np.allclose(st.style[0, 0], both)


def test_opening_similarity_is_common_prefix_length_over_n() -> None:
    texts = [
        "Sure! Here are some ideas: a b c",
        "sure, here are other things",
        "Here are some",
        "",
        "SURE here ARE some ideas too, and more",
    ]
    x = featurise(texts, "opening")
    sims = (x @ x.T).toarray()
    assert np.allclose(sims[0, 1], 3 / 5) and np.allclose(sims[0, 4], 1.0)
    assert np.allclose(sims[0, 2], 0.0) and np.allclose(sims[3], 0.0)
    assert np.allclose(sims[2, 2], 3 / 5)  # shorter than n words: partial norm
    x3 = featurise(texts, "opening", TextConfig(opening_n=3))
    assert np.allclose((x3 @ x3.T).toarray()[0, 1], 1.0)


def test_opening_is_chunk_invariant() -> None:
    texts = [f"Answer number {i} begins here and goes on" for i in range(50)]
    a = featurise(texts, "opening")
    b = featurise(texts, "opening", TextConfig(chunk_bytes=64))
    assert (a != b).nnz == 0


def _letter_encoder(texts: Sequence[str]) -> np.ndarray:
    """A stand-in sentence encoder: counts of the letters a..z (deterministic, dense)."""
    out = np.zeros((len(texts), 26))
    for i, t in enumerate(texts):
        for ch in t.lower():
            if "a" <= ch <= "z":
                out[i, ord(ch) - 97] += 1
    return out


def test_embedding_rows_are_the_encoders_vectors_at_unit_norm() -> None:
    cfg = TextConfig(encoder=_letter_encoder)
    x = featurise(["abc", "aab", ""], "embedding", cfg)
    assert isinstance(x, np.ndarray) and x.shape == (3, 26)
    np.testing.assert_allclose(np.linalg.norm(x[:2], axis=1), 1.0)
    assert np.all(x[2] == 0)
    np.testing.assert_allclose(x[0] @ x[1], 3 / np.sqrt(3 * 5))


def test_embedding_without_an_encoder_or_with_a_broken_one_says_what_to_set() -> None:
    with pytest.raises(ValueError, match="embedding_model"):
        featurise(["a"], "embedding")
    broken = TextConfig(encoder=lambda texts: np.ones((len(texts) + 1, 4)))
    with pytest.raises(ValueError, match="one finite row per text"):
        featurise(["a", "b"], "embedding", broken)


def test_similarity_tensor_takes_the_embedding_representation() -> None:
    responses = {
        "P": {"q1": ["aaa bbb"], "q2": ["zzz"]},
        "S": {"q1": ["aaa bbb", "aab"], "q2": ["zzy"]},
    }
    sim = canary_similarities(responses, reps=("word", "embedding"),
                              config=TextConfig(encoder=_letter_encoder))
    assert sim.reps == ("word", "embedding")
    e = sim.reps.index("embedding")
    # S's two samples on q1 are averaged, then compared with P's answer
    p = np.array([3.0, 3.0]) / np.sqrt(18)
    s1, s2 = np.array([3.0, 3.0]) / np.sqrt(18), np.array([2.0, 1.0]) / np.sqrt(5)
    np.testing.assert_allclose(sim.sims[e, 0, 1, 0], p @ ((s1 + s2) / 2))
    np.testing.assert_allclose(sim.sims[e, 1, 0, 1], 2 / np.sqrt(5))  # "zzz" vs "zzy"
