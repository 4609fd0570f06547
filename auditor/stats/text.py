"""Vectorised text representations: hashed word and character n-grams, style features.

Everything here is linear in the total number of bytes of text and runs in numpy: texts
are concatenated into one byte array, n-grams are hashed with polynomial rolling hashes
computed by whole-array arithmetic (uint64, wrapping), and counts go into a
``scipy.sparse`` CSR matrix of ``2**bits`` hashed columns. No Python loop runs per
n-gram or per word, only per chunk of texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = [
    "TextConfig",
    "hashed_ngrams",
    "tfidf_normalise",
    "style_features",
    "REPRESENTATIONS",
]

REPRESENTATIONS = ("word", "char", "style")

_M64 = np.uint64(0x9E3779B97F4A7C15)
_B = np.uint64(1_000_003)  # odd, so invertible modulo 2**64
_BINV = np.uint64(pow(1_000_003, -1, 2**64))
_BIGRAM_K = np.uint64(0xC2B2AE3D27D4EB4F)


@dataclass(frozen=True)
class TextConfig:
    """Parameters of the hashed representations.

    ``max_chars`` truncates each response (the opening carries most of the style and it
    bounds the cost per response); ``bits`` sets ``2**bits`` hashed columns.
    """

    bits: int = 20
    char_n: int = 4
    max_chars: int = 1500
    chunk_bytes: int = 1_000_000


def _mix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(31))
    h = h * _M64
    return h ^ (h >> np.uint64(29))


def _encode(texts: Sequence[str], max_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower-cased UTF-8 bytes of all texts, separated by a NUL, and each byte's row."""
    parts = [t[:max_chars].lower().replace("\x00", " ").encode("utf-8", "replace") for t in texts]
    lengths = np.fromiter((len(p) + 1 for p in parts), dtype=np.int64, count=len(parts))
    buf = np.frombuffer(b"\x00".join(parts) + b"\x00", dtype=np.uint8)
    rows = np.repeat(np.arange(len(parts), dtype=np.int64), lengths)
    return buf, rows


def _char_hashes(buf: np.ndarray, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    c = buf.astype(np.uint64)
    size = c.size - n + 1
    if size <= 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    h = np.zeros(size, dtype=np.uint64)
    ok = np.ones(size, dtype=bool)
    for t in range(n):
        h = h * _B + c[t : t + size]
        ok &= buf[t : t + size] != 0
    return _mix(h)[ok], rows[:size][ok]


def _word_hashes(buf: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of words (runs of ASCII alphanumerics or non-ASCII bytes) and of bigrams."""
    word = ((buf >= 48) & (buf <= 57)) | ((buf >= 97) & (buf <= 122)) | (buf >= 128)
    w = word.astype(np.int8)
    edges = np.diff(np.concatenate(([0], w, [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if starts.size == 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    c = buf.astype(np.uint64) + np.uint64(1)
    powers = np.empty(c.size, dtype=np.uint64)
    powers[0] = 1
    powers[1:] = _B
    np.cumprod(powers, out=powers)
    inv = np.empty(c.size + 1, dtype=np.uint64)
    inv[0] = 1
    inv[1:] = _BINV
    np.cumprod(inv, out=inv)
    prefix = np.zeros(c.size + 1, dtype=np.uint64)
    np.cumsum(c * powers, out=prefix[1:])
    hw = _mix((prefix[ends] - prefix[starts]) * inv[starts])
    rw = rows[starts]
    same = rw[1:] == rw[:-1]
    hb = _mix(hw[:-1] * _BIGRAM_K + hw[1:] + np.uint64(7))[same]
    return np.concatenate((hw, hb)), np.concatenate((rw, rw[1:][same]))


def _to_csr(h: np.ndarray, r: np.ndarray, n_rows: int, bits: int) -> sp.csr_matrix:
    cols = (h >> np.uint64(64 - bits)).astype(np.int64)
    m = sp.csr_matrix(
        (np.ones(cols.size, dtype=np.float32), (r, cols)), shape=(n_rows, 1 << bits)
    )
    m.sum_duplicates()
    return m


def hashed_ngrams(
    texts: Sequence[str], kind: str, config: TextConfig | None = None
) -> sp.csr_matrix:
    """Count matrix (texts x ``2**bits``) of hashed ``word`` (uni+bigram) or ``char`` n-grams."""
    cfg = config or TextConfig()
    blocks: list[sp.csr_matrix] = []
    start = 0
    n = len(texts)
    while start < n:
        # chunk so the uint64 work arrays stay a few hundred MB at most
        stop, size = start, 0
        while stop < n and (size < cfg.chunk_bytes or stop == start):
            size += min(len(texts[stop]), cfg.max_chars) + 1
            stop += 1
        buf, rows = _encode(texts[start:stop], cfg.max_chars)
        if kind == "word":
            h, r = _word_hashes(buf, rows)
        elif kind == "char":
            h, r = _char_hashes(buf, rows, cfg.char_n)
        else:
            raise ValueError(f"unknown n-gram kind {kind!r}; use 'word' or 'char'")
        blocks.append(_to_csr(h, r, stop - start, cfg.bits))
        start = stop
    if not blocks:
        return sp.csr_matrix((0, 1 << cfg.bits), dtype=np.float32)
    return sp.vstack(blocks, format="csr")


def tfidf_normalise(counts: sp.csr_matrix) -> sp.csr_matrix:
    """Sublinear TF times smoothed IDF (fitted on these rows), rows scaled to unit L2 norm."""
    x = counts.tocsr(copy=True).astype(np.float32)
    x.data = 1.0 + np.log(x.data)
    n = x.shape[0]
    df = np.bincount(x.indices, minlength=x.shape[1])
    idf = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
    x.data *= idf[x.indices]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    x = sp.diags((1.0 / norms).astype(np.float32)) @ x
    return x.tocsr()


def style_features(texts: Sequence[str]) -> np.ndarray:
    """Dense style features per text, standardised by the caller.

    log length in characters and lines; fractions of digits, upper case, punctuation,
    whitespace, non-ASCII bytes; bullet/numbered-list lines; mean word length; whether
    the text opens with a few common stock openers is left to the n-gram channels.
    """
    out = np.zeros((len(texts), 10), dtype=np.float64)
    for i, t in enumerate(texts):
        b = np.frombuffer(t.encode("utf-8", "replace"), dtype=np.uint8)
        n = max(b.size, 1)
        lines = t.split("\n")
        nonempty = [ln.lstrip() for ln in lines if ln.strip()]
        nl = max(len(nonempty), 1)
        words = t.split()
        out[i] = (
            np.log1p(b.size),
            np.log1p(len(nonempty)),
            np.count_nonzero((b >= 48) & (b <= 57)) / n,
            np.count_nonzero((b >= 65) & (b <= 90)) / n,
            np.count_nonzero(np.isin(b, _PUNCT)) / n,
            np.count_nonzero(np.isin(b, _SPACE)) / n,
            np.count_nonzero(b >= 128) / n,
            sum(1 for ln in nonempty if ln[:1] in "-*•" or ln[:2].rstrip(".)").isdigit()) / nl,
            (sum(len(w) for w in words) / len(words)) if words else 0.0,
            t.count("\n\n") / nl,
        )
    return out


_PUNCT = np.frombuffer(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", dtype=np.uint8)
_SPACE = np.frombuffer(b" \t\n\r", dtype=np.uint8)
