"""The feature cache: each free-text answer featurised once, summed per (endpoint, canary).

The free-text test reads a similarity tensor (``stats.SimilarityTensor``). Computing it
from every stored answer after every cycle costs what the whole history costs; here the
store keeps, under a fixed basis (``stats.features``), the count and the summed vectors
of every (endpoint, canary version), and :func:`update` adds only the answers stored
since the last analysis (``feature_bases.last_seq``), in memory; :func:`save` writes
what changed at the end of the analysis, so the database's write lock (SQLite has one, and
the probes need it) is not held while answers are featurised, and an analysis that raced
another one stores nothing. The tensor of any set of endpoints is then read from the
sums (:func:`tensor`), in time that does not grow with history.

The basis (IDF weights and style scaling) is fitted on the free-text answers stored when
it is made, at most ``analysis.basis_fit_answers`` of them (every k-th in seq order).
While it has seen fewer, it is refitted, and the sums rebuilt, each time the answers have
doubled since (so the total work stays within twice the answers); then it stays. A
change of representations, of ``analysis.sketch_dim`` or of the recent half-life makes a
new basis. ``update(full=True)`` (``auditor analyze --full``) rebuilds every sum from
the raw responses under the current basis and reports any stored sum that disagreed:
each sum carries the XOR of its responses' ledger ``record_hash``, so the set of answers
it stands for can be checked against the ledger.

Windows, segments and other subsets of the answers go through :func:`raw_tensor`: the
same basis and featurisation applied to just those answers.
"""

from __future__ import annotations

__all__ = ["TEXT_KINDS", "Cache", "FeatureCacheConflict", "Progress", "raw_tensor", "save",
           "tensor", "text_config", "update", "version_key"]

import itertools
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from auditor.config import Settings
from auditor.errors import AuditorError
from auditor.stats import SimilarityTensor
from auditor.stats.features import Basis, FeatureSums, Group, fit_basis
from auditor.stats.text import TextConfig
from auditor.store.db import make_engine
from auditor.store.models import CanaryVersion, FeatureBasis, FeatureSum, Response, utcnow

log = logging.getLogger(__name__)

TEXT_KINDS = ("free_text", "watermark")
CHUNK = 5_000  # answers featurised together (bounds the memory of one pass)
PARALLEL_MIN = 200_000  # a backlog of this many seqs or more is featurised in parallel
ZERO = "0" * 64
DAY = 86400.0
GroupKey = tuple[int, int]  # (endpoint id, canary version id)
Row = tuple[int, int, str, int, str, float]  # endpoint, version, text, seq, hash, time (s)
Packed = tuple[int, bytes, str, int]  # a group's count, packed sums, digest and last seq


def text_config(settings: Settings) -> TextConfig | None:
    """The encoder and tagger the configured representations need (None: neither)."""
    a = settings.analysis
    encoder, tagger = None, None
    if "embedding" in a.representations and a.embedding_model:
        from auditor.embeddings import load_encoder

        encoder = load_encoder(a.embedding_model)
    if "pos" in a.representations:
        from auditor.tagging import load_tagger

        tagger = load_tagger()
    return TextConfig(encoder=encoder, tagger=tagger) if encoder or tagger else None


def version_key(cv: CanaryVersion) -> str:
    """A canary version's key in the evidence: ``id`` for version 1, else ``id@vN``."""
    return cv.canary_id if cv.version == 1 else f"{cv.canary_id}@v{cv.version}"


@dataclass
class Cache:
    """The current basis and every sum, brought up to date in memory by :func:`update`;
    :func:`save` stores what changed."""

    basis: Basis
    config: TextConfig | None
    digest: str  # the basis's
    fitted_on: int  # free-text answers stored when the basis was fitted (it saw a sample)
    sums: _Sums  # every sum, up to date, with its digest and last seq
    added: int = 0  # answers featurised by this update
    changed: set[GroupKey] = field(default_factory=set)
    rebuilt: str | None = None  # why every sum was rebuilt (a new basis, --full), or None
    mismatched: list[GroupKey] = field(default_factory=list)  # stored sums that disagreed
    # what save() needs: the stored basis row (None: a new basis), the basis row read and
    # the seq its sums reached then, the seq they reach now, the stored sums
    row: FeatureBasis | None = None
    read_row: int | None = None
    read_seq: int = 0
    last_seq: int = 0
    stored: dict[GroupKey, FeatureSum] = field(default_factory=dict)

    @property
    def groups(self) -> dict[GroupKey, Group]:
        return self.sums.sums.groups


class FeatureCacheConflict(AuditorError):
    """Another analysis stored the sums while this one computed them."""


def _xor(a: str, b: str) -> str:
    return f"{int(a, 16) ^ int(b, 16):064x}"


def _text_versions(session: Session) -> list[int]:
    return list(session.scalars(
        select(CanaryVersion.id).where(CanaryVersion.kind.in_(TEXT_KINDS))))


def _answers(session: Session, vids: list[int], after: int = 0, upto: int | None = None,
             ) -> Iterator[list[Row]]:
    """The free-text answers stored after seq ``after`` (up to ``upto``), in seq order, in
    chunks."""
    if not vids:
        return
    q = (select(Response.endpoint_id, Response.canary_version_id, Response.text,
                Response.seq, Response.record_hash, Response.collected_at)
         .where(Response.canary_version_id.in_(vids), Response.seq > after)
         .order_by(Response.seq).execution_options(yield_per=CHUNK))
    if upto is not None:
        q = q.where(Response.seq <= upto)
    chunk: list[Row] = []
    for e, v, t, s, h, at in session.execute(q):
        chunk.append((e, v, t, s, h, at.timestamp()))
        if len(chunk) >= CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Sums:
    """Sums keyed by (endpoint id, version id), with each group's digest and last seq."""

    def __init__(self, basis: Basis) -> None:
        self.sums = FeatureSums(basis)
        self.digest: dict[GroupKey, str] = {}
        self.last: dict[GroupKey, int] = {}

    def add(self, rows: Sequence[Row], config: TextConfig | None) -> set[GroupKey]:
        self.sums.add([(r[0], r[1]) for r in rows], [r[2] or "" for r in rows], config,
                      [r[5] for r in rows])
        for e, v, _, seq, h, _ in rows:
            self.digest[(e, v)] = _xor(self.digest.get((e, v), ZERO), h)
            self.last[(e, v)] = max(self.last.get((e, v), 0), seq)
        return {(r[0], r[1]) for r in rows}

    def packed(self) -> dict[GroupKey, Packed]:
        return {k: (g.n, g.pack(self.sums.basis), self.digest[k], self.last[k])
                for k, g in self.sums.groups.items()}

    def merge(self, packed: Mapping[GroupKey, Packed]) -> None:
        """Adds the sums of other answers (:meth:`packed`, a shard featurised in another
        process), one group at a time."""
        basis = self.sums.basis
        for k, (n, data, digest, last) in packed.items():
            g = Group.unpack(n, data, basis)
            if k in self.sums.groups:
                self.sums.groups[k].merge(g, basis.half_life)
            else:
                self.sums.groups[k] = g
            self.digest[k] = _xor(self.digest.get(k, ZERO), digest)
            self.last[k] = max(self.last.get(k, 0), last)

    def load(self, fs: FeatureSum) -> None:
        k = (fs.endpoint_id, fs.canary_version_id)
        self.sums.groups[k] = Group.unpack(fs.n, fs.data, self.sums.basis)
        self.digest[k], self.last[k] = fs.digest, fs.last_seq

    def write(self, session: Session, row: FeatureBasis, keys: set[GroupKey],
              stored: Mapping[GroupKey, FeatureSum]) -> None:
        now = utcnow()
        for k in keys:
            g = self.sums.groups[k]
            fs = stored.get(k)
            if fs is None:
                fs = FeatureSum(basis_id=row.id, endpoint_id=k[0], canary_version_id=k[1])
                session.add(fs)
            fs.n, fs.data, fs.digest = g.n, g.pack(self.sums.basis), self.digest[k]
            fs.last_seq, fs.updated_at = self.last[k], now


def _needs_basis(row: FeatureBasis | None, settings: Settings, n_now: int) -> str | None:
    a = settings.analysis
    if row is None:
        return "no basis yet"
    if (list(row.reps) != list(a.representations) or row.dim != a.sketch_dim
            or Basis.from_bytes(row.data).half_life != a.recent_half_life_days * DAY):
        return "the representations, the sketch width or the recent half-life changed"
    if row.n_answers < a.basis_fit_answers and n_now >= 2 * max(row.n_answers, 1):
        return f"the free-text answers doubled since the basis was fitted ({row.n_answers})"
    return None


def _sample(session: Session, vids: list[int], n: int, limit: int) -> list[str]:
    """The answers a basis is fitted on: all of them, or, when there are more than
    ``limit`` (and ``limit`` > 0), those whose seq falls on every k-th one from the first
    (k = answers / ``limit``): about ``limit``, spread evenly over the history, looked up
    by seq rather than read from the whole store."""
    if not 0 < limit < n:
        return [r[2] or "" for chunk in _answers(session, vids) for r in chunk]
    step = -(-n // limit)
    lo, hi = session.execute(select(func.min(Response.seq), func.max(Response.seq)).where(
        Response.canary_version_id.in_(vids))).one()
    seqs = range(lo, hi + 1, step)
    out: list[str] = []
    for i in range(0, len(seqs), 1000):
        out += [t or "" for t in session.scalars(
            select(Response.text).where(Response.seq.in_(seqs[i:i + 1000]),
                                        Response.canary_version_id.in_(vids))
            .order_by(Response.seq))]
    return out


def _count(session: Session, vids: list[int]) -> int:
    if not vids:
        return 0
    return int(session.scalar(select(func.count()).select_from(Response).where(
        Response.canary_version_id.in_(vids))) or 0)


Progress = Callable[[int, int], None]  # (seqs read, seqs to read) of a featurisation


def _featurise(session: Session, settings: Settings, config: TextConfig | None,
               vids: list[int], sums: _Sums, after: int = 0, progress: Progress | None = None,
               ) -> tuple[set[GroupKey], int, int]:
    """Adds the free-text answers stored after seq ``after`` into ``sums``: (the groups
    changed, answers added, last seq read). A large backlog (a first analysis, ``--full``)
    is split by seq into shards featurised in parallel processes (``analysis.workers``),
    each reading its own shard from the database; the sums add, so the result is the same
    to rounding. ``progress`` is told how far it has read."""
    upto = session.scalar(select(func.max(Response.seq)).where(
        Response.canary_version_id.in_(vids))) if vids else None
    if upto is None or upto <= after:
        return set(), 0, after
    workers = _workers(settings, config)
    if workers > 1 and upto - after >= PARALLEL_MIN:
        return _featurise_parallel(session, sums, vids, after, upto, workers, progress)
    changed: set[GroupKey] = set()
    n, last = 0, after
    for chunk in _answers(session, vids, after, upto):
        changed |= sums.add(chunk, config)
        n, last = n + len(chunk), chunk[-1][3]
        if progress:
            progress(last - after, upto - after)
    return changed, n, last


def _workers(settings: Settings, config: TextConfig | None) -> int:
    if config is not None:  # an encoder or tagger: one copy of the model, in this process
        return 1
    if settings.analysis.workers:
        return settings.analysis.workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _featurise_parallel(session: Session, sums: _Sums, vids: list[int], after: int,
                        upto: int, workers: int, progress: Progress | None,
                        ) -> tuple[set[GroupKey], int, int]:
    url = session.get_bind().engine.url.render_as_string(hide_password=False)
    shards = 4 * workers  # smaller shards even out a slower process and show progress
    cuts = [after + (upto - after) * i // shards for i in range(shards + 1)]
    basis = sums.sums.basis.to_bytes()  # serialised once for every shard
    jobs = [(url, basis, vids, lo, hi) for lo, hi in itertools.pairwise(cuts)]
    log.info("featurising in parallel", extra={
        "event": "features_parallel", "workers": workers, "shards": shards,
        "after_seq": after, "upto_seq": upto})
    changed: set[GroupKey] = set()
    n, last, done = 0, after, 0
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        # merged as each shard ends (the sums add in any order), so that at most about one
        # shard's sums wait in memory, not every shard that ended before a slower one
        for future in as_completed([pool.submit(_shard, job) for job in jobs]):
            k, got, packed = future.result()
            sums.merge(packed)
            changed |= set(packed)
            n, last, done = n + k, max(last, got), done + 1
            del future, packed
            if progress:
                progress((upto - after) * done // shards, upto - after)
    return changed, n, last


def _shard(job: tuple[str, bytes, list[int], int, int],
           ) -> tuple[int, int, dict[GroupKey, Packed]]:
    """In a worker process: the sums of the answers with ``lo < seq <= hi``."""
    url, basis, vids, lo, hi = job
    sums, n, last = _Sums(Basis.from_bytes(basis)), 0, lo
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            for chunk in _answers(session, vids, lo, hi):
                sums.add(chunk, None)
                n, last = n + len(chunk), chunk[-1][3]
    finally:
        engine.dispose()
    return n, last, sums.packed()


def _rebuild(basis: Basis, config: TextConfig | None, session: Session, settings: Settings,
             vids: list[int], progress: Progress | None) -> tuple[_Sums, int, int]:
    """Every sum from the raw responses: (sums, answers, last seq)."""
    sums = _Sums(basis)
    _, n, last = _featurise(session, settings, config, vids, sums, progress=progress)
    return sums, n, last


def update(session: Session, settings: Settings, *, full: bool = False,
           progress: Progress | None = None) -> Cache | None:
    """Brings every sum up to date, in memory, with the free-text answers stored since
    the last :func:`save`; None when there is none. ``full``: rebuild every sum from the
    raw responses under the current basis and compare with what was stored.

    Nothing is written here, so the database's write lock (SQLite has one) is not held
    while answers are featurised; :func:`save` writes, in the caller's transaction."""
    config = text_config(settings)
    vids = _text_versions(session)
    row = session.scalars(select(FeatureBasis).order_by(FeatureBasis.id.desc())).first()
    a = settings.analysis
    n_now = (_count(session, vids)
             if row is None or row.n_answers < a.basis_fit_answers else row.n_answers)
    why = _needs_basis(row, settings, n_now)
    if why is not None:
        n_now = _count(session, vids)
        if n_now == 0:
            return None
        basis = fit_basis(_sample(session, vids, n_now, a.basis_fit_answers),
                          a.representations, a.sketch_dim, config,
                          half_life=a.recent_half_life_days * DAY)
        log.info("feature basis fitted", extra={"event": "feature_basis", "why": why,
                                                "answers": n_now, "sample": basis.n_answers})
        sums, n, last = _rebuild(basis, config, session, settings, vids, progress)
        return Cache(basis, config, basis.digest, n_now, sums, n,
                     set(sums.sums.groups), rebuilt=why, row=None,
                     read_row=row.id if row is not None else None,
                     read_seq=row.last_seq if row is not None else 0, last_seq=last)
    assert row is not None
    basis = Basis.from_bytes(row.data)
    stored = {(fs.endpoint_id, fs.canary_version_id): fs
              for fs in session.scalars(select(FeatureSum).where(FeatureSum.basis_id == row.id))}
    if full:
        sums, n, last = _rebuild(basis, config, session, settings, vids, progress)
        mismatched = _compare(sums, stored, basis)
        if mismatched:
            log.warning("stored feature sums disagreed with the raw responses; replaced",
                        extra={"event": "feature_cache_mismatch", "groups": len(mismatched)})
        return Cache(basis, config, row.digest, row.n_answers, sums, n,
                     set(sums.sums.groups), rebuilt="a full recomputation (--full)",
                     mismatched=mismatched, row=row, read_row=row.id, read_seq=row.last_seq,
                     last_seq=max(last, row.last_seq), stored=stored)
    sums = _Sums(basis)
    for fs in stored.values():
        sums.load(fs)
    changed, n, last = _featurise(session, settings, config, vids, sums, row.last_seq,
                                  progress)
    return Cache(basis, config, row.digest, row.n_answers, sums, n, changed,
                 row=row, read_row=row.id, read_seq=row.last_seq, last_seq=last,
                 stored=stored)


def save(session: Session, cache: Cache) -> None:
    """Stores what :func:`update` changed, in the caller's transaction: a new basis with
    every sum (older bases and their sums go), or the changed sums. Raises
    :class:`FeatureCacheConflict` when another analysis saved since this one read the
    sums (its sums stand; this one's work goes with its transaction)."""
    if cache.row is None:  # a new basis: the one read (or none) must still be the newest
        session.execute(sql_update(FeatureBasis).values(last_seq=FeatureBasis.last_seq))
        newest = session.scalars(select(FeatureBasis).order_by(FeatureBasis.id.desc())).first()
        if (newest.id if newest else None) != cache.read_row or (
                newest is not None and newest.last_seq != cache.read_seq):
            raise _conflict()
        stored: Mapping[GroupKey, FeatureSum] = {}
        cache.row = FeatureBasis(digest=cache.digest, reps=list(cache.basis.reps),
                                 dim=cache.basis.dim, n_answers=cache.fitted_on,
                                 last_seq=cache.last_seq, data=cache.basis.to_bytes())
    else:
        moved = session.scalar(sql_update(FeatureBasis).where(
            FeatureBasis.id == cache.row.id, FeatureBasis.last_seq == cache.read_seq)
            .values(last_seq=cache.last_seq).returning(FeatureBasis.id))
        if moved is None:
            raise _conflict()
        stored = cache.stored
        for k, fs in stored.items():  # --full: sums of answers no longer stored go
            if k not in cache.groups:
                session.delete(fs)
    for old in session.scalars(select(FeatureBasis).where(
            FeatureBasis.id != cache.row.id) if cache.row.id else select(FeatureBasis)):
        session.execute(delete(FeatureSum).where(FeatureSum.basis_id == old.id))
        session.delete(old)
    if cache.row.id is None:
        session.add(cache.row)
        session.flush()
    cache.sums.write(session, cache.row, cache.changed, stored)
    session.flush()


def _conflict() -> FeatureCacheConflict:
    return FeatureCacheConflict(
        "another analysis updated the feature cache while this one ran; nothing was stored "
        "by this one (the daemon retries after the next cycle; run `auditor analyze` again)")


def _compare(sums: _Sums, stored: Mapping[GroupKey, FeatureSum], basis: Basis,
             ) -> list[GroupKey]:
    """Groups whose stored sum does not stand for the same answers, or not the same
    numbers (relative 1e-6), as the one rebuilt from the raw responses."""
    bad = []
    for k in sorted(set(stored) | set(sums.sums.groups)):
        fs, g = stored.get(k), sums.sums.groups.get(k)
        if fs is None or g is None or fs.n != g.n or fs.digest != sums.digest[k]:
            bad.append(k)
            continue
        old = np.frombuffer(fs.data, dtype=np.float64)
        new = np.frombuffer(g.pack(basis), dtype=np.float64)
        if old.shape != new.shape or not np.allclose(old, new, rtol=1e-6, atol=1e-9):
            bad.append(k)
    return bad


def tensor(cache: Cache, endpoints: Mapping[int, str], keys: Mapping[int, str],
           recent_at: datetime | None = None) -> SimilarityTensor | None:
    """The similarity tensor of ``endpoints`` (id -> name) from the sums :func:`update`
    brought up to date; canaries are named by ``keys`` (version id -> key). ``recent_at``:
    the tensor of the recent sums as of then (``FeatureSums.tensor``). None when they
    have no sums."""
    named = FeatureSums(cache.basis)
    for (e, v), g in cache.groups.items():
        if e in endpoints and v in keys:
            named.groups[(endpoints[e], keys[v])] = g
    if not named.groups:
        return None
    return named.tensor([m for m in endpoints.values() if any(k[0] == m for k in named.groups)],
                        recent_at=recent_at.timestamp() if recent_at is not None else None)


def raw_tensor(texts: Mapping[str, Mapping[str, Sequence[str]]], cache: Cache,
               ) -> SimilarityTensor | None:
    """The tensor of these answers (endpoint -> canary key -> texts) under the basis."""
    sums = FeatureSums(replace(cache.basis, half_life=0.0))  # all answers weigh the same
    keys = [(e, k) for e, per in texts.items() for k, ts in per.items() for _ in ts]
    flat = [t or "" for per in texts.values() for ts in per.values() for t in ts]
    if not flat:
        return None
    for start in range(0, len(flat), CHUNK):
        sums.add(keys[start:start + CHUNK], flat[start:start + CHUNK], cache.config)
    return sums.tensor()
