"""Analysis: loads responses from the store, runs the statistics, stores verdicts.

For every suspect against every protected endpoint, with the ``control`` endpoints as
the null pool (a suspect is never its own control), each channel that has data gives a
model-level p-value: free text (``stats.provenance_test``), identity claims, choice
distributions, logprobs and watermark radioactivity. Channels are combined with the
Cauchy combination (valid under dependence); the false discovery rate is controlled
across all pairs analysed together (Benjamini-Hochberg). Each pair's monitor (an
e-process valid under dependence between looks, ``stats.monitor``) is updated and
stored. When a suspect's reported model changes, verdicts are also stored for the
responses before and after the change.

A channel with fewer than ``analysis.min_controls`` controls with data is left out of
its verdict, which says why (``params["left_out"]``). A channel or pair that fails is
isolated: the other channels and pairs go on, and every gap or failure is handed back
as an :class:`AnalysisProblem` (the daemon logs and counts them).
"""

from __future__ import annotations

__all__ = ["AnalysisProblem", "Evidence", "PairResult", "analyze_all", "load_evidence"]

import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from auditor import features, model_runs, stats
from auditor.canary import ChoiceExpect, normalize_choice
from auditor.config import Settings
from auditor.errors import AuditorError
from auditor.features import TEXT_KINDS, version_key
from auditor.stats import monitor
from auditor.stats.nullmodel import MIN_CONTROLS
from auditor.store.models import (
    CanaryVersion,
    Endpoint,
    MonitorState,
    Response,
    Verdict,
    utcnow,
)
from auditor.version import code_version
from auditor.watermark.scheme import Scheme, load_scheme

MAX_SEGMENTS = 4


@dataclass
class Evidence:
    """Responses grouped for the statistics: ``texts[kind][endpoint][canary_key] -> [text]``."""

    endpoints: dict[str, Endpoint]
    versions: dict[int, CanaryVersion]
    texts: dict[str, dict[str, dict[str, list[str]]]] = field(default_factory=dict)
    logprobs: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    reported: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # seq, model
    key_version: dict[str, int] = field(default_factory=dict)  # canary key -> version id
    last_seq: int = 0


def load_evidence(
    session: Session,
    endpoints: Sequence[Endpoint],
    since: datetime | None = None,
    until: datetime | None = None,
    max_seq: int | None = None,
    only: tuple[str, int, int] | None = None,
    kinds: Collection[str] | None = None,
    runs: bool = True,
) -> Evidence:
    """Reads the responses of ``endpoints`` in one streamed query.

    ``only=(endpoint, first_seq, last_seq)`` keeps that endpoint's responses in the range;
    ``kinds`` keeps the texts of those canary kinds only (the reported models and the last
    seq still cover every response); ``runs=False`` leaves the reported models' runs to
    the caller (the cumulative analysis reads them from ``model_runs``).
    """
    versions = {v.id: v for v in session.scalars(select(CanaryVersion))}
    names = {e.id: e.name for e in endpoints}
    ev = Evidence({e.name: e for e in endpoints}, versions)
    keys = {vid: version_key(v) for vid, v in versions.items()}
    ev.key_version = {k: vid for vid, k in keys.items()}
    window: list[ColumnElement[bool]] = []
    if since is not None:
        window.append(Response.collected_at >= since)
    if until is not None:
        window.append(Response.collected_at <= until)
    if max_seq is not None:
        window.append(Response.seq <= max_seq)
    bounds = [Response.endpoint_id.in_(list(names)), *window]
    q = select(Response.endpoint_id, Response.canary_version_id, Response.text,
               Response.seq, Response.logprobs).where(*bounds).order_by(Response.seq)
    if kinds is not None:
        q = q.where(Response.canary_version_id.in_(
            [vid for vid, v in versions.items() if v.kind in kinds]))
    texts: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    logprobs: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for ep_id, vid, text, seq, lp in session.execute(q.execution_options(yield_per=20000)):
        name, cv = names[ep_id], versions[vid]
        if only is not None and name == only[0] and not only[1] <= seq <= only[2]:
            continue
        key = keys[vid]
        texts[cv.kind][name][key].append(text)
        if cv.kind == "logprob" and lp:
            logprobs[name][key].append(lp)
    ev.texts = {k: {e: dict(c) for e, c in v.items()} for k, v in texts.items()}
    ev.logprobs = {e: dict(v) for e, v in logprobs.items()}
    if runs:
        ev.reported = model_runs.runs_between(session, names, window)
    ev.last_seq = int(session.scalar(select(func.max(Response.seq)).where(*bounds)) or 0)
    return ev


@dataclass
class PairResult:
    protected: str
    suspect: str
    controls: list[str]
    p_value: float
    channels: dict[str, dict[str, Any]]
    text: stats.ProvenanceResult | None
    contributions: list[dict[str, Any]]
    canaries: list[str]
    n_samples: int
    segment: str | None = None
    left_out: dict[str, str] = field(default_factory=dict)  # channel -> why (a data gap)
    failed: dict[str, str] = field(default_factory=dict)  # channel -> the error
    evidence: list[Any] = field(default_factory=list)  # [newest seq, settings digest]


@dataclass(frozen=True)
class AnalysisProblem:
    """A channel (or ``"*"``: the whole pair) without a result in this analysis."""

    suspect: str
    protected: str
    channel: str
    reason: str
    failed: bool  # True: an error; False: left out for lack of data or controls

    @property
    def pair(self) -> str:
        return f"{self.suspect} vs {self.protected}"


class _LeftOut(Exception):
    """A channel cannot be tested on this data (too few controls with data, say)."""


def _data_permitting(test: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Runs a statistics test; its ValueError (the data cannot support the test: controls
    without a usable score, say) leaves the channel out with that reason."""
    try:
        return test(*args, **kwargs)
    except ValueError as exc:
        raise _LeftOut(str(exc)) from exc


def _need_controls(channel: str, have: int, min_controls: int) -> None:
    need = max(min_controls, MIN_CONTROLS)
    if have < need:
        raise _LeftOut(f"{have} controls with {channel} data; "
                       f"analysis.min_controls = {need} needed")


def _topk(lp: Any) -> dict[str, float] | None:
    """First generated token's top alternatives from an OpenAI-style logprobs list."""
    first = lp[0] if isinstance(lp, list) and lp else lp
    if isinstance(first, dict):
        top = first.get("top_logprobs")
        if isinstance(top, list):
            return {str(t.get("token")): float(t.get("logprob")) for t in top if "token" in t}
        if isinstance(top, dict):
            return {str(k): float(v) for k, v in top.items()}
    return None


def _identity(
    ev: Evidence, protected: str, suspect: str, controls: list[str], min_controls: int
) -> dict[str, Any] | None:
    per = ev.texts.get("identity", {})
    if not per.get(suspect):
        return None
    patterns: list[str] = []
    for key in per.get(suspect, {}):
        expect = ev.versions[ev.key_version[key]].content.get("expect", {})
        patterns += list(expect.get("names", [])) + list(expect.get("maker", []))
    if not patterns:
        return None
    combined = [re.compile("|".join(f"(?:{p})" for p in sorted(set(patterns))), re.I)]
    _need_controls("identity", sum(1 for c in controls if per.get(c)), min_controls)
    res = stats.identity_test(per[suspect], {c: per.get(c, {}) for c in controls}, combined)
    return {
        "p_value": res.p_value,
        "rank_p_value": res.rank_p_value,
        "suspect_claims": res.suspect_claims,
        "suspect_total": res.suspect_total,
        "control_claims": res.control_claims,
        "control_total": res.control_total,
        "odds_ratio": _finite(res.odds_ratio),
        "response_level_fisher_p": res.fisher_p,
        "control_rates": list(res.control_rates),
        "claiming_canaries": list(res.claiming_canaries),
        "informative": res.informative,
    }


def _choice(
    ev: Evidence, protected: str, suspect: str, controls: list[str], min_controls: int
) -> dict[str, Any] | None:
    per = ev.texts.get("choice", {})
    if not per.get(suspect) or not per.get(protected):
        return None

    def norm(endpoint: str) -> dict[str, list[str]]:
        out = {}
        for key, texts in per.get(endpoint, {}).items():
            expect = ChoiceExpect.model_validate(
                ev.versions[ev.key_version[key]].content.get("expect", {})
            )
            out[key] = [normalize_choice(t, expect) or "(none)" for t in texts]
        return out

    # a control counts when it answered a canary the protected model answered
    ctrl = {c: norm(c) for c in controls if set(per.get(c, {})) & set(per[protected])}
    _need_controls("choice", len(ctrl), min_controls)
    res = _data_permitting(stats.choice_test, norm(protected), norm(suspect), ctrl)
    if math.isnan(res.p_value):
        return None
    return {
        "p_value": res.p_value,
        "statistic": _finite(res.statistic),
        "suspect_closeness": _finite(res.suspect_closeness),
        "per_canary": [list(r) for r in res.per_canary[:20]],
    }


def _logprob(
    ev: Evidence, protected: str, suspect: str, controls: list[str], min_controls: int
) -> dict[str, Any] | None:
    def tops(endpoint: str) -> dict[str, list[dict[str, float]]]:
        out: dict[str, list[dict[str, float]]] = {}
        for key, items in ev.logprobs.get(endpoint, {}).items():
            vals = [t for t in (_topk(x) for x in items) if t]
            if vals:
                out[key] = vals
        return out

    p, s = tops(protected), tops(suspect)
    if not p or not s:
        return None
    ctrl = {c: v for c in controls if set(v := tops(c)) & set(p)}
    _need_controls("logprob", len(ctrl), min_controls)
    res = _data_permitting(stats.logprob_test, p, s, ctrl)
    if math.isnan(res.p_value):
        return None
    return {"p_value": res.p_value, "statistic": _finite(res.statistic), "measure": res.measure}


def _answers(ev: Evidence, endpoint: str) -> dict[str, list[str]]:
    """An endpoint's free-text-like answers (free text and watermark canaries) by canary."""
    out: dict[str, list[str]] = {}
    for kind in TEXT_KINDS:
        out.update(ev.texts.get(kind, {}).get(endpoint, {}))
    return out


def _watermark(
    ev: Evidence, protected: str, suspect: str, scheme: Scheme | None
) -> dict[str, Any] | None:
    """Radioactivity of the owner's keyed watermark in the suspect's answers, re-tokenized
    with the protected model's tokenizer; exact binomial over distinct (window, token)
    tuples, windows filtered to the protected model's own on the same canaries."""
    if scheme is None:
        return None
    sus = _answers(ev, suspect)
    if not sus:
        return None
    keys = sorted(sus)
    seqs = scheme.tokenizer.encode_batch([t for k in keys for t in sus[k]])
    windows = None
    if scheme.filter:
        prot = _answers(ev, protected)
        ref = [t for k in keys for t in prot.get(k, [])]
        if not ref:
            raise _LeftOut(f"{protected} has not answered {suspect}'s text canaries, and the "
                           "watermark filter scores only its windows (watermark.filter)")
        windows = stats.windows_of(scheme.tokenizer.encode_batch(ref), scheme.h)
    mode: Literal["distinct", "favourite"] = (
        "favourite" if scheme.score == "favourite" else "distinct")
    results = [stats.radioactivity_test(seqs, g, windows, tuples=mode) for g in scheme.greens]
    best = stats.worst_key(results)
    at = min(range(len(results)), key=lambda i: results[i].p_value)
    return {
        "p_value": best.p_value,
        "green": best.green,
        "scored": best.scored,
        "gamma": best.gamma,
        "green_rate": _finite(best.green_rate),
        "h": best.h,
        "duplicates": best.skipped_duplicates,
        "filtered_out": best.filtered_out,
        "filter": windows is not None,
        "score": mode,
        "keys_tested": best.keys_tested,
        "key_id": scheme.key_ids[at],  # the public id, never the key
        "n_canaries": len(keys),
        "n_answers": len(seqs),
    }


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


Audits = dict[tuple[str, tuple[str, ...]], dict[str, float]]


def _control_audit(
    sim: stats.SimilarityTensor, protected: str, controls: list[str], cache: Audits | None
) -> dict[str, float]:
    """Each control's own p-value against the other controls (``stats.audit_controls``).
    ``cache`` holds the audits of one similarity pass (every suspect of a protected model
    and pool shares one); the caller makes a new one with each pass."""
    if len(controls) <= MIN_CONTROLS:
        return {}
    key = (protected, tuple(controls))
    if cache is not None and key in cache:
        return cache[key]
    try:
        audit = stats.audit_controls(sim, protected, controls, screen_alpha=0.0,
                                     reps=sim.reps)[0]
    except ValueError:  # a control the data cannot score: no audit, the channel goes on
        audit = {}
    if cache is not None:
        cache[key] = audit
    return audit


def _free_text(
    ev: Evidence,
    sim: stats.SimilarityTensor | None,
    protected: str,
    suspect: str,
    controls: list[str],
    min_controls: int,
    seed: int,
    audit_alpha: float = 0.01,
    exclude_flagged: bool = False,
    audits: Audits | None = None,
) -> tuple[dict[str, Any], stats.ProvenanceResult, list[dict[str, Any]]] | None:
    """The free-text channel, its test result and each canary's contribution.

    The control audit: every usable control's own p-value against the others
    (``control_audit``), the controls significant at ``audit_alpha`` (``flagged_controls``,
    a finding to report) and, with ``exclude_flagged``, those left out of the null
    (``excluded_controls``)."""
    if sim is None or suspect not in sim.models or protected not in sim.models:
        return None
    both = (sim.counts[:, sim.index(protected)] > 0) & (sim.counts[:, sim.index(suspect)] > 0)
    if not both.any():
        raise _LeftOut(f"no free-text canary was answered by both {suspect} and {protected}")
    usable = [c for c in controls if c in sim.models and (sim.counts[both, sim.index(c)] > 0).any()]
    _need_controls("free_text", len(usable), min_controls)
    audit = _control_audit(sim, protected, usable, audits)
    res = _data_permitting(stats.provenance_test, sim, protected, suspect, usable,
                           reps=sim.reps, seed=seed,
                           screen_alpha=audit_alpha if exclude_flagged else None)
    contributions = []
    for c in res.contributions:
        cv = ev.versions[ev.key_version[c.canary_id]]
        contributions.append(
            {
                "canary_id": cv.canary_id,
                "canary_version": cv.version,
                "kind": cv.kind,
                "contribution": _finite(c.contribution),
                "suspect_similarity": c.suspect_similarity,
                "control_mean_similarity": c.control_mean_similarity,
            }
        )
    return {
        "p_value": res.p_value,
        "statistic": _finite(res.statistic),
        "effect": _finite(res.effect),
        "representations": res.channel_p_values,
        "composites": res.params["composite_p_values"],
        "suspect_score": _finite(res.suspect_score),
        "control_scores": {k: _finite(v) for k, v in res.control_scores.items()},
        "n_canaries": res.n_canaries,
        "control_audit": audit,
        "flagged_controls": {c: p for c, p in audit.items() if p <= audit_alpha},
        "excluded_controls": dict(res.params.get("excluded_controls") or {}),  # type: ignore[call-overload]
    }, res, contributions


def analyze_pair(
    ev: Evidence,
    sim: stats.SimilarityTensor | None,
    protected: str,
    suspect: str,
    controls: list[str],
    seed: int = 0,
    min_controls: int = MIN_CONTROLS,
    audit_alpha: float = 0.01,
    exclude_flagged: bool = False,
    audits: Audits | None = None,
    watermark: Scheme | None = None,
) -> PairResult:
    """Every channel with data, combined; ``channels`` is empty when none could be tested.

    A channel left out (``left_out``) or failing (``failed``) does not stop the others.
    ``audits``: the control audits of this similarity pass so far (see ``_control_audit``).
    """
    controls = [c for c in controls if c not in (protected, suspect)]
    channels: dict[str, dict[str, Any]] = {}
    contributions: list[dict[str, Any]] = []
    left_out: dict[str, str] = {}
    failed: dict[str, str] = {}
    text_res = None
    tests: list[tuple[str, Callable[[], dict[str, Any] | None]]] = [
        ("identity", lambda: _identity(ev, protected, suspect, controls, min_controls)),
        ("choice", lambda: _choice(ev, protected, suspect, controls, min_controls)),
        ("logprob", lambda: _logprob(ev, protected, suspect, controls, min_controls)),
        ("watermark", lambda: _watermark(ev, protected, suspect, watermark)),
    ]
    try:
        text = _free_text(ev, sim, protected, suspect, controls, min_controls, seed,
                          audit_alpha, exclude_flagged, audits)
        if text is not None:
            channels["free_text"], text_res, contributions = text
    except _LeftOut as exc:
        left_out["free_text"] = str(exc)
    except Exception as exc:
        failed["free_text"] = f"{type(exc).__name__}: {exc}"
    for name, test in tests:
        try:
            out = test()
        except _LeftOut as exc:
            left_out[name] = str(exc)
            continue
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        if out is not None:
            channels[name] = out
    # a channel that cannot tell any model from another (every model claims the same
    # identity rate) is reported but left out of the combination
    combined = [c for c in channels.values() if c.get("informative", True)] or list(
        channels.values()
    )
    ps = [float(c["p_value"]) for c in combined]
    p = (stats.cauchy_combine(ps) if len(ps) > 1 else ps[0]) if ps else math.nan
    used, n_samples = _usage(ev, sim, protected, suspect)
    return PairResult(
        protected, suspect, controls, float(p), channels, text_res, contributions, used,
        n_samples, left_out=left_out, failed=failed,
    )


def _usage(ev: Evidence, sim: stats.SimilarityTensor | None, protected: str, suspect: str,
           ) -> tuple[list[str], int]:
    """The canaries both answered, and the suspect's answers to them. Free-text kinds
    are counted in the similarity tensor (their texts may not be loaded: the feature
    cache holds them), the other kinds in the evidence."""
    used: set[str] = set()
    n = 0
    text_in_sim = sim is not None and suspect in sim.models and protected in sim.models
    for kind, per in ev.texts.items():
        if text_in_sim and kind in TEXT_KINDS:
            continue
        for k, answers in per.get(suspect, {}).items():
            if k in per.get(protected, {}):
                used.add(k)
                n += len(answers)
    if text_in_sim:
        assert sim is not None
        si, pi = sim.index(suspect), sim.index(protected)
        for q, k in enumerate(sim.canaries):
            if sim.counts[q, si] > 0 and sim.counts[q, pi] > 0:
                used.add(k)
                n += int(sim.counts[q, si])
    return sorted(used), n


def _problems(pr: PairResult) -> list[AnalysisProblem]:
    return [AnalysisProblem(pr.suspect, pr.protected, ch, why, False)
            for ch, why in pr.left_out.items()] + [
            AnalysisProblem(pr.suspect, pr.protected, ch, why, True)
            for ch, why in pr.failed.items()]


def _verdict(pr: PairResult, ids: dict[str, int], params: dict[str, Any]) -> Verdict:
    t = pr.text
    if pr.left_out or pr.failed:  # the verdict says which channels it lacks, and why
        params = {**params, "left_out": {**pr.left_out, **{
            k: f"failed: {why}" for k, why in pr.failed.items()}}}
    ft = pr.channels.get("free_text") or {}
    if ft.get("flagged_controls") or ft.get("excluded_controls"):
        # controls significantly close to the protected model: a finding, with their p
        params = {**params, "flagged_controls": ft.get("flagged_controls") or {},
                  "excluded_controls": ft.get("excluded_controls") or {}}
    return Verdict(
        suspect_id=ids[pr.suspect],
        protected_id=ids[pr.protected],
        method="cauchy(" + ",".join(pr.channels) + ")"
        if len(pr.channels) > 1
        else next(iter(pr.channels)),
        params=params,
        statistic=_finite(t.statistic) if t else None,
        p_value=pr.p_value,
        effect=_finite(t.effect) if t else None,
        effect_low=_finite(t.effect_ci[0]) if t else None,
        effect_high=_finite(t.effect_ci[1]) if t else None,
        n_canaries=len(pr.canaries),
        n_samples=pr.n_samples,
        canaries=[c.split("@v")[0] for c in pr.canaries],
        controls=pr.controls,
        contributions=pr.contributions,
        channels=pr.channels,
        segment=pr.segment,
        code_version=code_version(),
    )


def _segments(ev: Evidence, suspect: str) -> list[tuple[str, int, int]]:
    """(label, first seq, last seq) of each run of one reported model, when it changed.

    A label that flips back and forth (a load balancer between versions) is no change
    point: more than ``MAX_SEGMENTS`` runs are not split.
    """
    runs = ev.reported.get(suspect, [])
    if not 2 <= len(runs) <= MAX_SEGMENTS:
        return []
    bounds = [s for s, _ in runs] + [ev.last_seq + 1]
    return [(f"{m}", bounds[i], bounds[i + 1] - 1) for i, (_, m) in enumerate(runs)]


def analyze_all(
    session: Session,
    settings: Settings,
    *,
    suspects: Sequence[str] | None = None,
    protected: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    monitor_update: bool = True,
    problems: list[AnalysisProblem] | None = None,
    full: bool = False,
    changed_only: bool = False,
    progress: features.Progress | None = None,
) -> list[Verdict]:
    """Analyses every (suspect, protected) pair, stores verdicts and monitors; caller commits.

    ``suspects`` defaults to the endpoints with role ``suspect``; naming a control scores
    it as a pseudo-suspect (left out of its own null pool). Channels left out or failed,
    and pairs that failed as a whole, are appended to ``problems``; they never stop the
    other pairs. ``full``: rebuild the feature cache from the raw responses first
    (``features.update``); the verdicts are the same as the incremental path's.
    ``changed_only`` (the daemon after a cycle): a pair whose suspect, protected model and
    controls have no response since its newest verdict, under the same settings and code
    (``params["evidence"]``), gets no new verdict and its monitor no new look; its p still
    counts in the false discovery rate of the others. ``progress`` is told how far the
    featurisation of new answers has read (``features.update``).
    """
    problems = problems if problems is not None else []
    now = now or utcnow()
    configured = {e.name for e in settings.endpoints if e.enabled}
    rows = [e for e in session.scalars(select(Endpoint)) if not configured or e.name in configured]
    by_role: dict[str, list[str]] = defaultdict(list)
    for e in rows:
        by_role[e.role].append(e.name)
    sus = list(suspects) if suspects is not None else by_role["suspect"]
    prot = list(protected) if protected is not None else by_role["protected"]
    controls = by_role["control"]
    ids = {e.name: e.id for e in rows}
    wm_error = None
    try:
        scheme = load_scheme(settings)
    except (AuditorError, OSError) as exc:  # the watermark channel is left out, saying why
        scheme, wm_error = None, " ".join(str(exc).split())
    ev, sim, sim_error, cache = _evidence(session, settings, rows, since, until,
                                          full=full, texts=scheme is not None,
                                          progress=progress)
    recent = _recent_tensor(cache, rows, ev, now) if since is None and until is None else None
    seed = settings.analysis.seed
    min_controls = settings.analysis.min_controls
    audit_alpha = settings.analysis.control_audit_alpha
    exclude_flagged = settings.analysis.exclude_flagged_controls
    params = {
        "alpha": settings.analysis.alpha,
        "seed": seed,
        "since": since.isoformat() if since else None,
        "until": (until or now).isoformat(),
        "last_response_seq": ev.last_seq,
        "null": "model-level: suspect exchangeable with the controls",
        "text_representations": list(settings.analysis.representations),
        "embedding_model": settings.analysis.embedding_model,
        "features": _features_params(cache),
        "control_audit_alpha": audit_alpha,
        "exclude_flagged_controls": exclude_flagged,
        "combination": "cauchy",
        "fdr": "benjamini-hochberg",
    }
    text_endpoints = _text_endpoints(session, rows) if sim_error or wm_error else set()
    results: list[PairResult] = []
    audits: Audits = {}  # of this similarity pass
    seen = _evidence_seqs(session, rows)
    config = _config_digest(settings, controls)
    previous = _latest_verdicts(session) if changed_only else {}
    held: list[float] = []  # p of the pairs whose evidence did not change (for the FDR)
    for p in prot:
        for s in sus:
            if s == p:
                continue
            evidence_seq = max(seen.get(x, 0) for x in (s, p, *controls))
            last = previous.get((ids[s], ids[p]))
            if last is not None and (last.params or {}).get("evidence") == [evidence_seq, config]:
                held.append(last.p_value)  # nothing new for this pair: no new verdict
                continue
            try:
                pr = analyze_pair(ev, sim, p, s, controls, seed=seed, min_controls=min_controls,
                                  audit_alpha=audit_alpha, exclude_flagged=exclude_flagged,
                                  audits=audits, watermark=scheme)
            except Exception as exc:
                problems.append(AnalysisProblem(s, p, "*", f"{type(exc).__name__}: {exc}", True))
                continue
            if sim_error and s in text_endpoints and p in text_endpoints:
                pr.failed["free_text"] = sim_error
            if wm_error and s in text_endpoints:
                pr.left_out["watermark"] = wm_error
            problems += _problems(pr)
            if pr.channels:
                pr.evidence = [evidence_seq, config]
                results.append(pr)
    # the writes start here (SQLite has one writer: nothing above held its lock)
    if cache is not None:
        features.save(session, cache)
    if since is None and until is None:
        model_runs.update(session)
        ev.reported = model_runs.runs(session, {e.id: e.name for e in rows})
    if not results:
        return []
    q, _ = stats.benjamini_hochberg([r.p_value for r in results] + held,
                                    settings.analysis.alpha)
    verdicts = []
    alpha = settings.analysis.alpha
    for pr, qv in zip(results, q[:len(results)], strict=True):
        v = _verdict(pr, ids, {**params, "evidence": pr.evidence})
        v.q_value, v.created_at = float(qv), now
        v.significant = bool(qv <= alpha)
        try:  # both compute before they change anything: a failing pair changes nothing
            segments = _segment_verdicts(session, settings, ev, pr, ids, params, now, scheme,
                                         cache)
            if recent is not None:
                segments += _recent_verdict(settings, ev, recent, pr, ids, params, now)
            if monitor_update:
                v.e_value = _update_monitor(session, ids[pr.suspect], ids[pr.protected],
                                            pr, now, settings.analysis.monitor_half_n)
        except Exception as exc:
            problems.append(AnalysisProblem(pr.suspect, pr.protected, "*",
                                            f"{type(exc).__name__}: {exc}", True))
            continue
        verdicts.append(v)
        verdicts += segments
    session.add_all(verdicts)
    session.flush()
    return verdicts


def _evidence_seqs(session: Session, rows: Sequence[Endpoint]) -> dict[str, int]:
    """Each endpoint's newest response (seq), one index lookup each."""
    return {e.name: int(session.scalar(select(func.max(Response.seq)).where(
        Response.endpoint_id == e.id)) or 0) for e in rows}


def _config_digest(settings: Settings, controls: Sequence[str]) -> str:
    """What else a verdict depends on: the analysis settings, the controls, the code."""
    blob = json.dumps([settings.analysis.model_dump(mode="json"), sorted(controls),
                       code_version()], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _latest_verdicts(session: Session) -> dict[tuple[int, int], Verdict]:
    """The newest whole-evidence verdict of every (suspect, protected) pair."""
    newest = (select(func.max(Verdict.id)).where(Verdict.segment.is_(None))
              .group_by(Verdict.suspect_id, Verdict.protected_id))
    return {(v.suspect_id, v.protected_id): v
            for v in session.scalars(select(Verdict).where(Verdict.id.in_(newest)))}


def _evidence(
    session: Session, settings: Settings, rows: Sequence[Endpoint], since: datetime | None,
    until: datetime | None, *, full: bool, texts: bool, progress: features.Progress | None = None,
) -> tuple[Evidence, stats.SimilarityTensor | None, str | None, features.Cache | None]:
    """The evidence and the free-text similarity tensor, with why the tensor failed.

    The cumulative analysis reads the tensor from the feature cache, brought up to date
    in memory first (``features.update``; ``analyze_all`` saves it once the tests have
    run), and leaves the free-text answers unread unless ``texts`` (the watermark channel
    scores them); a window (``since``/``until``) featurises its own answers under the
    same basis. Nothing here writes."""
    window = since is not None or until is not None
    cache, error = None, None
    try:
        cache = features.update(session, settings, full=full, progress=progress)
    except Exception as exc:  # every pair's free-text channel fails; the others go on
        error = f"{type(exc).__name__}: {exc}"
    read_all = window or texts or cache is None
    ev = load_evidence(session, rows, since=since, until=until,
                       kinds=None if read_all else _OTHER_KINDS, runs=window)
    sim = None
    if cache is not None:
        try:
            if window:
                sim = features.raw_tensor(_merge_text(ev), cache)
            else:
                keys = {vid: k for k, vid in ev.key_version.items()}
                sim = features.tensor(cache, {e.id: e.name for e in rows}, keys)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
    return ev, sim, error, cache


_OTHER_KINDS = ("identity", "choice", "logprob", "watermark")


def _recent_tensor(cache: features.Cache | None, rows: Sequence[Endpoint], ev: Evidence,
                   now: datetime) -> stats.SimilarityTensor | None:
    """The free-text tensor of the recent sums (``analysis.recent_half_life_days``)."""
    if cache is None or not cache.basis.recent:
        return None
    keys = {vid: k for k, vid in ev.key_version.items()}
    return features.tensor(cache, {e.id: e.name for e in rows}, keys, recent_at=now)


def _recent_verdict(settings: Settings, ev: Evidence, recent: stats.SimilarityTensor,
                    pr: PairResult, ids: dict[str, int], params: dict[str, Any],
                    now: datetime) -> list[Verdict]:
    """The free-text verdict on recent answers (each weighs ``2 ** (-age / half-life)``),
    stored as the segment ``recent``: a suspect that changed its model shows here first.
    The other channels are left out of it (they count all answers)."""
    a = settings.analysis
    bare = Evidence(ev.endpoints, ev.versions, key_version=ev.key_version)
    seg = analyze_pair(bare, recent, pr.protected, pr.suspect, pr.controls, seed=a.seed,
                       min_controls=a.min_controls, audit_alpha=a.control_audit_alpha,
                       exclude_flagged=a.exclude_flagged_controls)
    if not seg.channels:
        return []
    seg.segment = f"recent: half-life {a.recent_half_life_days:g} d"
    v = _verdict(seg, ids, {**params, "recent": {
        "half_life_days": a.recent_half_life_days, "at": now.isoformat(),
        "weighting": "each answer weighs 2 ** (-age / half-life); a canary counts while its "
                     "answers weigh at least half an answer"}})
    v.created_at = now
    v.significant = bool(seg.p_value <= a.alpha)
    return [v]


def _text_endpoints(session: Session, rows: Sequence[Endpoint]) -> set[str]:
    """Endpoints with at least one free-text answer stored."""
    names = {e.id: e.name for e in rows}
    q = (select(Response.endpoint_id).distinct()
         .join(CanaryVersion, CanaryVersion.id == Response.canary_version_id)
         .where(CanaryVersion.kind.in_(TEXT_KINDS), Response.endpoint_id.in_(list(names))))
    return {names[i] for i in session.scalars(q)}


def _features_params(cache: features.Cache | None) -> dict[str, Any] | None:
    """What a verdict records of the featurisation: the basis's digest and size."""
    if cache is None:
        return None
    return {"basis": cache.digest, "basis_answers": cache.fitted_on,
            "sketch_dim": cache.basis.dim, "answers_added": cache.added,
            "rebuilt": cache.rebuilt, "mismatched_sums": len(cache.mismatched)}


def _merge_text(ev: Evidence) -> dict[str, dict[str, list[str]]]:
    """Free-text evidence per endpoint (watermark canaries are free text too)."""
    out: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for kind in TEXT_KINDS:
        for endpoint, per in ev.texts.get(kind, {}).items():
            out[endpoint].update(per)
    return dict(out)


def _update_monitor(
    session: Session, sid: int, pid: int, pr: PairResult, now: datetime, half_n: int
) -> float:
    """Feeds the pair's monitor the p-value of all data so far and the suspect's answer
    count; ``half_n`` applies to a monitor that starts now (a running one keeps its own)."""
    row = session.scalars(
        select(MonitorState).where(MonitorState.suspect_id == sid, MonitorState.protected_id == pid)
    ).first()
    n = max(pr.n_samples, 1)
    previous = row.state if row is not None else monitor.start(half_n, n)
    state = monitor.update(previous, pr.p_value, n, now.isoformat())
    e_value = monitor.e_value(state)
    if row is None:
        row = MonitorState(suspect_id=sid, protected_id=pid, state=state)
        session.add(row)
    row.state, row.e_value, row.updated_at = state, e_value, now
    return row.e_value


def _segment_verdicts(
    session: Session,
    settings: Settings,
    ev: Evidence,
    pr: PairResult,
    ids: dict[str, int],
    params: dict[str, Any],
    now: datetime,
    scheme: Scheme | None = None,
    cache: features.Cache | None = None,
) -> list[Verdict]:
    """When the suspect's reported model changed, a verdict per run of one model."""
    out = []
    for label, first, last in _segments(ev, pr.suspect):
        sub = load_evidence(session, list(ev.endpoints.values()), only=(pr.suspect, first, last))
        sim = features.raw_tensor(_merge_text(sub), cache) if cache is not None else None
        seg = analyze_pair(
            sub, sim, pr.protected, pr.suspect, pr.controls, seed=settings.analysis.seed,
            min_controls=settings.analysis.min_controls,
            audit_alpha=settings.analysis.control_audit_alpha,
            exclude_flagged=settings.analysis.exclude_flagged_controls, watermark=scheme,
        )
        if not seg.channels:
            continue
        seg.segment = f"model={label}"[:64]
        v = _verdict(seg, ids, {**params, "segment_seq": [first, last]})
        v.created_at = now
        v.significant = bool(seg.p_value <= settings.analysis.alpha)
        out.append(v)
    return out
