"""The watermark channel through the store: answers re-tokenized with the protected
model's tokenizer.json, scored under the configured keys, joined to the verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from auditor.analysis import AnalysisProblem, analyze_all
from auditor.config import Settings
from auditor.store import Store
from auditor.store.models import Endpoint, Verdict
from auditor.watermark.core import GreenList
from auditor.watermark.keys import key_id
from auditor.watermark.tokenizer import ModelTokenizer, load_tokenizer, word_level_tokenizer
from tests.factories import fill, settings_with

pytest.importorskip("tokenizers", reason="the watermark's tokenizer needs `tokenizers`")

KEY = bytes(range(100, 132))
WORDS = [f"w{i}" for i in range(800)]
CANARIES = ["wm-essay-rivers", "wm-story-robot", "wm-explain-tides", "ft-lighthouse-keeper",
            "ft-explain-entropy-child", "ft-apology-email"]
ROLES = {"protected": "protected", "student": "suspect", "indie": "suspect",
         "c1": "control", "c2": "control", "c3": "control"}


def _text(rng: np.random.Generator, tok: ModelTokenizer, green: GreenList | None,
          n: int = 160) -> str:
    """A toy model writing ``n`` words: a Zipf-like next word shifted by the previous one,
    with the watermark's bias when ``green`` is given (ids from the tokenizer itself)."""
    vocab = tok.vocab_size
    base = np.full(vocab, -np.inf)
    base[1:] = -np.log(np.arange(1, vocab)) * 1.05  # id 0 is [UNK]: never written
    ids = [int(rng.integers(1, vocab))]
    for _ in range(n - 1):
        logits = np.roll(base[1:], ids[-1] % 89)
        logits = np.concatenate([[-np.inf], logits])
        if green is not None:
            logits = green.bias(logits, ids)
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(vocab, p=p / p.sum())))
    return " ".join(WORDS[i - 1] for i in ids)


@pytest.fixture
def tokenizer_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokenizer.json"
    word_level_tokenizer(WORDS).save(path)
    return path


def _settings(tokenizer: Path | None, key_file: Path, **wm: object) -> Settings:
    return settings_with(ROLES, watermark={
        **({"tokenizer": str(tokenizer)} if tokenizer else {}), **wm,
        "keys": [{"id": key_id(KEY), "file": str(key_file),
                  "valid_from": "2026-01-01T00:00:00Z"}]})


def _key_file(tmp_path: Path) -> Path:
    path = tmp_path / "wm.key"
    path.write_text(KEY.hex() + "\n")
    path.chmod(0o600)
    return path


def _world(store: Store, settings: Settings, tok: ModelTokenizer) -> None:
    green = GreenList(KEY, tok.vocab_size, gamma=0.25, delta=2.0, h=1)
    rng = np.random.default_rng(7)
    answers = {}
    for name in ROLES:
        marked = name in ("protected", "student")  # the student writes what it learnt
        answers[name] = {c: [_text(rng, tok, green if marked else None) for _ in range(2)]
                         for c in CANARIES}
    fill(store, settings, answers)


def _verdicts(store: Store) -> dict[str, Verdict]:
    with store.session() as s:
        names = {e.id: e.name for e in s.scalars(select(Endpoint))}
        return {names[v.suspect_id]: v
                for v in s.scalars(select(Verdict).where(Verdict.segment.is_(None)))}


def test_the_channel_flags_a_watermarked_suspect_and_joins_the_verdict(
        store: Store, tmp_path: Path, tokenizer_file: Path) -> None:
    settings = _settings(tokenizer_file, _key_file(tmp_path))
    tok = load_tokenizer(tokenizer_file)
    _world(store, settings, tok)
    problems: list[AnalysisProblem] = []
    with store.session() as s:
        analyze_all(s, settings, problems=problems)
    v = _verdicts(store)
    wm = v["student"].channels["watermark"]
    assert wm["p_value"] < 1e-8 and wm["green_rate"] > 0.35
    assert wm["filter"] and wm["keys_tested"] == 1 and wm["key_id"] == key_id(KEY)
    assert wm["scored"] > 500 and wm["h"] == 1
    assert "watermark" in v["student"].method  # combined with the other channels
    assert v["student"].p_value <= 2 * min(c["p_value"] for c in v["student"].channels.values()
                                           if c.get("informative", True)) + 1e-12
    assert v["indie"].channels["watermark"]["p_value"] > 0.01
    assert not [p for p in problems if p.channel == "watermark"]
    dumped = repr([x.channels for x in v.values()]) + repr([x.params for x in v.values()])
    assert KEY.hex() not in dumped


def test_without_the_filter_more_tuples_are_scored(
        store: Store, tmp_path: Path, tokenizer_file: Path) -> None:
    settings = _settings(tokenizer_file, _key_file(tmp_path), filter=False)
    _world(store, settings, load_tokenizer(tokenizer_file))
    with store.session() as s:
        analyze_all(s, settings)
    wm = _verdicts(store)["student"].channels["watermark"]
    assert not wm["filter"] and wm["filtered_out"] == 0 and wm["p_value"] < 1e-8


def test_keys_without_a_tokenizer_leave_the_channel_out_naming_the_setting(
        store: Store, tmp_path: Path, tokenizer_file: Path) -> None:
    settings = _settings(None, _key_file(tmp_path))
    _world(store, settings, load_tokenizer(tokenizer_file))
    problems: list[AnalysisProblem] = []
    with store.session() as s:
        analyze_all(s, settings, problems=problems)
    (why,) = [p.reason for p in problems if p.channel == "watermark" and p.suspect == "student"]
    assert "watermark.tokenizer" in why and "tokenizer.json" in why
    assert "watermark" not in _verdicts(store)["student"].channels


def test_a_missing_tokenizer_file_is_named_with_the_setting_and_fix(tmp_path: Path) -> None:
    cfg = tmp_path / "auditor.toml"
    key = _key_file(tmp_path)
    cfg.write_text(f'[watermark]\ntokenizer = "nowhere/tokenizer.json"\n[[watermark.keys]]\n'
                   f'id = "{key_id(KEY)}"\nfile = "{key}"\nvalid_from = 2026-01-01T00:00:00Z\n')
    from auditor.config import load_settings
    from auditor.errors import AuditorError
    from auditor.watermark.scheme import load_scheme

    with pytest.raises(AuditorError) as err:
        load_scheme(load_settings(cfg))
    text = str(err.value)
    assert "watermark.tokenizer" in text and "nowhere/tokenizer.json" in text
    assert "fix:" in text and str(cfg) in text


def test_a_file_that_is_not_a_tokenizer_is_refused_with_the_fix(tmp_path: Path) -> None:
    from auditor.errors import AuditorError

    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}')
    with pytest.raises(AuditorError, match="is not a tokenizer.json") as err:
        load_tokenizer(bad)
    assert "fix:" in str(err.value)


def test_the_report_explains_the_channel_in_plain_words(
        store: Store, tmp_path: Path, tokenizer_file: Path) -> None:
    from auditor.bundle import write_bundle
    from auditor.report import ReportRequest
    from auditor.signing import init_key, load_private_key

    init_key(tmp_path / "signing.pem")
    settings = _settings(tokenizer_file, _key_file(tmp_path)).model_copy(
        update={"signing": settings_with({}).signing.model_copy(
            update={"key_path": str(tmp_path / "signing.pem")})})
    _world(store, settings, load_tokenizer(tokenizer_file))
    with store.session() as s:
        analyze_all(s, settings)
    with store.session() as s:
        result = write_bundle(s, settings, ReportRequest(suspect="student", protected="protected"),
                              load_private_key(tmp_path / "signing.pem"),
                              out_dir=tmp_path / "out", formats=("html",))
    html = " ".join((result.path / "report.html").read_text().split())
    wm = _verdicts(store)["student"].channels["watermark"]
    assert f"{wm['green']} of {wm['scored']} scored tokens green" in html
    assert "against 0.25 expected of an independent model" in html
    assert "exact binomial p" in html and "Key id " + key_id(KEY) in html
    assert KEY.hex() not in html


def test_the_favourite_scoring_is_chosen_in_the_config(
        store: Store, tmp_path: Path, tokenizer_file: Path) -> None:
    settings = _settings(tokenizer_file, _key_file(tmp_path), score="favourite")
    _world(store, settings, load_tokenizer(tokenizer_file))
    with store.session() as s:
        analyze_all(s, settings)
    v = _verdicts(store)
    wm = v["student"].channels["watermark"]
    assert wm["score"] == "favourite" and wm["p_value"] < 1e-6
    assert wm["scored"] < 800  # one tuple per window
    assert v["indie"].channels["watermark"]["p_value"] > 0.01
