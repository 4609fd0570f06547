"""Per-answer feature vectors under a fixed basis, and their per-(model, canary) sums.

``canary_similarities`` featurises every answer of a batch together: its TF-IDF weights
and style z-scores are fitted on the batch, and its vectors live in ``2**bits`` sparse
columns. That makes the similarity pass cost what the whole history costs. Here the
same representations are made *additive*, so that a store keeps one small sum per
(model, canary) and each new answer is featurised once:

- a :class:`Basis` freezes what was fitted on the batch: each n-gram representation's
  IDF weights and the style rates' centre and scale, fitted once on the answers seen so
  far (``fit_basis``) and stored with its digest;
- each answer's unit vector is computed under the basis and *sketched* into ``dim``
  dense columns (a count sketch: every hashed column goes to one bucket with a sign,
  both fixed by the column, so inner products are kept in expectation);
- :class:`FeatureSums` adds the vectors of each (model, canary) group, with the group's
  count and its raw style rates; ``tensor()`` turns the sums into the
  :class:`~auditor.stats.similarity.SimilarityTensor` the provenance test reads.

The sums of a group do not depend on the order or the batching of its answers, so a
store updated cycle by cycle and a recomputation from every raw answer under the same
basis give the same tensor (to floating-point rounding). Every map here is fixed and
the same for every model, so the model-level null (the suspect exchangeable with the
controls) is untouched; the sketch adds a little noise to every similarity alike.
"""

from __future__ import annotations

__all__ = ["Basis", "FeatureSums", "Group", "fit_basis", "group_vectors", "sketch"]

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.sparse as sp

from .similarity import SimilarityTensor
from .text import (
    REPRESENTATIONS,
    STYLE_FEATURES,
    TextConfig,
    _cells,
    _chunk_reps,
    _index_dtype,
    _mix,
    embedding_rows,
    ngram_counts,
    opening_rows,
    pos_ngram_counts,
    style_features,
)

IDF_REPS = ("word", "char", "layout", "pos")
N_STYLE = len(STYLE_FEATURES)
FIT_CHUNK = 5000


@dataclass(frozen=True)
class Basis:
    """What the featurisation fixes once: IDF weights per n-gram representation, the
    style rates' centre and scale, the sketch width, and how many answers it was fitted
    on. ``digest`` names it."""

    reps: tuple[str, ...]
    dim: int
    bits: int
    n_answers: int
    emb_dim: int = 0
    idf: dict[str, np.ndarray] = field(default_factory=dict)
    style_mean: np.ndarray = field(default_factory=lambda: np.zeros(N_STYLE))
    style_sd: np.ndarray = field(default_factory=lambda: np.ones(N_STYLE))
    half_life: float = 0.0  # seconds, of the recent sums' weights (0: no recent sums)

    @property
    def recent(self) -> bool:
        return self.half_life > 0

    def width(self, rep: str) -> int:
        """Columns of ``rep``'s vectors (``dim`` when sketched)."""
        if rep == "style":
            return N_STYLE
        if rep == "embedding":
            return self.emb_dim
        return self.dim

    def to_bytes(self) -> bytes:
        header = {"reps": list(self.reps), "dim": self.dim, "bits": self.bits,
                  "n_answers": self.n_answers, "emb_dim": self.emb_dim,
                  "half_life": self.half_life, "idf": sorted(self.idf)}
        buf = io.BytesIO()
        arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                  "style_mean": self.style_mean, "style_sd": self.style_sd,
                  **{f"idf_{r}": self.idf[r] for r in sorted(self.idf)}}
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Basis:
        with np.load(io.BytesIO(data)) as z:
            header = json.loads(z["header"].tobytes().decode())
            return cls(tuple(header["reps"]), int(header["dim"]), int(header["bits"]),
                       int(header["n_answers"]), int(header["emb_dim"]),
                       {r: z[f"idf_{r}"].copy() for r in header["idf"]},
                       z["style_mean"].copy(), z["style_sd"].copy(),
                       float(header.get("half_life", 0.0)))

    @property
    def digest(self) -> str:
        """SHA-256 over the parameters and every array's float32/float64 bytes."""
        h = hashlib.sha256(json.dumps([list(self.reps), self.dim, self.bits, self.n_answers,
                                       self.emb_dim, self.half_life]).encode())
        for name in sorted(self.idf):
            h.update(name.encode() + np.ascontiguousarray(self.idf[name], np.float32).tobytes())
        h.update(np.ascontiguousarray(self.style_mean, np.float64).tobytes())
        h.update(np.ascontiguousarray(self.style_sd, np.float64).tobytes())
        return h.hexdigest()


def _counts(texts: Sequence[str], rep: str, config: TextConfig) -> sp.csr_matrix:
    if rep == "pos":
        if config.tagger is None:
            raise ValueError("representation 'pos' needs a tagger (auditor.tagging)")
        return pos_ngram_counts(config.tagger([t[: config.max_chars] for t in texts]), config)
    return ngram_counts(texts, rep, config)


def fit_basis(
    texts: Sequence[str], reps: Sequence[str], dim: int = 1024,
    config: TextConfig | None = None, half_life: float = 0.0,
) -> Basis:
    """Fits IDF weights (smoothed, as ``text.tfidf_normalise``) and style z-scoring on
    ``texts``; ``half_life`` (seconds, 0: none) weighs the recent sums."""
    cfg = config or TextConfig()
    for rep in reps:
        if rep not in REPRESENTATIONS:
            raise ValueError(f"unknown representation {rep!r}; choose from {REPRESENTATIONS}")
    if dim < 1 or dim & (dim - 1):
        raise ValueError(f"the sketch width must be a power of two, not {dim}")
    n = len(texts)
    df = {rep: np.zeros(1 << cfg.bits, dtype=np.int64) for rep in reps if rep in IDF_REPS}
    raw = np.zeros((n, N_STYLE))
    for start in range(0, n, FIT_CHUNK):  # in chunks: the memory of one chunk's n-grams
        part = texts[start:start + FIT_CHUNK]
        for rep in df:
            df[rep] += np.bincount(_counts(part, rep, cfg).indices, minlength=1 << cfg.bits)
        raw[start:start + len(part)] = style_features(part, cfg)
    idf = {rep: (np.log((1.0 + n) / (1.0 + d)) + 1.0).astype(np.float32) for rep, d in df.items()}
    mean = raw.mean(axis=0) if n else np.zeros(N_STYLE)
    sd = raw.std(axis=0) if n else np.ones(N_STYLE)
    sd[sd == 0] = 1.0
    emb_dim = embedding_rows(list(texts[:1]) or [""], cfg).shape[1] if "embedding" in reps else 0
    return Basis(tuple(reps), dim, cfg.bits, n, emb_dim, idf, mean, sd, float(half_life))


SKETCH_S = 4  # buckets per hashed column


@lru_cache(maxsize=8)
def _sketch_matrix(bits: int, dim: int) -> sp.csr_matrix:
    """``2**bits x dim``: hashed column j goes to ``SKETCH_S`` buckets, each with a sign
    and weight ``1/sqrt(SKETCH_S)``, all drawn from j (a sparse Johnson-Lindenstrauss
    map): two heavy columns that share a bucket share one of several, so no single
    collision decides a similarity."""
    j = np.arange(1 << bits, dtype=np.uint64)
    k = dim.bit_length() - 1
    rows, cols, vals = [], [], []
    for t in range(SKETCH_S):
        h = _mix(j * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0x632BE59BD9B4E019 + 7919 * t))
        cols.append((h >> np.uint64(64 - k)).astype(np.int64) if k else np.zeros(j.size, np.int64))
        vals.append(np.where(h & np.uint64(1), 1.0, -1.0) / np.sqrt(SKETCH_S))
        rows.append(np.arange(j.size))
    m = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(j.size, dim))
    m.sum_duplicates()
    return m


def sketch(x: sp.spmatrix, dim: int) -> np.ndarray:
    """The rows of ``x`` (``2**bits`` columns) sketched into ``dim`` dense columns."""
    bits = int(x.shape[1]).bit_length() - 1
    return np.asarray((sp.csr_matrix(x, dtype=np.float64) @ _sketch_matrix(bits, dim)).toarray())


def _tfidf(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    x = counts.tocsr(copy=True).astype(np.float64)
    x.data = (1.0 + np.log(x.data)) * idf[x.indices]
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ x)


def _tfidf_cells(
    rows: np.ndarray, cols: np.ndarray, counts: np.ndarray, n_rows: int, idf: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``_tfidf`` of the count cells of ``text._cells`` (sorted by row then column): the
    weights of the cells, and how many cells each row has."""
    v = (1.0 + np.log(counts.astype(np.float64))) * idf[cols]
    per_row = np.bincount(rows, minlength=n_rows)
    norms = np.sqrt(np.bincount(rows, weights=v * v, minlength=n_rows))
    norms[norms == 0] = 1.0
    v *= (1.0 / norms)[rows]
    return v, per_row


def _stack_rows(
    blocks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], n_rows: int, bits: int
) -> sp.csr_matrix:
    """The CSR matrix of consecutive row blocks, each (columns, weights, cells per row)."""
    nnz = sum(b[0].size for b in blocks)
    indptr = np.zeros(n_rows + 1, dtype=_index_dtype(nnz, bits))
    cols = np.empty(nnz, dtype=indptr.dtype)
    data = np.empty(nnz)
    if blocks:
        np.cumsum(np.concatenate([b[2] for b in blocks]), out=indptr[1:])
        np.concatenate([b[0] for b in blocks], out=cols, casting="same_kind")
        np.concatenate([b[1] for b in blocks], out=data)
    m = sp.csr_matrix((data, cols, indptr), shape=(n_rows, 1 << bits))
    m.has_canonical_format = True
    return m


def group_vectors(
    texts: Sequence[str], aggs: Sequence[sp.csr_matrix], basis: Basis,
    config: TextConfig | None = None,
) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    """For each aggregation (groups x texts, the weight of each text in each group): the
    weighted sums of the answers' vectors in each representation of the basis, and of
    their raw style rates (``text.STYLE_FEATURES``). The sketch is linear, so each group's
    n-gram vectors are added before they are sketched: no dense row per answer is made."""
    cfg = replace(config or TextConfig(), bits=basis.bits)
    rows: dict[str, Any] = {}
    raw = np.zeros((len(texts), N_STYLE))
    ngram = [rep for rep in basis.reps if rep in ("word", "char", "layout")]
    cells: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {r: [] for r in ngram}
    for start, stop, parts in _chunk_reps(texts, [*ngram, "style"], cfg):
        raw[start:stop] = parts["style"]
        for rep in ngram:
            h, r = parts[rep]
            r, c, k = _cells(h, r, basis.bits)
            v, per_row = _tfidf_cells(r, c, k, stop - start, basis.idf[rep])
            cells[rep].append((c, v, per_row))
    for rep in basis.reps:
        if rep == "style":
            z = (raw - basis.style_mean) / basis.style_sd
            n = np.linalg.norm(z, axis=1, keepdims=True)
            n[n == 0] = 1.0
            rows[rep] = z / n
        elif rep == "embedding":
            rows[rep] = embedding_rows(texts, cfg)
        elif rep == "opening":
            rows[rep] = opening_rows(texts, cfg)
        elif rep in cells:
            rows[rep] = _stack_rows(cells[rep], len(texts), basis.bits)
        else:
            rows[rep] = _tfidf(_counts(texts, rep, cfg), basis.idf[rep])
    out = []
    for agg in aggs:
        vecs = {rep: sketch(agg @ x, basis.dim) if sp.issparse(x) else np.asarray(agg @ x)
                for rep, x in rows.items()}
        out.append((vecs, np.asarray(agg @ raw)))
    return out


@dataclass
class Group:
    """One (model, canary) group's sufficient statistics: the count and sums of its
    answers' vectors and raw style rates; with a half-life, the same sums with each
    answer weighted ``2 ** (-(t_ref - t) / half_life)``, ``t_ref`` its newest answer."""

    n: int
    vectors: dict[str, np.ndarray]
    style: np.ndarray  # sum of raw style rates
    recent_n: float = 0.0
    recent: dict[str, np.ndarray] = field(default_factory=dict)
    recent_style: np.ndarray = field(default_factory=lambda: np.zeros(N_STYLE))
    t_ref: float = -np.inf

    def pack(self, basis: Basis) -> bytes:
        parts = [self.vectors[r] for r in basis.reps] + [self.style]
        if basis.recent:
            parts += [self.recent[r] for r in basis.reps] + [
                self.recent_style, np.array([self.recent_n, self.t_ref])]
        return np.concatenate(parts).astype(np.float64).tobytes()

    @classmethod
    def unpack(cls, n: int, data: bytes, basis: Basis) -> Group:
        flat = np.frombuffer(data, dtype=np.float64)
        widths = [basis.width(r) for r in basis.reps]
        one = sum(widths) + N_STYLE
        if flat.size != (2 * one + 2 if basis.recent else one):
            raise ValueError(f"a stored feature sum holds {flat.size} numbers where the basis "
                             f"needs {2 * one + 2 if basis.recent else one}")

        def split(at: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
            out = {}
            for r, w in zip(basis.reps, widths, strict=True):
                out[r], at = flat[at : at + w].copy(), at + w
            return out, flat[at : at + N_STYLE].copy()

        vectors, style = split(0)
        g = cls(n, vectors, style)
        if basis.recent:
            g.recent, g.recent_style = split(one)
            g.recent_n, g.t_ref = float(flat[-2]), float(flat[-1])
        return g

    def merge(self, other: Group, half_life: float) -> None:
        """Adds ``other`` (the sums of other answers of the same group) into this one: the
        sums add; the recent sums are both brought to the newer reference time first, so
        the result is what adding all the answers in one pass gives (to rounding)."""
        self.n += other.n
        self.vectors = {r: v + other.vectors[r] for r, v in self.vectors.items()}
        self.style = self.style + other.style
        if not half_life or not np.isfinite(other.t_ref):
            return
        if not np.isfinite(self.t_ref):
            self.recent, self.recent_style = dict(other.recent), other.recent_style
            self.recent_n, self.t_ref = other.recent_n, other.t_ref
            return
        t = max(self.t_ref, other.t_ref)
        a, b = np.exp2(-(t - self.t_ref) / half_life), np.exp2(-(t - other.t_ref) / half_life)
        self.recent = {r: v * a + other.recent[r] * b for r, v in self.recent.items()}
        self.recent_style = self.recent_style * a + other.recent_style * b
        self.recent_n, self.t_ref = self.recent_n * a + other.recent_n * b, t


class FeatureSums:
    """Sums of answer vectors per (model, canary): additive, order-free."""

    def __init__(self, basis: Basis) -> None:
        self.basis = basis
        self.groups: dict[tuple[Any, Any], Group] = {}

    def add(self, keys: Sequence[tuple[Any, Any]], texts: Sequence[str],
            config: TextConfig | None = None, times: Sequence[float] | None = None,
            ) -> set[tuple[Any, Any]]:
        """Featurises ``texts`` (``keys[i]`` = (model, canary) of ``texts[i]``, collected
        at ``times[i]``, seconds) into the sums; returns the groups it changed. Times are
        needed when the basis keeps recent sums."""
        if not texts:
            return set()
        index: dict[tuple[Any, Any], int] = {}
        groups = np.fromiter((index.setdefault(k, len(index)) for k in keys), dtype=np.int64,
                             count=len(keys))
        n = len(texts)
        plain = sp.csr_matrix((np.ones(n), (groups, np.arange(n))), shape=(len(index), n))
        aggs = [plain]
        if self.basis.recent:
            if times is None:
                raise ValueError("this basis keeps recent sums: give each answer's time")
            t = np.asarray(times, dtype=np.float64)
            newest = np.full(len(index), -np.inf)
            np.maximum.at(newest, groups, t)
            for k, gi in index.items():  # one reference time per group: its newest answer
                if k in self.groups:
                    newest[gi] = max(newest[gi], self.groups[k].t_ref)
            w = np.exp2(-(newest[groups] - t) / self.basis.half_life)
            aggs.append(sp.csr_matrix((w, (groups, np.arange(n))), shape=(len(index), n)))
        parts = group_vectors(texts, aggs, self.basis, config)
        vecs, raw = parts[0]
        sizes = np.bincount(groups, minlength=len(index))
        weights = np.asarray(aggs[-1].sum(axis=1)).ravel()
        for k, gi in index.items():
            g = self.groups.get(k)
            if g is None:
                g = self.groups[k] = Group(0, {r: np.zeros_like(v[gi]) for r, v in vecs.items()},
                                           np.zeros(N_STYLE))
                g.recent = {r: np.zeros_like(v[gi]) for r, v in vecs.items()}
            g.n += int(sizes[gi])
            for r, v in vecs.items():
                g.vectors[r] = g.vectors[r] + v[gi]
            g.style = g.style + raw[gi]
            if self.basis.recent:
                rvecs, rraw = parts[1]
                decay = np.exp2(-(newest[gi] - g.t_ref) / self.basis.half_life) \
                    if np.isfinite(g.t_ref) else 0.0
                for r, v in rvecs.items():
                    g.recent[r] = g.recent[r] * decay + v[gi]
                g.recent_style = g.recent_style * decay + rraw[gi]
                g.recent_n = g.recent_n * decay + float(weights[gi])
                g.t_ref = float(newest[gi])
        return set(index)

    def tensor(self, models: Iterable[str] | None = None,
               canaries: Sequence[str] | None = None,
               recent_at: float | None = None) -> SimilarityTensor:
        """The similarity tensor of ``models`` (default: every model with a sum).

        ``recent_at`` (seconds): the tensor of the recent sums as of that time instead; a
        group counts while its answers' weight then is at least half an answer (a single
        answer is dropped after one half-life), and its count is that weight, rounded up.
        """
        if recent_at is not None and not self.basis.recent:
            raise ValueError("this basis keeps no recent sums (no half-life)")
        ms = tuple(models) if models is not None else tuple(sorted({m for m, _ in self.groups}))
        if canaries is None:  # sorted: the same tensor however the sums were built
            canaries = tuple(sorted({c for m, c in self.groups if m in ms}))
        qs = tuple(canaries)
        reps = self.basis.reps
        n_q, n_m = len(qs), len(ms)
        counts = np.zeros((n_q, n_m), dtype=np.int64)
        style = np.full((n_q, n_m, N_STYLE), np.nan)
        sims = np.full((len(reps), n_q, n_m, n_m), np.nan)
        means = {r: np.zeros((n_q, n_m, self.basis.width(r))) for r in reps}
        for qi, c in enumerate(qs):
            for mi, m in enumerate(ms):
                g = self.groups.get((m, c))
                if g is None or g.n == 0:
                    continue
                if recent_at is None:
                    counts[qi, mi] = g.n
                    style[qi, mi] = g.style / g.n
                    for r in reps:
                        means[r][qi, mi] = g.vectors[r] / g.n
                    continue
                weight = g.recent_n * np.exp2(-(recent_at - g.t_ref) / self.basis.half_life)
                if weight < 0.5:
                    continue
                counts[qi, mi] = int(np.ceil(weight - 1e-9))
                style[qi, mi] = g.recent_style / g.recent_n
                for r in reps:
                    means[r][qi, mi] = g.recent[r] / g.recent_n
        present = counts > 0
        mask = present[:, :, None] & present[:, None, :]
        for ri, r in enumerate(reps):
            gram = np.einsum("qad,qbd->qab", means[r], means[r])
            sims[ri] = np.where(mask, gram, np.nan)
        return SimilarityTensor(ms, qs, reps, sims, counts, style)
