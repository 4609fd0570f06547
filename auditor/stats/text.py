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

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

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
_IS_WORD = _IS_ALPHA | _IS_DIGIT
_LIST_MARK = _IS_DIGIT.copy()  # what after a line break starts a list item: -, * or a digit
_LIST_MARK[[45, 42]] = True


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
    """UTF-8 bytes of all texts, each followed by a NUL separator, and each byte's row.

    NULs inside a text become spaces, so the separators are the only zero bytes."""
    parts = [t[:max_chars] for t in texts]
    if not parts:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64)
    body = "\x00".join(parts)
    if body.count("\x00") > len(parts) - 1:  # a text holds a NUL
        body = "\x00".join(p.replace("\x00", " ") for p in parts)
    # UTF-8 (with "replace") encodes code point by code point: one call equals the parts'
    buf = np.frombuffer((body + "\x00").encode("utf-8", "replace"), dtype=np.uint8)
    if buf.size == len(body) + 1:  # one byte per character: a text's bytes are its length
        lengths = np.fromiter((len(p) + 1 for p in parts), dtype=np.int64, count=len(parts))
    else:
        lengths = np.diff(np.flatnonzero(buf == 0), prepend=-1)
    return buf, np.repeat(np.arange(len(parts), dtype=np.int64), lengths)


def _skeleton(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The skeleton's bytes (a run of letters, digits or spaces becomes one ``w``, ``0`` or
    space) and the position in ``buf`` each comes from."""
    cls = np.take(_CLASS, buf)
    keep = np.empty(buf.size, dtype=bool)
    keep[:1] = True
    keep[1:] = (cls[1:] == 0) | (cls[1:] != cls[:-1])
    at = np.flatnonzero(keep)
    return np.take(_SKEL, np.take(buf, at)), at


def _char_hashes(buf: np.ndarray, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    size = buf.size - n + 1
    if size <= 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    c = buf.astype(np.uint64)
    h = c[:size].copy()
    ok = buf[:size] != 0
    for t in range(1, n):
        h *= _B
        h += c[t : t + size]
        ok &= buf[t : t + size] != 0
    return _mix(h[ok]), rows[:size][ok]


_POWERS: tuple[np.ndarray, np.ndarray] = (np.ones(1, np.uint64), np.ones(1, np.uint64))


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``B**i`` and ``B**-i`` (modulo 2**64) for ``i < n`` (cached, grown on demand)."""
    global _POWERS
    if _POWERS[0].size < n:
        size = max(n, 2 * _POWERS[0].size)
        pw = np.full(size, _B, dtype=np.uint64)
        pw[0] = 1
        inv = np.full(size, _BINV, dtype=np.uint64)
        inv[0] = 1
        _POWERS = (np.cumprod(pw), np.cumprod(inv))
    pw, inv = _POWERS
    return pw[:n], inv[:n]


def _word_spans(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of every word (run of letters or digits) in ``buf``."""
    word = np.zeros(buf.size + 2, dtype=bool)
    np.take(_IS_WORD, buf, out=word[1:-1])
    edges = np.flatnonzero(word[1:] != word[:-1])
    return edges[0::2], edges[1::2]


def _words(
    buf: np.ndarray, rows: np.ndarray, spans: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Hash and row of every word (run of letters or digits), in text order; ``spans``:
    ``_word_spans(buf)`` if already known."""
    starts, ends = spans if spans is not None else _word_spans(buf)
    if starts.size == 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    powers, inv = _powers(buf.size)
    c = buf.astype(np.uint64)
    c += np.uint64(1)
    c *= powers
    prefix = np.empty(c.size + 1, dtype=np.uint64)
    prefix[0] = 0
    np.cumsum(c, out=prefix[1:])
    return _mix((prefix[ends] - prefix[starts]) * inv[starts]), rows[starts]


def _word_hashes(
    buf: np.ndarray, rows: np.ndarray, spans: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of words (runs of letters or digits) and of consecutive word pairs."""
    hw, rw = _words(buf, rows, spans)
    if hw.size == 0:
        return hw, rw
    same = rw[1:] == rw[:-1]
    hb = _mix(hw[:-1] * _BIGRAM_K + hw[1:] + np.uint64(7))[same]
    return np.concatenate((hw, hb)), np.concatenate((rw, rw[1:][same]))


def _cells(h: np.ndarray, r: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (row, hashed column) cells of the hashes ``h`` of rows ``r``, sorted by
    row then column, with how many hashes fell in each."""
    key = (r << np.int64(bits)) | (h >> np.uint64(64 - bits)).astype(np.int64)
    key.sort()
    first = np.empty(key.size, dtype=bool)
    first[:1] = True
    np.not_equal(key[1:], key[:-1], out=first[1:])
    at = np.flatnonzero(first)
    counts = np.diff(at, append=key.size)
    key = key[at]
    cols = (key & np.int64((1 << bits) - 1)).astype(np.int32 if bits < 32 else np.int64)
    return key >> np.int64(bits), cols, counts


def _index_dtype(nnz: int, bits: int) -> type[np.signedinteger[Any]]:
    """The CSR index type scipy would choose (int32 when it can hold every index)."""
    return np.int32 if max(nnz, 1 << bits) < 2**31 else np.int64


def _to_csr(h: np.ndarray, r: np.ndarray, n_rows: int, bits: int) -> sp.csr_matrix:
    """Count matrix (``n_rows x 2**bits``, canonical: sorted, no duplicates) of the hashes."""
    rows, cols, counts = _cells(h, r, bits)
    indptr = np.zeros(n_rows + 1, dtype=_index_dtype(cols.size, bits))
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    m = sp.csr_matrix((counts.astype(np.float32), cols.astype(indptr.dtype, copy=False), indptr),
                      shape=(n_rows, 1 << bits))
    m.has_canonical_format = True
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


def _chunk_reps(
    texts: Sequence[str], reps: Sequence[str], cfg: TextConfig
) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """Per chunk of texts: ``(start, stop, parts)``, where ``parts`` holds, for each of
    ``reps`` among ``word``, ``char``, ``layout`` and ``style``, that chunk's n-gram
    hashes and rows, or its style rates. Each chunk is encoded once for all of them."""
    for start, stop in _chunks(texts, cfg):
        part = texts[start:stop]
        buf, rows = _encode(part, cfg.max_chars)
        # words are the same runs in the lower-cased bytes: find them once
        spans = _word_spans(buf) if "word" in reps or "style" in reps else None
        out: dict[str, Any] = {}
        low = np.take(_LOWER, buf) if "word" in reps or "char" in reps else buf
        if "word" in reps:
            out["word"] = _word_hashes(low, rows, spans)
        if "char" in reps:
            out["char"] = _char_hashes(low, rows, cfg.char_n)
        if "layout" in reps:
            sk, at = _skeleton(buf)
            h, at = _char_hashes(sk, at, cfg.layout_n)
            out["layout"] = h, rows[at]
        if "style" in reps:
            assert spans is not None
            out["style"] = _style_block(part, buf, rows, spans[0])
        yield start, stop, out


def ngram_counts(
    texts: Sequence[str], kind: str, config: TextConfig | None = None
) -> sp.csr_matrix:
    """Count matrix (texts x ``2**bits``) of hashed ``word``, ``char`` or ``layout`` n-grams."""
    cfg = config or TextConfig()
    if kind not in ("word", "char", "layout"):
        raise ValueError(f"unknown n-gram kind {kind!r}; use 'word', 'char' or 'layout'")
    blocks = []
    for start, stop, parts in _chunk_reps(texts, (kind,), cfg):
        h, r = parts[kind]
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


# the style counts that depend on a byte alone: each byte value's class (disjoint), and
# the byte values sorted by class, so that one ``reduceat`` over a byte histogram's
# columns counts every class
_BYTE_CLASSES = ("other", "nul", "newline", "space", "digit", "upper", "lower", "non_ascii",
                 "colon", "exclaim", "question", "comma", "punct")
_BYTE_CLASS = np.zeros(256, dtype=np.int64)
for _name, _mask in (
    ("nul", np.arange(256) == 0),
    ("newline", np.arange(256) == 10),
    ("space", _IS_SPACE),
    ("digit", _IS_DIGIT),
    ("upper", (np.arange(256) >= 65) & (np.arange(256) <= 90)),
    ("lower", (np.arange(256) >= 97) & (np.arange(256) <= 122)),
    ("non_ascii", np.arange(256) >= 128),
    ("punct", _PUNCT),
    *((name, np.arange(256) == b) for name, b in zip(("colon", "exclaim", "question", "comma"),
                                                      b":!?,", strict=True)),
):
    _BYTE_CLASS[_mask] = _BYTE_CLASSES.index(_name)
del _name, _mask
_BYTES_BY_CLASS = np.argsort(_BYTE_CLASS, kind="stable")
_CLASS_STARTS = np.searchsorted(_BYTE_CLASS[_BYTES_BY_CLASS], np.arange(len(_BYTE_CLASSES)))


def _style_block(
    texts: Sequence[str], buf: np.ndarray, rows: np.ndarray, word_starts: np.ndarray
) -> np.ndarray:
    """Style rates of one encoded chunk (``_encode``; ``word_starts`` from ``_word_spans``).

    The counts of single bytes come from each text's byte histogram; the few that look at
    a byte and the next one (after a line break, ``**``) from those bytes' positions."""
    n = len(texts)
    hist = np.bincount(rows * 256 + buf, minlength=n * 256).reshape(n, 256)
    by_class = np.add.reduceat(hist[:, _BYTES_BY_CLASS], _CLASS_STARTS, axis=1).astype(float)
    k = dict(zip(_BYTE_CLASSES, by_class.T, strict=True))
    punct = k["punct"] + k["colon"] + k["exclaim"] + k["question"] + k["comma"]
    word_bytes = k["digit"] + k["upper"] + k["lower"] + k["non_ascii"]

    def count_at(at: np.ndarray) -> np.ndarray:
        return np.bincount(rows[at], minlength=n).astype(np.float64)

    nbytes = np.maximum(by_class.sum(axis=1) - k["nul"], 1.0)
    lines = k["newline"] + 1.0
    nl = np.flatnonzero(buf == 10)  # never the last byte (a NUL), so nl + 1 is a byte
    after = buf[nl + 1]
    star = np.flatnonzero(buf == 42)
    nwords = np.maximum(count_at(word_starts), 1.0)
    full = np.fromiter((len(t) for t in texts), dtype=np.float64, count=n)
    return np.column_stack(
        (
            np.log1p(full),
            np.log(lines),
            k["digit"] / nbytes,
            k["upper"] / nbytes,
            punct / nbytes,
            (k["space"] + k["newline"]) / nbytes,
            k["non_ascii"] / nbytes,
            count_at(nl[_LIST_MARK[after]]) / lines,
            word_bytes / nwords,
            count_at(nl[after == 10]) / lines,
            k["colon"] / nwords,
            k["exclaim"] / nwords,
            k["question"] / nwords,
            count_at(star[buf[star + 1] == 42]) / lines,
            count_at(nl[after == 35]) / lines,
            k["comma"] / nwords,
        )
    )


def style_features(texts: Sequence[str], config: TextConfig | None = None) -> np.ndarray:
    """Dense style rates per text (columns named by ``STYLE_FEATURES``), not standardised."""
    cfg = config or TextConfig()
    out = np.zeros((len(texts), len(STYLE_FEATURES)), dtype=np.float64)
    for start, stop, parts in _chunk_reps(texts, ("style",), cfg):
        out[start:stop] = parts["style"]
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
