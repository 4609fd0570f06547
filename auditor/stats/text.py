"""Vectorised text representations: hashed word, character and layout n-grams, style.

Everything is linear in the number of bytes and runs in numpy: texts are concatenated
into one byte array (each truncated to ``max_chars``), n-grams are hashed with polynomial
rolling hashes computed by whole-array uint64 arithmetic (wrapping), and counts go into a
``scipy.sparse`` CSR matrix of ``2**bits`` hashed columns. Python loops run per chunk of
texts, never per n-gram.

Representations (``REPRESENTATIONS``):

- ``word``: word unigrams and bigrams (lower case), sublinear TF-IDF;
- ``char``: character 4-grams (lower case), sublinear TF-IDF;
- ``layout``: character 4-grams of the text's skeleton, where every run of letters
  becomes ``w``, every run of digits ``0`` and every run of spaces one space, so only
  punctuation, line breaks, list markers and markdown survive: the shape of an answer;
- ``style``: a dense vector of style rates (length, lines, lists, punctuation, case...);
- ``opening``: the answer's opening words: one hashed column per prefix of the first
  ``opening_n`` words (lower case), each weighted ``1/sqrt(opening_n)``, so the cosine of
  two answers is the length of their common opening (in words) over ``opening_n``.
  Students copy their teacher's stock openings ("Sure! Here are", "As an AI language
  model", "1.") far more than surface topic words.
- ``pos``: part-of-speech 2-, 3- and 4-grams of the answer (the tags from
  ``TextConfig.tagger``, a callable ``texts -> tag sequences`` that the caller supplies;
  ``auditor.tagging`` makes one from the tagger TextBlob ships), sublinear TF-IDF. The
  syntactic template of an answer: students reproduce their teacher's more than its
  words (Wadhwa et al. 2025, "Who Taught You That?").
- ``embedding``: dense sentence embeddings from ``TextConfig.encoder``, a callable
  ``texts -> (n, d) array`` that the caller supplies (``auditor.embeddings`` loads a
  local sentence-transformers model); rows scaled to unit norm. Optional: nothing here
  loads a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = [
    "REPRESENTATIONS",
    "STYLE_FEATURES",
    "TextConfig",
    "ngram_counts",
    "tfidf_normalise",
    "style_features",
    "style_rows",
    "featurise",
    "opening_rows",
    "embedding_rows",
    "pos_rows",
    "pos_ngram_counts",
    "Encoder",
    "Tagger",
]

REPRESENTATIONS = ("word", "char", "layout", "style", "opening", "pos", "embedding")

Encoder = Callable[[Sequence[str]], np.ndarray]
Tagger = Callable[[Sequence[str]], Sequence[Sequence[str]]]
POS_N = (2, 3, 4)

STYLE_FEATURES = (
    "log_chars",
    "log_lines",
    "digits",
    "upper",
    "punct",
    "space",
    "non_ascii",
    "list_lines",
    "word_len",
    "paragraphs",
    "colons",
    "exclaims",
    "questions",
    "bold",
    "headers",
    "commas",
)

_M64 = np.uint64(0x9E3779B97F4A7C15)
_B = np.uint64(1_000_003)  # odd, so invertible modulo 2**64
_BINV = np.uint64(pow(1_000_003, -1, 2**64))
_BIGRAM_K = np.uint64(0xC2B2AE3D27D4EB4F)

_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[65:91] += 32
_IS_ALPHA = np.zeros(256, dtype=bool)
_IS_ALPHA[65:91] = _IS_ALPHA[97:123] = True
_IS_ALPHA[128:] = True  # UTF-8 bytes of non-ASCII letters
_IS_DIGIT = np.zeros(256, dtype=bool)
_IS_DIGIT[48:58] = True
_IS_SPACE = np.zeros(256, dtype=bool)
_IS_SPACE[[9, 32]] = True
_CLASS = np.zeros(256, dtype=np.uint8)  # 0 other, 1 letter, 2 digit, 3 space
_CLASS[_IS_ALPHA] = 1
_CLASS[_IS_DIGIT] = 2
_CLASS[_IS_SPACE] = 3
_SKEL = np.arange(256, dtype=np.uint8)
_SKEL[_IS_ALPHA] = ord("w")
_SKEL[_IS_DIGIT] = ord("0")
_SKEL[_IS_SPACE] = 32
_PUNCT = np.zeros(256, dtype=bool)
_PUNCT[np.frombuffer(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", dtype=np.uint8)] = True


@dataclass(frozen=True)
class TextConfig:
    """Parameters of the hashed representations.

    ``max_chars`` truncates each response before n-gram hashing (the opening carries most
    of the style and it bounds the cost per response); ``bits`` sets ``2**bits`` columns.
    ``encoder`` embeds texts for the ``embedding`` representation (None: not available);
    ``tagger`` tags them for ``pos`` (None: not available).
    """

    bits: int = 18
    char_n: int = 4
    layout_n: int = 4
    max_chars: int = 2000
    opening_n: int = 5
    chunk_bytes: int = 1_000_000
    encoder: Encoder | None = None
    tagger: Tagger | None = None


def _mix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(31))
    h = h * _M64
    return h ^ (h >> np.uint64(29))


def _encode(texts: Sequence[str], max_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of all texts, each followed by a NUL separator, and each byte's row."""
    parts = [t[:max_chars].replace("\x00", " ").encode("utf-8", "replace") for t in texts]
    lengths = np.fromiter((len(p) + 1 for p in parts), dtype=np.int64, count=len(parts))
    buf = np.frombuffer(b"\x00".join(parts) + b"\x00", dtype=np.uint8)
    rows = np.repeat(np.arange(len(parts), dtype=np.int64), lengths)
    return buf, rows


def _skeleton(buf: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cls = _CLASS[buf]
    keep = np.ones(buf.size, dtype=bool)
    keep[1:] = (cls[1:] == 0) | (cls[1:] != cls[:-1])
    return _SKEL[buf[keep]], rows[keep]


def _char_hashes(buf: np.ndarray, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    size = buf.size - n + 1
    if size <= 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    c = buf.astype(np.uint64)
    h = np.zeros(size, dtype=np.uint64)
    ok = np.ones(size, dtype=bool)
    for t in range(n):
        h = h * _B + c[t : t + size]
        ok &= buf[t : t + size] != 0
    return _mix(h)[ok], rows[:size][ok]


def _words(buf: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hash and row of every word (run of letters or digits), in text order."""
    word = (_IS_ALPHA[buf] | _IS_DIGIT[buf]).view(np.int8)
    edges = np.diff(word, prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    if starts.size == 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    c = buf.astype(np.uint64) + np.uint64(1)
    powers = np.full(c.size, _B, dtype=np.uint64)
    powers[0] = 1
    np.cumprod(powers, out=powers)
    inv = np.full(c.size + 1, _BINV, dtype=np.uint64)
    inv[0] = 1
    np.cumprod(inv, out=inv)
    prefix = np.zeros(c.size + 1, dtype=np.uint64)
    np.cumsum(c * powers, out=prefix[1:])
    return _mix((prefix[ends] - prefix[starts]) * inv[starts]), rows[starts]


def _word_hashes(buf: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of words (runs of letters or digits) and of consecutive word pairs."""
    hw, rw = _words(buf, rows)
    if hw.size == 0:
        return hw, rw
    same = rw[1:] == rw[:-1]
    hb = _mix(hw[:-1] * _BIGRAM_K + hw[1:] + np.uint64(7))[same]
    return np.concatenate((hw, hb)), np.concatenate((rw, rw[1:][same]))


def _to_csr(h: np.ndarray, r: np.ndarray, n_rows: int, bits: int) -> sp.csr_matrix:
    cols = (h >> np.uint64(64 - bits)).astype(np.int64)
    m = sp.csr_matrix((np.ones(cols.size, dtype=np.float32), (r, cols)), shape=(n_rows, 1 << bits))
    m.sum_duplicates()
    return m


def _chunks(texts: Sequence[str], cfg: TextConfig) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    start, n = 0, len(texts)
    while start < n:
        stop, size = start, 0
        while stop < n and (size < cfg.chunk_bytes or stop == start):
            size += min(len(texts[stop]), cfg.max_chars) + 1
            stop += 1
        out.append((start, stop))
        start = stop
    return out


def ngram_counts(
    texts: Sequence[str], kind: str, config: TextConfig | None = None
) -> sp.csr_matrix:
    """Count matrix (texts x ``2**bits``) of hashed ``word``, ``char`` or ``layout`` n-grams."""
    cfg = config or TextConfig()
    if kind not in ("word", "char", "layout"):
        raise ValueError(f"unknown n-gram kind {kind!r}; use 'word', 'char' or 'layout'")
    blocks: list[sp.csr_matrix] = []
    for start, stop in _chunks(texts, cfg):
        buf, rows = _encode(texts[start:stop], cfg.max_chars)
        if kind == "word":
            h, r = _word_hashes(_LOWER[buf], rows)
        elif kind == "char":
            h, r = _char_hashes(_LOWER[buf], rows, cfg.char_n)
        else:
            sk, srows = _skeleton(buf, rows)
            h, r = _char_hashes(sk, srows, cfg.layout_n)
        blocks.append(_to_csr(h, r, stop - start, cfg.bits))
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
    sq = np.bincount(
        np.repeat(np.arange(n), np.diff(x.indptr)),
        weights=x.data.astype(np.float64) ** 2,
        minlength=n,
    )
    norms = np.sqrt(sq)
    norms[norms == 0] = 1.0
    x.data /= np.repeat(norms, np.diff(x.indptr)).astype(np.float32)
    return x


def style_features(texts: Sequence[str], config: TextConfig | None = None) -> np.ndarray:
    """Dense style rates per text (columns named by ``STYLE_FEATURES``), not standardised."""
    cfg = config or TextConfig()
    out = np.zeros((len(texts), len(STYLE_FEATURES)), dtype=np.float64)
    for start, stop in _chunks(texts, cfg):
        n = stop - start
        buf, rows = _encode(texts[start:stop], cfg.max_chars)
        # every text owns a contiguous, non-empty segment (it ends with its NUL)
        seg = np.flatnonzero(np.diff(rows, prepend=-1))

        def count(mask: np.ndarray, seg: np.ndarray = seg) -> np.ndarray:
            return np.add.reduceat(mask.astype(np.int32), seg).astype(np.float64)

        nbytes = np.maximum(count(buf != 0), 1.0)
        nl = buf == 10
        lines = count(nl) + 1.0
        nxt = np.append(buf[1:], 0)
        list_start = nl & ((nxt == 45) | (nxt == 42) | _IS_DIGIT[nxt])
        word = _IS_ALPHA[buf] | _IS_DIGIT[buf]
        wstart = word & ~np.append(False, word[:-1])
        nwords = np.maximum(count(wstart), 1.0)
        full = np.fromiter((len(t) for t in texts[start:stop]), dtype=np.float64, count=n)
        out[start:stop] = np.column_stack(
            (
                np.log1p(full),
                np.log(lines),
                count(_IS_DIGIT[buf]) / nbytes,
                count((buf >= 65) & (buf <= 90)) / nbytes,
                count(_PUNCT[buf]) / nbytes,
                count(_IS_SPACE[buf] | nl) / nbytes,
                count(buf >= 128) / nbytes,
                count(list_start) / lines,
                count(word) / nwords,
                count(nl & (nxt == 10)) / lines,
                count(buf == 58) / nwords,
                count(buf == 33) / nwords,
                count(buf == 63) / nwords,
                count((buf == 42) & (nxt == 42)) / lines,
                count(nl & (nxt == 35)) / lines,
                count(buf == 44) / nwords,
            )
        )
    return out


def _opening_hashes(
    buf: np.ndarray, rows: np.ndarray, n_rows: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the prefixes of 1..n words of every text (one per prefix length)."""
    hw, rw = _words(buf, rows)
    if hw.size == 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    first = np.searchsorted(rw, np.arange(n_rows))  # index of each row's first word
    pos = np.arange(hw.size) - first[rw]
    h = np.zeros(n_rows, dtype=np.uint64)
    hs, rs = [], []
    for k in range(n):
        sel = pos == k
        r = rw[sel]
        h[r] = _mix(h[r] * _B + hw[sel] + np.uint64(k + 1))
        hs.append(h[r].copy())
        rs.append(r)
    return np.concatenate(hs), np.concatenate(rs)


def opening_rows(texts: Sequence[str], config: TextConfig | None = None) -> sp.csr_matrix:
    """Rows of the ``opening`` representation: prefix hashes of the first words, each of
    weight ``1/sqrt(opening_n)`` (not unit norm for answers shorter than that)."""
    cfg = config or TextConfig()
    blocks: list[sp.csr_matrix] = []
    for start, stop in _chunks(texts, cfg):
        buf, rows = _encode(texts[start:stop], min(cfg.max_chars, 400))
        h, r = _opening_hashes(_LOWER[buf], rows, stop - start, cfg.opening_n)
        m = _to_csr(h, r, stop - start, cfg.bits)
        m.data[:] = 1.0 / np.sqrt(cfg.opening_n)  # a (rare) hash collision stays one entry
        blocks.append(m)
    if not blocks:
        return sp.csr_matrix((0, 1 << cfg.bits), dtype=np.float32)
    return sp.vstack(blocks, format="csr")


def featurise(
    texts: Sequence[str], rep: str, config: TextConfig | None = None
) -> np.ndarray | sp.csr_matrix:
    """Unit-norm rows of one representation: sparse TF-IDF for n-grams, dense for style.

    Style rows are standardised over these texts (z-scores) before scaling to unit norm.
    """
    if rep == "style":
        return style_rows(style_features(texts, config))
    if rep == "opening":
        return opening_rows(texts, config)
    if rep == "embedding":
        return embedding_rows(texts, config)
    if rep == "pos":
        return pos_rows(texts, config)
    return tfidf_normalise(ngram_counts(texts, rep, config))


def embedding_rows(texts: Sequence[str], config: TextConfig | None = None) -> np.ndarray:
    """Unit-norm rows of ``config.encoder``'s embeddings of the texts (each truncated to
    ``max_chars``)."""
    cfg = config or TextConfig()
    if cfg.encoder is None:
        raise ValueError(
            "representation 'embedding' needs an encoder: set analysis.embedding_model to a "
            "local sentence-transformers model, or pass TextConfig(encoder=...)"
        )
    if not texts:
        return np.zeros((0, 1))
    x = np.asarray(cfg.encoder([t[: cfg.max_chars] for t in texts]), dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(texts) or not np.isfinite(x).all():
        raise ValueError(
            f"the encoder returned an array of shape {x.shape} (finite: "
            f"{bool(np.isfinite(x).all())}) for {len(texts)} texts; it must return one "
            "finite row per text"
        )
    n = np.linalg.norm(x, axis=1, keepdims=True)
    n[n == 0] = 1.0
    return x / n


def style_rows(f: np.ndarray) -> np.ndarray:
    """Style rates standardised over the rows (z-scores), each row scaled to unit norm."""
    sd = f.std(axis=0)
    sd[sd == 0] = 1.0
    z = (f - f.mean(axis=0)) / sd
    n = np.linalg.norm(z, axis=1, keepdims=True)
    n[n == 0] = 1.0
    return z / n


def _tag_id(tag: str) -> np.uint64:
    """A stable 64-bit id of a tag string (the same in every process)."""
    h = 0
    for b in tag.encode("utf-8"):
        h = (h * 1_000_003 + b + 1) % 2**64
    return _mix(np.asarray([h], dtype=np.uint64))[0] | np.uint64(1)  # never 0 (separator)


def pos_ngram_counts(
    tags: Sequence[Sequence[str]], config: TextConfig | None = None
) -> sp.csr_matrix:
    """Count matrix (texts x ``2**bits``) of hashed tag n-grams, n in ``POS_N``, within
    each text's tag sequence."""
    cfg = config or TextConfig()
    ids: dict[str, np.uint64] = {}
    seq: list[np.uint64] = []
    rows: list[int] = []
    for r, ts in enumerate(tags):
        for t in ts:
            if t not in ids:
                ids[t] = _tag_id(t)
            seq.append(ids[t])
            rows.append(r)
        seq.append(np.uint64(0))  # separator: no n-gram crosses two texts
        rows.append(r)
    buf = np.asarray(seq, dtype=np.uint64)
    row = np.asarray(rows, dtype=np.int64)
    hs, rs = [], []
    for n in POS_N:
        size = buf.size - n + 1
        if size <= 0:
            continue
        h = np.full(size, np.uint64(n), dtype=np.uint64)
        ok = np.ones(size, dtype=bool)
        for k in range(n):
            h = h * _B + buf[k : k + size]
            ok &= buf[k : k + size] != 0
        hs.append(_mix(h)[ok])
        rs.append(row[:size][ok])
    if not hs:
        return sp.csr_matrix((len(tags), 1 << cfg.bits), dtype=np.float32)
    return _to_csr(np.concatenate(hs), np.concatenate(rs), len(tags), cfg.bits)


def pos_rows(texts: Sequence[str], config: TextConfig | None = None) -> sp.csr_matrix:
    """Unit-norm TF-IDF rows of the ``pos`` representation: the part-of-speech n-grams of
    ``config.tagger``'s tags of each text (truncated to ``max_chars``)."""
    cfg = config or TextConfig()
    if cfg.tagger is None:
        raise ValueError(
            "representation 'pos' needs a tagger: the analysis loads one (auditor.tagging), "
            "or pass TextConfig(tagger=...)"
        )
    tags = cfg.tagger([t[: cfg.max_chars] for t in texts])
    if len(tags) != len(texts):
        raise ValueError(f"the tagger returned {len(tags)} tag sequences for {len(texts)} texts")
    return tfidf_normalise(pos_ngram_counts(tags, cfg))
