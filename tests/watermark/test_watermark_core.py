"""The pure core: green lists keyed by HMAC over the previous h token ids."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from auditor.watermark.core import PAD, GreenList

KEY = bytes(range(32))
V = 5000


def test_the_same_key_and_context_give_the_same_list_in_a_fresh_instance() -> None:
    a = GreenList(KEY, V, gamma=0.3, h=2).green_mask([7, 8, 9])
    b = GreenList(KEY, V, gamma=0.3, h=2).green_mask([1, 8, 9])  # only the last h count
    assert np.array_equal(a, b)
    assert not np.array_equal(a, GreenList(KEY, V, gamma=0.3, h=2).green_mask([8, 8]))


def test_the_scalar_test_agrees_with_the_mask() -> None:
    g = GreenList(KEY, V, gamma=0.25, h=3)
    mask = g.green_mask([3, 1, 4, 1])
    assert [g.is_green([3, 1, 4, 1], t) for t in range(V)] == mask.tolist()


@pytest.mark.parametrize("gamma", [0.1, 0.25, 0.5])
def test_green_fraction_is_gamma_over_many_contexts(gamma: float) -> None:
    g = GreenList(KEY, V, gamma=gamma)
    counts = [int(g.green_mask([c]).sum()) for c in range(200)]
    n = 200 * V
    # two-sided binomial test of the pooled count: fails on a biased list, not by chance
    assert stats.binomtest(sum(counts), n, gamma).pvalue > 1e-4
    # and each single list is near gamma * V (5 sigma)
    sd = (V * gamma * (1 - gamma)) ** 0.5
    assert all(abs(c - gamma * V) < 5 * sd for c in counts)


def test_different_keys_give_independent_lists() -> None:
    gamma = 0.25
    a = GreenList(KEY, V, gamma=gamma)
    b = GreenList(bytes(32), V, gamma=gamma)
    both = sum(int((a.green_mask([c]) & b.green_mask([c])).sum()) for c in range(50))
    n = 50 * V  # independent lists share a token with probability gamma**2
    assert stats.binomtest(both, n, gamma**2).pvalue > 1e-4


def test_bias_adds_delta_exactly_to_the_green_ids_of_an_array() -> None:
    g = GreenList(KEY, V, gamma=0.25, delta=2.5)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=V + 16).astype(np.float32)  # a padded vocabulary
    out = g.bias(logits, [11, 12])
    mask = g.green_mask([12])
    assert out.dtype == np.float32 and out.shape == logits.shape
    assert np.array_equal(out[:V][mask], logits[:V][mask] + np.float32(2.5))
    assert np.array_equal(out[:V][~mask], logits[:V][~mask])
    assert np.array_equal(out[V:], logits[V:])
    assert not np.array_equal(out, logits)


def test_bias_on_a_plain_list_returns_a_list() -> None:
    g = GreenList(KEY, 50, gamma=0.5, delta=1.0)
    logits = [float(i) for i in range(50)]
    out = g.bias(logits, [3])
    mask = g.green_mask([3])
    assert isinstance(out, list)
    assert out == [x + 1.0 if mask[i] else x for i, x in enumerate(logits)]


def test_sequence_start_pads_the_context_and_is_watermarked_too() -> None:
    g = GreenList(KEY, V, h=3)
    assert g.context([]) == (PAD, PAD, PAD)
    assert g.context([5]) == (PAD, PAD, 5)
    assert g.context(np.array([1, 2, 3, 4])) == (2, 3, 4)
    empty, one = g.green_mask([]), g.green_mask([5])
    assert 0 < empty.sum() < V
    assert not np.array_equal(empty, one)
    assert np.array_equal(one, g.green_mask(np.array([5], dtype=np.intc)))


def test_h_is_part_of_the_seed() -> None:
    """h=1 after [5] and h=2 after [PAD, 5] must not be the same list by construction."""
    assert not np.array_equal(GreenList(KEY, V, h=1).green_mask([5]),
                              GreenList(KEY, V, h=2).green_mask([5]))


@pytest.mark.parametrize("kwargs, message", [
    ({"gamma": 0.0}, "gamma"), ({"gamma": 1.0}, "gamma"), ({"delta": -1.0}, "delta"),
    ({"h": 0}, "h "), ({"vocab_size": 1}, "vocab_size")])
def test_bad_parameters_are_refused(kwargs: dict[str, float], message: str) -> None:
    args = {"key": KEY, "vocab_size": V, **kwargs}
    with pytest.raises(ValueError, match=message):
        GreenList(**args)  # type: ignore[arg-type]


def test_too_few_logits_and_out_of_range_tokens_are_refused() -> None:
    g = GreenList(KEY, V)
    with pytest.raises(ValueError, match="logits for a vocabulary"):
        g.bias(np.zeros(V - 1), [1])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        g.is_green([1], V)


def test_the_key_never_shows_in_the_repr() -> None:
    assert KEY.hex() not in repr(GreenList(KEY, V)) and str(KEY) not in repr(GreenList(KEY, V))


def test_the_seed_is_the_documented_hmac_of_domain_h_and_ids() -> None:
    """The green lists must not change with an upgrade: the seed is pinned to its
    definition (HMAC-SHA256 of "auditor-watermark-v1", h as a byte, ids as 4-byte words)."""
    import hashlib
    import hmac
    import struct

    for h, ids in ((1, [5]), (3, [7, 8, 9]), (2, [4])):
        g = GreenList(KEY, V, h=h)
        ctx = g.context(ids)
        msg = b"auditor-watermark-v1" + struct.pack(f">B{h}I", h, *ctx)
        want = int.from_bytes(hmac.new(KEY, msg, hashlib.sha256).digest()[:8], "big")
        assert g.seed(ids) == want
        assert g.seeds([ctx])[0] == want


def test_many_pairs_at_once_agree_with_the_scalar_test() -> None:
    g = GreenList(KEY, V, gamma=0.3, h=2)
    rng = np.random.default_rng(9)
    windows = [tuple(int(x) for x in rng.integers(V, size=2)) for _ in range(300)]
    tokens = rng.integers(V, size=300)
    got = g.green_pairs(windows, tokens)
    assert got.tolist() == [g.is_green(list(w), int(t)) for w, t in zip(windows, tokens,
                                                                        strict=True)]
    assert 0 < got.sum() < 300
