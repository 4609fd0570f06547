"""Analysis through the store: toy models with distinct habits, a student trained on the
protected model's answers, an independent suspect."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from auditor.analysis import AnalysisProblem, analyze_all
from auditor.demo.lm import TrigramLM
from auditor.demo.setup import DEMO_ENDPOINTS, write_canaries
from auditor.importer import ImportRecord, import_records
from auditor.registry import load_registry, sync_registry
from auditor.store import Store, sync_endpoints
from auditor.store.models import Endpoint, FeatureSum, MonitorState, Verdict
from tests.factories import demo_lms, fill, settings_with

ROLES = {name: role for name, (role, _) in DEMO_ENDPOINTS.items()}
CONTROLS = sorted(n for n, r in ROLES.items() if r == "control")


@pytest.fixture(scope="module")
def lms() -> dict[str, TrigramLM]:
    return demo_lms()


def _fill(store: Store, tmp_path: Path, lms: dict[str, TrigramLM], start: datetime,
          reported: dict[str, str] | None = None, seed: int = 0) -> None:
    reg = load_registry(write_canaries(tmp_path / "canaries"))
    settings = settings_with(ROLES)
    rng = random.Random(seed)
    with store.session() as s:
        eps = sync_endpoints(s, settings)
        sync_registry(s, reg)
        for name in ROLES:
            recs = [
                ImportRecord(canary_id=c.canary.id, sample_index=i,
                             text=lms[name].generate(c.canary.chat()[-1]["content"], rng, 0.8),
                             collected_at=start + timedelta(seconds=i),
                             reported_model=(reported or {}).get(name, name))
                for c in reg.canaries for i in range(c.canary.samples)
            ]
            import_records(s, eps[name], recs, source=f"{name}-{seed}")


def _verdicts(store: Store) -> dict[str, Verdict]:
    with store.session() as s:
        names = {e.id: e.name for e in s.scalars(select(Endpoint))}
        rows = s.scalars(select(Verdict).where(Verdict.segment.is_(None))).all()
        return {names[v.suspect_id]: v for v in rows}


def test_the_student_is_flagged_and_the_independent_suspect_is_not(
    store: Store, tmp_path: Path, lms: dict[str, TrigramLM]
) -> None:
    _fill(store, tmp_path, lms, datetime(2026, 11, 1, tzinfo=UTC))
    with store.session() as s:
        analyze_all(s, settings_with(ROLES))
    v = _verdicts(store)
    assert set(v) == {"student", "indie-suspect"}
    assert v["student"].significant and v["student"].p_value < 0.01
    assert not v["indie-suspect"].significant and v["indie-suspect"].p_value > 0.05
    assert v["student"].effect is not None and v["student"].effect > v["indie-suspect"].effect


def test_a_verdict_carries_everything_a_report_needs(
    store: Store, tmp_path: Path, lms: dict[str, TrigramLM]
) -> None:
    _fill(store, tmp_path, lms, datetime(2026, 11, 1, tzinfo=UTC))
    with store.session() as s:
        analyze_all(s, settings_with(ROLES))
    v = _verdicts(store)["student"]
    assert v.q_value is not None and v.q_value >= v.p_value
    assert v.effect_low is not None and v.effect_high is not None
    assert v.effect_low <= v.effect <= v.effect_high
    assert sorted(v.controls) == CONTROLS
    assert {"free_text", "identity", "choice"} <= set(v.channels)
    assert v.channels["identity"]["suspect_claims"] > 0
    contribs = [c["contribution"] for c in v.contributions]
    assert contribs == sorted(contribs, reverse=True) and len(contribs) >= 30
    assert v.n_canaries == len(v.canaries) >= 35 and v.n_samples > v.n_canaries
    assert v.params["seed"] == 0 and v.params["last_response_seq"] > 0
    assert v.code_version


def test_configured_representations_are_the_ones_tested_and_recorded(
    store: Store, tmp_path: Path, lms: dict[str, TrigramLM]
) -> None:
    _fill(store, tmp_path, lms, datetime(2026, 11, 1, tzinfo=UTC))
    settings = settings_with(ROLES, analysis={"representations": ["char", "opening"]})
    with store.session() as s:
        analyze_all(s, settings)
    v = _verdicts(store)["student"]
    assert set(v.channels["free_text"]["representations"]) == {"char", "opening",
                                                              "style_residual"}
    assert v.params["text_representations"] == ["char", "opening"]
    assert set(v.contributions[0]["suspect_similarity"]) == {"char", "opening"}
    assert v.significant


def test_pseudo_suspect_control_is_left_out_of_its_own_pool(
    store: Store, tmp_path: Path, lms: dict[str, TrigramLM]
) -> None:
    _fill(store, tmp_path, lms, datetime(2026, 11, 1, tzinfo=UTC))
    with store.session() as s:
        verdicts = [v for v in analyze_all(s, settings_with(ROLES), suspects=["control-a"])
                    if v.segment is None]
        assert len(verdicts) == 1
        assert "control-a" not in verdicts[0].controls
        assert len(verdicts[0].controls) == len(CONTROLS) - 1
        assert not verdicts[0].significant


def test_monitor_state_is_updated_and_grows_for_the_student(
    store: Store, tmp_path: Path, lms: dict[str, TrigramLM]
) -> None:
    settings = settings_with(ROLES)
    day = datetime(2026, 11, 1, tzinfo=UTC)
    for cycle in range(2):
        _fill(store, tmp_path, lms, day + timedelta(days=cycle), seed=cycle)
        with store.session() as s:
            analyze_all(s, settings, now=day + timedelta(days=cycle, hours=1))
    with store.session() as s:
        names = {e.id: e.name for e in s.scalars(select(Endpoint))}
        states = {names[m.suspect_id]: m for m in s.scalars(select(MonitorState))}
    assert len(states["student"].state["history"]) == 2
    assert len(states["student"].state["looks"]) == 2  # each cycle added answers
    assert states["student"].e_value >= 20 > states["indie-suspect"].e_value


def test_a_new_monitor_takes_its_information_horizon_from_the_settings(
    store: Store, tmp_path: Path, lms: dict[str, TrigramLM]
) -> None:
    _fill(store, tmp_path, lms, datetime(2026, 11, 1, tzinfo=UTC))
    with store.session() as s:
        analyze_all(s, settings_with(ROLES, analysis={"monitor_half_n": 400}))
        states = list(s.scalars(select(MonitorState)))
    assert states and {m.state["half_n"] for m in states} == {400}


def test_a_new_monitor_keeps_most_of_its_weight_past_a_large_first_analysis(
    store: Store, tmp_path: Path, lms: dict[str, TrigramLM]
) -> None:
    _fill(store, tmp_path, lms, datetime(2026, 11, 1, tzinfo=UTC))
    with store.session() as s:
        analyze_all(s, settings_with(ROLES, analysis={"monitor_half_n": 10}))
        states = list(s.scalars(select(MonitorState)))
    assert states
    for m in states:  # the first look brought more than 5 answers: twice them, not 10
        first = m.state["looks"][0]
        assert first["n"] > 5 and m.state["half_n"] == 2 * first["n"]
        assert first["weight"] < 0.005


def test_a_change_of_reported_model_gives_verdicts_before_and_after(
    store: Store, tmp_path: Path, lms: dict[str, TrigramLM]
) -> None:
    day = datetime(2026, 11, 1, tzinfo=UTC)
    _fill(store, tmp_path, lms, day, seed=0)
    swapped = {**lms, "indie-suspect": lms["student"]}  # the endpoint swaps its model
    _fill(store, tmp_path, swapped, day + timedelta(days=1), seed=1,
          reported={"indie-suspect": "indie-v2"})
    with store.session() as s:
        analyze_all(s, settings_with(ROLES))
        names = {e.id: e.name for e in s.scalars(select(Endpoint))}
        changes = select(Verdict).where(Verdict.segment.like("model=%"))
        segs = {v.segment: v for v in s.scalars(changes) if names[v.suspect_id] == "indie-suspect"}
    assert set(segs) == {"model=indie-suspect", "model=indie-v2"}
    assert segs["model=indie-v2"].p_value < 0.05 < segs["model=indie-suspect"].p_value


def test_no_verdict_without_responses(store: Store) -> None:
    with store.session() as s:
        sync_endpoints(s, settings_with(ROLES))
        assert analyze_all(s, settings_with(ROLES)) == []


def test_logprob_canaries_feed_the_logprob_channel(store: Store, tmp_path: Path) -> None:
    """Top-k next-token distributions as the OpenAI adapter stores them."""
    d = tmp_path / "lp"
    d.mkdir()
    (d / "lp.yaml").write_text("canaries:\n" + "".join(
        f"  - id: lp-{i}\n    kind: logprob\n    prompt: 'Continue: {i}'\n" for i in range(12)))
    roles = {"p": "protected", "s": "suspect", **{f"c{j}": "control" for j in range(5)}}
    settings = settings_with(roles)
    rng = random.Random(0)
    vocab = [f"t{k}" for k in range(40)]

    def top(tokens: list[str]) -> list[dict[str, object]]:
        return [{"token": tokens[0], "logprob": -0.1, "top_logprobs": [
            {"token": t, "logprob": -0.1 - r} for r, t in enumerate(tokens)]}]

    p_tokens = {i: rng.sample(vocab, 5) for i in range(12)}
    with store.session() as s:
        eps = sync_endpoints(s, settings)
        sync_registry(s, load_registry(d))
        at = datetime(2026, 11, 1, tzinfo=UTC)
        for name in roles:
            recs = [ImportRecord(canary_id=f"lp-{i}", text=p_tokens[i][0], collected_at=at,
                                 logprobs=top(p_tokens[i] if name in ("p", "s")
                                              else rng.sample(vocab, 5)))
                    for i in range(12)]
            import_records(s, eps[name], recs, source=name)
    with store.session() as s:
        verdicts = analyze_all(s, settings)
    v = next(v for v in verdicts if v.segment is None)
    assert "logprob" in v.channels and v.channels["logprob"]["p_value"] < 0.01


def _analyze_cli(tmp_path: Path, sqlite_url: str, roles: dict[str, str],
                 timeout: float, *args: str) -> subprocess.CompletedProcess[str]:
    """``auditor analyze`` as a user runs it, on a config naming ``roles``' endpoints."""
    cfg = tmp_path / "auditor.toml"
    cfg.write_text(f'database_url = "{sqlite_url}"\n' + "".join(
        f'[[endpoints]]\nname = "{n}"\nprovider = "http"\nmodel = "model-{n}"\nrole = "{r}"\n'
        'base_url = "http://127.0.0.1:9/v1"\n' for n, r in roles.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    return subprocess.run([sys.executable, "-m", "auditor", "--config", str(cfg), "analyze",
                           *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _one_control_down(store: Store) -> dict[str, str]:
    """p, s and three controls; control c2 answered no choice canary (all timed out)."""
    roles = {"p": "protected", "s": "suspect", "c0": "control", "c1": "control",
             "c2": "control"}
    rng = random.Random(3)
    words = "river stone light quiet north paper glass winter field ember salt".split()
    colours = ["red", "blue", "green", "yellow", "purple"]

    def text() -> str:
        return " ".join(rng.choice(words) for _ in range(12))

    answers: dict[str, dict[str, list[str]]] = {}
    for name in roles:
        per = {cid: [text() for _ in range(2)] for cid in
               ("ft-lighthouse-keeper", "ft-greeting", "ft-invented-word", "ft-uncertain-fact")}
        if name != "c2":
            per["ch-colour"] = [rng.choice(colours) for _ in range(10)]
            per["ch-coin"] = [rng.choice(["heads", "tails"]) for _ in range(10)]
        answers[name] = per
    fill(store, settings_with(roles), answers)
    return roles


def test_a_channel_with_too_few_controls_is_left_out_and_the_verdict_says_why(
    store: Store,
) -> None:
    roles = _one_control_down(store)
    problems: list[AnalysisProblem] = []
    with store.session() as s:
        verdicts = analyze_all(s, settings_with(roles), problems=problems)
    v = next(v for v in verdicts if v.segment is None)
    assert "free_text" in v.channels and "choice" not in v.channels
    assert "2 controls" in v.params["left_out"]["choice"]
    assert "min_controls = 3" in v.params["left_out"]["choice"]
    assert [(p.suspect, p.protected, p.channel, p.failed) for p in problems] == [
        ("s", "p", "choice", False)]


def test_min_controls_is_honoured_and_a_pair_without_any_channel_is_reported(
    store: Store,
) -> None:
    roles = _one_control_down(store)
    problems: list[AnalysisProblem] = []
    settings = settings_with(roles, analysis={"min_controls": 4})
    with store.session() as s:
        assert analyze_all(s, settings, problems=problems) == []
    assert {p.channel for p in problems} == {"free_text", "choice"}
    assert all(p.pair == "s vs p" and not p.failed for p in problems)


def test_auditor_analyze_names_the_channels_left_out(
    store: Store, sqlite_url: str, tmp_path: Path
) -> None:
    """``auditor analyze`` used to crash with a traceback when a control was down."""
    done = _analyze_cli(tmp_path, sqlite_url, _one_control_down(store), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "s vs p: choice left out: 2 controls with choice data" in " ".join(
        done.stdout.split())


@pytest.mark.parametrize("exclude", [False, True])
def test_a_control_derived_from_the_protected_model_is_reported_with_its_pvalue(
    store: Store, tmp_path: Path, lms: dict[str, TrigramLM], exclude: bool
) -> None:
    """Issue 14: the student serves as a control. The audit tests every control against the
    others; the student is a finding in every verdict, with its own p-value, and is left
    out of the null only when the configuration says so."""
    from auditor.verdicts import flagged_control_lines

    _fill(store, tmp_path, lms, datetime(2026, 11, 1, tzinfo=UTC))
    roles = {**ROLES, "student": "control"}
    settings = settings_with(roles, analysis={"exclude_flagged_controls": exclude})
    with store.session() as s:
        sync_endpoints(s, settings)  # the student's role is now "control"
        verdicts = analyze_all(s, settings)
        names = {e.id: e.name for e in s.scalars(select(Endpoint))}
    v = _verdicts(store)["indie-suspect"]
    audit = v.channels["free_text"]["control_audit"]
    assert set(audit) == set(CONTROLS) | {"student"}
    assert v.params["flagged_controls"] == {"student": audit["student"]}
    assert audit["student"] <= 0.01 < min(p for c, p in audit.items() if c != "student")
    assert v.params["exclude_flagged_controls"] is exclude
    assert v.params["excluded_controls"] == ({"student": audit["student"]} if exclude else {})
    assert ("student" in v.channels["free_text"]["control_scores"]) is not exclude
    lines = flagged_control_lines(verdicts, names)
    assert len(lines) == 1 and lines[0].startswith("control student is itself significantly")
    assert ("left out of the null" in lines[0]) is exclude


def test_the_pos_representation_runs_through_the_store_with_the_shipped_tagger(
    store: Store, tmp_path: Path, lms: dict[str, TrigramLM]
) -> None:
    _fill(store, tmp_path, lms, datetime(2026, 11, 1, tzinfo=UTC))
    settings = settings_with(ROLES, analysis={"representations": ["word", "layout", "pos"]})
    with store.session() as s:
        analyze_all(s, settings)
    v = _verdicts(store)
    assert "pos" in v["student"].channels["free_text"]["representations"]
    assert v["student"].params["text_representations"] == ["word", "layout", "pos"]
    assert v["student"].significant and not v["indie-suspect"].significant


def test_auditor_analyze_prints_a_control_that_looks_derived(
    store: Store, sqlite_url: str, tmp_path: Path, lms: dict[str, TrigramLM]
) -> None:
    _fill(store, tmp_path, lms, datetime(2026, 11, 1, tzinfo=UTC))
    done = _analyze_cli(tmp_path, sqlite_url, {**ROLES, "student": "control"}, timeout=300)
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "control student is itself significantly close to protected (p = " in out
    assert "kept in the null" in out


def test_auditor_analyze_full_checks_the_feature_cache_and_exits_1_when_it_was_wrong(
    store: Store, sqlite_url: str, tmp_path: Path, lms: dict[str, TrigramLM]
) -> None:
    _fill(store, tmp_path, lms, datetime(2026, 11, 1, tzinfo=UTC))
    first = _analyze_cli(tmp_path, sqlite_url, ROLES, 120)
    assert first.returncode == 0, first.stderr
    with store.session() as s:  # a sum that no longer stands for its answers
        s.scalars(select(FeatureSum).limit(1)).one().digest = "0" * 64
    full = _analyze_cli(tmp_path, sqlite_url, ROLES, 120, "--full")
    words = " ".join(full.stdout.split())
    assert full.returncode == 1, full.stderr
    assert "1 stored sums disagreed and were replaced" in words, words
    again = _analyze_cli(tmp_path, sqlite_url, ROLES, 120, "--full")
    assert again.returncode == 0 and "every stored sum agreed" in " ".join(again.stdout.split())

