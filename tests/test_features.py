"""The feature cache: answers featurised once, summed per (endpoint, canary); the
incremental analysis gives the verdicts of a full recomputation from the raw responses."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import yaml
from sqlalchemy import select

from auditor.analysis import analyze_all
from auditor.config import Settings
from auditor.demo.lm import TrigramLM
from auditor.demo.setup import DEMO_ENDPOINTS, write_canaries
from auditor.importer import ImportRecord, import_records
from auditor.registry import load_registry, retire, sync_registry
from auditor.stats.features import (
    Basis,
    FeatureSums,
    _sketch_matrix,
    fit_basis,
    group_vectors,
)
from auditor.stats.similarity import canary_similarities
from auditor.stats.text import TextConfig, ngram_counts, style_features
from auditor.store import Store, open_store, sync_endpoints
from auditor.store.models import Endpoint, FeatureBasis, FeatureSum, Verdict
from tests.factories import demo_lms, settings_with

ROLES = {name: role for name, (role, _) in DEMO_ENDPOINTS.items()}
REPS = ("word", "layout", "style")


@pytest.fixture(scope="module")
def lms() -> dict[str, TrigramLM]:
    return demo_lms()


def _texts(lms: dict[str, TrigramLM], n_canaries: int, samples: int, seed: int
           ) -> tuple[list[tuple[str, str]], list[str]]:
    rng = random.Random(seed)
    keys, texts = [], []
    for m in sorted(set(lms) - {'student'})[:6]:
        for q in range(n_canaries):
            for _ in range(samples):
                keys.append((m, f"q{q:02d}"))
                texts.append(lms[m].generate(f"Tell me about topic {q}.", rng, 0.8))
    return keys, texts


def test_sums_do_not_depend_on_order_or_batching(lms: dict[str, TrigramLM]) -> None:
    keys, texts = _texts(lms, 8, 3, seed=1)
    basis = fit_basis(texts, REPS, dim=256)
    once = FeatureSums(basis)
    once.add(keys, texts)
    pieces = FeatureSums(basis)
    order = list(range(len(texts)))
    random.Random(2).shuffle(order)
    for start in range(0, len(order), 7):
        part = order[start:start + 7]
        pieces.add([keys[i] for i in part], [texts[i] for i in part])
    a, b = once.tensor(), pieces.tensor()
    assert a.models == b.models and a.canaries == b.canaries
    np.testing.assert_allclose(a.sims, b.sims, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_allclose(a.style, b.style, rtol=1e-10)


def test_the_basis_round_trips_and_its_digest_names_it(lms: dict[str, TrigramLM]) -> None:
    _, texts = _texts(lms, 4, 2, seed=3)
    basis = fit_basis(texts, REPS, dim=128)
    again = Basis.from_bytes(basis.to_bytes())
    assert again.digest == basis.digest and again.reps == REPS and again.dim == 128
    np.testing.assert_array_equal(again.idf["word"], basis.idf["word"])
    other = fit_basis(texts[:-5], REPS, dim=128)
    assert other.digest != basis.digest
    with pytest.raises(ValueError, match="power of two"):
        fit_basis(texts, REPS, dim=100)


def test_the_sketch_keeps_the_exact_similarities_close(lms: dict[str, TrigramLM]) -> None:
    """Fitted on the same answers, the sums give the similarities of the exact batch
    pass (2**18 sparse columns) up to the sketch's noise, which shrinks with its width."""
    keys, texts = _texts(lms, 12, 2, seed=4)
    responses: dict[str, dict[str, list[str]]] = {}
    for (m, q), t in zip(keys, texts, strict=True):
        responses.setdefault(m, {}).setdefault(q, []).append(t)
    exact = canary_similarities(responses, sorted({q for _, q in keys}), reps=REPS)
    errors = {}
    for dim in (64, 4096):
        sums = FeatureSums(fit_basis(texts, REPS, dim=dim))
        sums.add(keys, texts)
        sk = sums.tensor(exact.models, exact.canaries)
        errors[dim] = float(np.nanmax(np.abs(sk.sims[0] - exact.sims[0])))
        np.testing.assert_allclose(sk.sims[2], exact.sims[2], atol=1e-6)  # style: not sketched
    assert errors[4096] < 0.05 and errors[4096] < errors[64]


# --- through the store -------------------------------------------------------------


N_TEXT = 10  # free-text canaries of the store tests


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Path, Store]]:
    """The demo's canaries (free text only used) and a store, on a SQLite file."""
    folder = write_canaries(tmp_path / "canaries", n_text=N_TEXT, n_watermark=0)
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        yield folder, store
    finally:
        store.close()


def _settings(**analysis: object) -> Settings:
    return settings_with(ROLES, analysis={"basis_fit_answers": 0, "sketch_dim": 256,
                                          **analysis})


def _cycle(store: Store, settings: Settings, folder: Path, lms: dict[str, TrigramLM],
           start: datetime, seed: int) -> None:
    """One cycle: every endpoint answers every live free-text canary once."""
    reg = load_registry(folder)
    rng = random.Random(seed)
    with store.session() as s:
        eps = sync_endpoints(s, settings)
        sync_registry(s, reg)
        live = [c for c in reg.canaries if c.canary.kind == "free_text"]
        for name in ROLES:
            import_records(s, eps[name], [
                ImportRecord(canary_id=c.canary.id, sample_index=seed, collected_at=start,
                             text=lms[name].generate(c.canary.chat()[-1]["content"], rng, 0.8))
                for c in live], source=f"{name}-{seed}")


def _latest(store: Store) -> dict[str, Verdict]:
    with store.session() as s:
        names = {e.id: e.name for e in s.scalars(select(Endpoint))}
        rows = s.scalars(select(Verdict).where(Verdict.segment.is_(None))
                         .order_by(Verdict.id)).all()
        return {names[v.suspect_id]: v for v in rows}


def _analyse(store: Store, settings: Settings, **kw: object) -> dict[str, Verdict]:
    with store.session() as s:
        analyze_all(s, settings, monitor_update=False, **kw)  # type: ignore[arg-type]
    return _latest(store)


def _same(a: dict[str, Verdict], b: dict[str, Verdict]) -> None:
    assert set(a) == set(b) and a
    for name in a:
        x, y = a[name], b[name]
        assert x.canaries == y.canaries and x.n_samples == y.n_samples
        assert x.p_value == pytest.approx(y.p_value, rel=1e-9, abs=1e-12)
        assert x.statistic == pytest.approx(y.statistic, rel=1e-9, abs=1e-12)
        assert x.effect == pytest.approx(y.effect, rel=1e-9, abs=1e-12)
        reps = x.channels["free_text"]["representations"]
        assert reps == pytest.approx(y.channels["free_text"]["representations"], rel=1e-9)


def test_the_incremental_path_gives_the_full_paths_verdicts(
    tmp_path: Path, lms: dict[str, TrigramLM]
) -> None:
    """Cycles, a restart, a changed canary and a retired one: after each, the verdicts
    read from the sums equal those of a recomputation from every raw response."""
    folder = tmp_path / "canaries"
    write_canaries(folder, n_text=12, n_watermark=0)
    settings = _settings()
    url = f"sqlite:///{tmp_path / 'store.db'}"
    day = datetime(2026, 11, 1, tzinfo=UTC)
    store = open_store(url)
    _cycle(store, settings, folder, lms, day, seed=0)
    _analyse(store, settings)
    _cycle(store, settings, folder, lms, day + timedelta(hours=6), seed=1)
    first = _analyse(store, settings)
    assert first["student"].params["features"]["answers_added"] == 12 * len(ROLES)
    store.close()

    store = open_store(url)  # a restart
    _cycle(store, settings, folder, lms, day + timedelta(hours=12), seed=2)
    path = folder / "demo.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["canaries"][0]["prompt"] += " Answer briefly."  # a new version of that canary
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    _cycle(store, settings, folder, lms, day + timedelta(hours=18), seed=3)
    with store.session() as s:
        retire(s, doc["canaries"][1]["id"])
    _cycle(store, settings, folder, lms, day + timedelta(hours=24), seed=4)
    incremental = _analyse(store, settings)
    assert incremental["student"].params["features"]["rebuilt"] is None
    full = _analyse(store, settings, full=True)
    assert full["student"].params["features"]["mismatched_sums"] == 0
    _same(incremental, full)
    assert incremental["student"].significant and not incremental["indie-suspect"].significant
    store.close()


def test_a_tampered_sum_is_found_and_replaced_by_the_full_path(
    world: tuple[Path, Store], lms: dict[str, TrigramLM]
) -> None:
    folder, store = world
    settings = _settings()
    _cycle(store, settings, folder, lms, datetime(2026, 11, 1, tzinfo=UTC), seed=0)
    before = _analyse(store, settings)
    with store.session() as s:  # one number of one sum, and another sum's answer set
        a, b = s.scalars(select(FeatureSum).order_by(FeatureSum.id).limit(2)).all()
        data = np.frombuffer(a.data, dtype=np.float64).copy()
        data[3] += 0.5
        a.data = data.tobytes()
        b.digest = "f" * 64
    tampered = _analyse(store, settings)
    # the incremental path trusts the cache: the changed number moves the statistics
    assert any(tampered[n].statistic != before[n].statistic for n in before)
    full = _analyse(store, settings, full=True)
    assert full["student"].params["features"]["mismatched_sums"] == 2
    _same(before, full)
    again = _analyse(store, settings, full=True)
    assert again["student"].params["features"]["mismatched_sums"] == 0


def test_the_basis_is_refitted_while_small_and_then_stays(
    world: tuple[Path, Store], lms: dict[str, TrigramLM]
) -> None:
    folder, store = world
    per_cycle = N_TEXT * len(ROLES)
    settings = _settings(basis_fit_answers=2 * per_cycle)
    day = datetime(2026, 11, 1, tzinfo=UTC)
    fitted = []
    for i in range(4):
        _cycle(store, settings, folder, lms, day + timedelta(hours=i), seed=i)
        v = _analyse(store, settings)["student"].params["features"]
        fitted.append((v["basis_answers"], v["rebuilt"] is not None, v["answers_added"]))
    assert fitted == [(per_cycle, True, per_cycle), (2 * per_cycle, True, 2 * per_cycle),
                      (2 * per_cycle, False, per_cycle), (2 * per_cycle, False, per_cycle)]
    with store.session() as s:
        assert len(s.scalars(select(FeatureBasis)).all()) == 1
    # a change of representations makes a new basis, fitted on a sample of at most
    # basis_fit_answers, and every sum is rebuilt; then it stays
    changed = _settings(basis_fit_answers=3 * per_cycle, representations=["word", "style"])
    v = _analyse(store, changed)["student"].params["features"]
    assert v["rebuilt"] and v["basis_answers"] == 4 * per_cycle
    assert v["answers_added"] == 4 * per_cycle
    with store.session() as s:
        sample = Basis.from_bytes(s.scalars(select(FeatureBasis)).one().data).n_answers
    assert 2 * per_cycle <= sample <= 3 * per_cycle  # every 2nd of 4 cycles' answers
    _cycle(store, changed, folder, lms, day + timedelta(hours=5), seed=5)
    v = _analyse(store, changed)["student"].params["features"]
    assert v["rebuilt"] is None and v["answers_added"] == per_cycle


def test_after_a_cycle_only_the_pairs_with_new_evidence_get_a_verdict(
    world: tuple[Path, Store], lms: dict[str, TrigramLM]
) -> None:
    folder, store = world
    settings = _settings()
    day = datetime(2026, 11, 1, tzinfo=UTC)
    _cycle(store, settings, folder, lms, day, seed=0)

    def run(cfg: Settings = settings) -> list[str]:
        with store.session() as s:
            names = {e.id: e.name for e in s.scalars(select(Endpoint))}
            return sorted(names[v.suspect_id] for v in analyze_all(s, cfg, changed_only=True)
                          if v.segment is None)

    assert run() == ["indie-suspect", "student"]
    assert run() == []  # nothing new: no verdict, no monitor look
    with store.session() as s:  # the student alone answers again
        eps = sync_endpoints(s, settings)
        import_records(s, eps["student"], [ImportRecord(
            canary_id="demo-ft-00", sample_index=7, text="A new answer.",
            collected_at=day + timedelta(hours=1))], source="student-late")
    assert run() == ["student"]
    assert run(_settings(alpha=0.01)) == ["indie-suspect", "student"]  # other settings


def test_a_suspect_that_changed_its_model_is_seen_in_the_recent_verdict(
    world: tuple[Path, Store], lms: dict[str, TrigramLM]
) -> None:
    """Months of independent answers, then a month of the student's behind the same
    name: the recent verdict (half-life 30 days) sees the change; everything that shows
    "the" verdict of a pair (report, portal, alert) still shows the one on all answers."""
    folder, store = world
    from auditor.report import ReportRequest, select_verdict
    from auditor.web.cases import case_detail, case_rows

    settings = _settings(recent_half_life_days=30)
    day = datetime(2026, 6, 1, tzinfo=UTC)
    for i in range(6):  # six monthly cycles of the independent model
        _cycle(store, settings, folder, lms, day + timedelta(days=30 * i), seed=i)
    swapped = {**lms, "indie-suspect": lms["student"]}
    for i in range(6, 8):  # then two cycles of the student's answers
        _cycle(store, settings, folder, swapped, day + timedelta(days=30 * 5 + 10 * (i - 5)),
               seed=i)
    now = day + timedelta(days=30 * 5 + 21)
    with store.session() as s:
        verdicts = analyze_all(s, settings, now=now)
        names = {e.id: e.name for e in s.scalars(select(Endpoint))}
    by = {(names[v.suspect_id], v.segment): v for v in verdicts}
    recent = by[("indie-suspect", "recent: half-life 30 d")]
    whole = by[("indie-suspect", None)]
    assert recent.p_value < 0.05 < whole.p_value
    assert recent.params["recent"]["half_life_days"] == 30
    assert list(recent.channels) == ["free_text"]
    with store.session() as s:
        shown, _, _ = select_verdict(s, ReportRequest(suspect="indie-suspect"))
        assert shown.segment is None and shown.p_value == whole.p_value
        row = next(r for r in case_rows(s, 0.05) if r.suspect == "indie-suspect")
        assert row.p_value == whole.p_value
        detail = case_detail(s, "indie-suspect", "protected", show_canary_ids=True)
        assert detail is not None and detail["latest"].p_value == whole.p_value


def test_the_update_writes_nothing_and_a_raced_save_stores_nothing(
    world: tuple[Path, Store], lms: dict[str, TrigramLM]
) -> None:
    """Featurising holds no write lock (the probes need it on SQLite); of two analyses
    that ran at once, the second to save stores nothing and says why."""
    from auditor import features

    folder, store = world
    settings = _settings()
    day = datetime(2026, 11, 1, tzinfo=UTC)
    _cycle(store, settings, folder, lms, day, seed=0)
    _analyse(store, settings)
    _cycle(store, settings, folder, lms, day + timedelta(hours=6), seed=1)
    with store.session() as a, store.session() as b:
        first = features.update(a, settings)
        second = features.update(b, settings)
        assert first is not None and second is not None and first.added == second.added > 0
        for s in (a, b):  # nothing pending, no transaction open on the database
            assert not (s.new or s.dirty or s.deleted)
            assert not s.connection().connection.dbapi_connection.in_transaction
        features.save(a, first)
        a.commit()
        with pytest.raises(features.FeatureCacheConflict, match="another analysis"):
            features.save(b, second)
        b.rollback()
    with store.session() as s:
        assert s.scalars(select(FeatureBasis)).one().last_seq == first.last_seq
        again = features.update(s, settings)
        assert again is not None and again.added == 0


def test_a_backlog_featurised_in_parallel_gives_the_sums_of_one_pass(
    any_store: Store, tmp_path: Path, lms: dict[str, TrigramLM], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards read and featurised by worker processes, merged (recent sums brought to one
    reference time), equal one pass over the answers: from nothing, and added to stored
    sums; on SQLite and PostgreSQL."""
    from auditor import features

    folder = write_canaries(tmp_path / "canaries", n_text=N_TEXT, n_watermark=0)
    one, two = _settings(), _settings(workers=2)
    day = datetime(2026, 11, 1, tzinfo=UTC)
    for i in range(3):
        _cycle(any_store, one, folder, lms, day + timedelta(days=20 * i), seed=i)

    def update(settings: Settings, parallel: bool) -> features.Cache:
        monkeypatch.setattr(features, "PARALLEL_MIN", 0 if parallel else 10**9)
        told: list[tuple[int, int]] = []
        with any_store.session() as s:
            cache = features.update(s, settings, progress=lambda *a: told.append(a))
            assert cache is not None
        # the progress shown: from the start to the end of what was new, never back
        assert told and told[-1][0] == told[-1][1] > 0 and told == sorted(told)
        return cache

    def same(a: features.Cache, b: features.Cache) -> None:
        assert a.added == b.added > 0 and a.changed == b.changed
        assert a.groups.keys() == b.groups.keys() and a.last_seq == b.last_seq
        for k, g in a.groups.items():
            assert (g.n, a.sums.digest[k], a.sums.last[k]) == (
                b.groups[k].n, b.sums.digest[k], b.sums.last[k])
            np.testing.assert_allclose(np.frombuffer(g.pack(a.basis)),
                                       np.frombuffer(b.groups[k].pack(b.basis)),
                                       rtol=1e-10, atol=1e-12)

    serial = update(one, False)
    same(serial, update(two, True))
    assert serial.basis.recent and any(0 < g.recent_n < g.n for g in serial.groups.values())
    with any_store.session() as s:
        features.save(s, serial)
    for i in range(3, 5):
        _cycle(any_store, one, folder, lms, day + timedelta(days=20 * i), seed=i)
    same(update(one, False), update(two, True))


def test_group_vectors_equal_the_plain_tfidf_aggregation_and_sketch(
        lms: dict[str, TrigramLM]) -> None:
    """The fused per-chunk path gives what TF-IDF rows, summed per group, then sketched
    give (to rounding): the stored sums of earlier versions stay comparable."""
    _, texts = _texts(lms, 3, 4, seed=5)
    texts += ["", "x", "a\x00b", "héllo wörld 🙂!\n- a\n1. b", "\ud800 lone", "word " * 900]
    cfg = TextConfig(chunk_bytes=2000)
    basis = fit_basis(texts[:40], ("word", "layout", "style", "opening"), 256, cfg)
    n = len(texts)
    rng = np.random.default_rng(0)
    aggs = [sp.csr_matrix((rng.random(n), (np.arange(n) % 7, np.arange(n))), shape=(7, n)),
            sp.csr_matrix(rng.random((3, n)) * (rng.random((3, n)) < 0.5))]
    got = group_vectors(texts, aggs, basis, cfg)
    raw = style_features(texts, cfg)
    for agg, (vecs, style) in zip(aggs, got, strict=True):
        assert np.allclose(style, agg @ raw, rtol=1e-12, atol=0)
        for rep in ("word", "layout"):
            x = ngram_counts(texts, rep, replace(cfg, bits=basis.bits)).astype(np.float64)
            x.data = (1.0 + np.log(x.data)) * basis.idf[rep][x.indices]
            norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
            x = sp.diags(1.0 / np.where(norms == 0, 1.0, norms)) @ x
            want = (sp.csr_matrix(agg @ x) @ _sketch_matrix(basis.bits, basis.dim)).toarray()
            assert np.allclose(vecs[rep], want, rtol=1e-9, atol=1e-12 * np.abs(want).max()), rep
