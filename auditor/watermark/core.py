"""A keyed green-list watermark over token ids (Kirchenbauer et al. 2023).

For each position the previous ``h`` token ids seed a green list over the vocabulary
``0 .. V-1``: the seed is ``HMAC-SHA256(key, "auditor-watermark-v1" || h || ids)`` (ids as
4-byte big-endian; positions before the start of the sequence are the sentinel
``0xFFFFFFFF``, so the first tokens are watermarked too). Token ``t`` is green under a seed
when the SplitMix64 output at counter ``t + 1`` of the stream started at the seed falls in
the first ``gamma`` fraction of the 64-bit range, so each token is green with probability
``gamma`` independently of the text, and a whole mask over a large vocabulary is one
vectorised numpy pass. The processor adds ``delta`` to the logits of green tokens.

Everything here is deterministic and has no state but a small cache of recent masks.
"""

from __future__ import annotations

__all__ = ["GreenList", "PAD"]

import hashlib
import hmac
import struct
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

PAD = 0xFFFFFFFF  # the context id before the first token
_DOMAIN = b"auditor-watermark-v1"
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1
_CACHE = 64

Logits = TypeVar("Logits", list[float], npt.NDArray[Any])


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's output function; uint64 arithmetic wraps, as the algorithm wants."""
    with np.errstate(over="ignore"):
        z = (x ^ (x >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
        return z ^ (z >> np.uint64(31))


def _splitmix64_int(x: int) -> int:
    z = ((x ^ (x >> 30)) * _M1) & _MASK64
    z = ((z ^ (z >> 27)) * _M2) & _MASK64
    return z ^ (z >> 31)


class GreenList:
    """The green lists of one key over a vocabulary of ``vocab_size`` token ids."""

    def __init__(self, key: bytes, vocab_size: int, gamma: float = 0.25,
                 delta: float = 2.0, h: int = 1) -> None:
        if not key:
            raise ValueError("the watermark key is empty")
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be at least 2, got {vocab_size}")
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {gamma}")
        if delta < 0.0:
            raise ValueError(f"delta must be >= 0, got {delta}")
        if h < 1:
            raise ValueError(f"h (context width) must be >= 1, got {h}")
        self._key = key
        self.vocab_size = vocab_size
        self.gamma = gamma
        self.delta = delta
        self.h = h
        self._threshold = min(int(gamma * 2**64), _MASK64)
        self._counters = (np.arange(1, vocab_size + 1, dtype=np.uint64)
                          * np.uint64(_GOLDEN))  # wraps: counter t+1 of the stream
        self._pack = struct.Struct(f">{h}I").pack
        # HMAC state after the fixed prefix (domain, h): each window only adds its ids
        self._prefix = hmac.new(key, _DOMAIN + struct.pack(">B", h), hashlib.sha256)
        self._masks: OrderedDict[tuple[int, ...], npt.NDArray[np.bool_]] = OrderedDict()

    def __repr__(self) -> str:  # never the key
        return (f"GreenList(vocab_size={self.vocab_size}, gamma={self.gamma}, "
                f"delta={self.delta}, h={self.h})")

    def context(self, ids: Sequence[int] | npt.NDArray[Any]) -> tuple[int, ...]:
        """The last ``h`` ids of a sequence, left-padded with ``PAD`` at its start."""
        tail = [int(i) for i in ids[-self.h:]] if len(ids) else []
        return (PAD,) * (self.h - len(tail)) + tuple(tail)

    def seed(self, ids: Sequence[int] | npt.NDArray[Any]) -> int:
        return self._seed(self.context(ids))

    def _seed(self, ctx: tuple[int, ...]) -> int:
        mac = self._prefix.copy()
        mac.update(self._pack(*ctx))
        return int.from_bytes(mac.digest()[:8], "big")

    def green_mask(self, ids: Sequence[int] | npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """A read-only boolean array over the vocabulary: True where a token is green after
        the sequence ``ids`` (only its last ``h`` ids matter)."""
        ctx = self.context(ids)
        mask = self._masks.get(ctx)
        if mask is None:
            with np.errstate(over="ignore"):
                draws = _splitmix64(np.uint64(self.seed(ctx)) + self._counters)
            mask = draws < np.uint64(self._threshold)
            mask.flags.writeable = False
            self._masks[ctx] = mask
            if len(self._masks) > _CACHE:
                self._masks.popitem(last=False)
        else:
            self._masks.move_to_end(ctx)
        return mask

    def is_green(self, ids: Sequence[int] | npt.NDArray[Any], token: int) -> bool:
        """Whether ``token`` is green after ``ids``; the scalar twin of ``green_mask``."""
        if not 0 <= token < self.vocab_size:
            raise ValueError(f"token id {token} is outside the vocabulary 0..{self.vocab_size - 1}")
        x = (self.seed(ids) + (token + 1) * _GOLDEN) & _MASK64
        return _splitmix64_int(x) < self._threshold

    def seeds(self, windows: Sequence[tuple[int, ...]]) -> npt.NDArray[np.uint64]:
        """``seed(w)`` of each window, as an array (for scoring many tuples at once)."""
        seed, h = self._seed, self.h
        return np.fromiter((seed(w) if len(w) == h else self.seed(w) for w in windows),
                           dtype=np.uint64, count=len(windows))

    def green_from_seeds(self, seeds: npt.NDArray[np.uint64],
                         tokens: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """Whether each token is green after the window whose seed is beside it."""
        with np.errstate(over="ignore"):
            x = seeds + (np.asarray(tokens).astype(np.uint64) + np.uint64(1)) * np.uint64(_GOLDEN)
            return _splitmix64(x) < np.uint64(self._threshold)

    def green_pairs(self, windows: Sequence[tuple[int, ...]],
                    tokens: Sequence[int] | npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """``is_green(windows[i], tokens[i])`` for every i, in one pass: each distinct window
        is hashed once, the tokens are tested vectorised (detection over many pairs)."""
        toks = np.asarray(tokens, dtype=np.int64)
        if len(windows) != toks.size:
            raise ValueError(f"{len(windows)} windows for {toks.size} tokens")
        if toks.size == 0:
            return np.zeros(0, dtype=bool)
        if toks.min() < 0 or toks.max() >= self.vocab_size:
            raise ValueError(f"a token id is outside the vocabulary 0..{self.vocab_size - 1}")
        seeds: dict[tuple[int, ...], int] = {}
        for w in windows:
            if w not in seeds:
                seeds[w] = self.seed(w)
        seed_of = np.fromiter((seeds[w] for w in windows), dtype=np.uint64, count=toks.size)
        with np.errstate(over="ignore"):
            x = seed_of + (toks.astype(np.uint64) + np.uint64(1)) * np.uint64(_GOLDEN)
            return _splitmix64(x) < np.uint64(self._threshold)

    def bias(self, logits: Logits, ids: Sequence[int] | npt.NDArray[Any]) -> Logits:
        """``logits`` with ``delta`` added at the green ids after ``ids``: a new list for a
        list, a new array of the same dtype and shape for an array (the last axis is the
        vocabulary; a vocabulary padded beyond ``vocab_size`` keeps its padding as is)."""
        if isinstance(logits, list):
            mask = self.green_mask(ids)
            if len(logits) < self.vocab_size:
                raise ValueError(f"{len(logits)} logits for a vocabulary of {self.vocab_size}")
            return [x + self.delta if i < self.vocab_size and mask[i] else x
                    for i, x in enumerate(logits)]
        arr = np.asarray(logits)
        if arr.shape[-1] < self.vocab_size:
            raise ValueError(f"{arr.shape[-1]} logits for a vocabulary of {self.vocab_size}")
        out = arr.copy()
        delta = np.asarray(self.delta, dtype=arr.dtype)
        out[..., : self.vocab_size] += delta * self.green_mask(ids)
        return out
