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


# --- the straightforward featurisation the vectorised one must equal -------------------

_M64 = np.uint64(0x9E3779B97F4A7C15)
_B = np.uint64(1_000_003)
_BIGRAM_K = np.uint64(0xC2B2AE3D27D4EB4F)
_PUNCT_BYTES = set(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _ref_mix(h: np.uint64) -> np.uint64:
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(31))
        h = h * _M64
        return h ^ (h >> np.uint64(29))


def _ref_bytes(text: str, max_chars: int) -> bytes:
    return text[:max_chars].replace("\x00", " ").encode("utf-8", "replace")


def _is_word(b: int) -> bool:
    return chr(b).isascii() and chr(b).isalnum() or b >= 128


def _ref_poly(seq: bytes | list[int], plus_one: bool) -> np.uint64:
    """sum_k (c_k [+ 1]) * B**k, wrapping (the word hash); Horner order for n-grams."""
    h = np.uint64(0)
    with np.errstate(over="ignore"):
        if plus_one:
            for k, c in enumerate(seq):
                h = h + np.uint64(c + 1) * _B ** np.uint64(k)
        else:
            for c in seq:
                h = h * _B + np.uint64(c)
    return h


def _ref_word_list(data: bytes) -> list[bytes]:
    words, cur = [], bytearray()
    for b in data + b"\x00":
        if _is_word(b):
            cur.append(b)
        elif cur:
            words.append(bytes(cur))
            cur = bytearray()
    return words


def _ref_grams(text: str, kind: str, cfg: TextConfig) -> list[np.uint64]:
    data = _ref_bytes(text, cfg.max_chars)
    if kind == "word":
        hw = [_ref_mix(_ref_poly(w.lower(), True)) for w in _ref_word_list(data)]
        with np.errstate(over="ignore"):
            pairs = zip(hw[:-1], hw[1:], strict=True)
            return hw + [_ref_mix(a * _BIGRAM_K + b + np.uint64(7)) for a, b in pairs]
    if kind == "char":
        seq, n = list(data.lower()), cfg.char_n
    else:  # layout: runs of letters, digits and spaces become one w, 0 or space
        seq, n, last = [], cfg.layout_n, None
        for b in data:
            digit = 48 <= b <= 57
            cls = "0" if digit else "w" if _is_word(b) else " " if b in (9, 32) else None
            if cls is None or cls != last:
                seq.append(ord(cls) if cls else b)
            last = cls
    return [_ref_mix(_ref_poly(seq[i:i + n], False)) for i in range(len(seq) - n + 1)]


def _ref_counts(texts: Sequence[str], kind: str, cfg: TextConfig) -> np.ndarray:
    out = np.zeros((len(texts), 1 << cfg.bits), dtype=np.float32)
    for i, t in enumerate(texts):
        for h in _ref_grams(t, kind, cfg):
            out[i, int(h >> np.uint64(64 - cfg.bits))] += 1
    return out


def _ref_style(text: str, cfg: TextConfig) -> list[float]:
    d = _ref_bytes(text, cfg.max_chars)
    nb, lines = max(len(d), 1), d.count(b"\n") + 1
    pairs = [d[i:i + 2] for i in range(len(d))]
    nwords = max(len(_ref_word_list(d)), 1)
    return [np.log1p(len(text)), np.log(lines),
            sum(b in b"0123456789" for b in d) / nb,
            sum(65 <= b <= 90 for b in d) / nb,
            sum(b in _PUNCT_BYTES for b in d) / nb,
            sum(b in (9, 10, 32) for b in d) / nb,
            sum(b >= 128 for b in d) / nb,
            sum(p in (b"\n-", b"\n*") or p[:1] == b"\n" and p[1:].isdigit() for p in pairs) / lines,
            sum(_is_word(b) for b in d) / nwords,
            sum(p == b"\n\n" for p in pairs) / lines,
            d.count(b":") / nwords, d.count(b"!") / nwords, d.count(b"?") / nwords,
            sum(p == b"**" for p in pairs) / lines,
            sum(p == b"\n#" for p in pairs) / lines,
            d.count(b",") / nwords]


VARIED = [
    "", "x", "One", "Hello, World! 42 times?\n- a\n* b\n3. c\n\n# Title **bold** ***x***",
    "a\x00b\x00\x00 c", "\x00", "héllo wörld: ÉTÉ 日本語のテキスト 🙂🙂!",
    "\ud800 lone \udfff surrogates",
    "long " * 900, "A" * 5000, "\n\n\n- \n", "tab\tseparated\tvalues\t1\t2", "**",
    "x\n", "  leading and trailing spaces  ", "UPPER lower MiXeD 123abc abc123",
]


@pytest.mark.parametrize("cfg", [TextConfig(bits=12), TextConfig(bits=12, chunk_bytes=50,
                                                                  max_chars=300)])
def test_the_vectorised_features_equal_a_straightforward_computation(cfg: TextConfig) -> None:
    for kind in ("word", "char", "layout"):
        got = ngram_counts(VARIED, kind, cfg)
        assert got.has_canonical_format and got.dtype == np.float32
        assert np.array_equal(got.toarray(), _ref_counts(VARIED, kind, cfg)), kind
    want = np.array([_ref_style(t, cfg) for t in VARIED])
    assert np.allclose(style_features(VARIED, cfg), want, rtol=1e-12, atol=0)
