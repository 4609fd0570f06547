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
"""

from __future__ import annotations

__all__ = ["Evidence", "PairResult", "analyze_all", "load_evidence"]

import math
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from auditor import stats
from auditor.canary import ChoiceExpect, normalize_choice
from auditor.config import Settings
from auditor.stats import monitor
from auditor.store.models import (
    CanaryVersion,
    Endpoint,
    MonitorState,
    Response,
    Verdict,
    utcnow,
)
from auditor.version import code_version

TEXT_KINDS = ("free_text", "watermark")
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


def _key(cv: CanaryVersion) -> str:
    return cv.canary_id if cv.version == 1 else f"{cv.canary_id}@v{cv.version}"


def load_evidence(
    session: Session,
    endpoints: Sequence[Endpoint],
    since: datetime | None = None,
    until: datetime | None = None,
    max_seq: int | None = None,
    only: tuple[str, int, int] | None = None,
) -> Evidence:
    """Reads the responses of ``endpoints`` in one streamed query.

    ``only=(endpoint, first_seq, last_seq)`` keeps that endpoint's responses in the range.
    """
    versions = {v.id: v for v in session.scalars(select(CanaryVersion))}
    names = {e.id: e.name for e in endpoints}
    ev = Evidence({e.name: e for e in endpoints}, versions)
    q = (
        select(
            Response.endpoint_id,
            Response.canary_version_id,
            Response.text,
            Response.reported_model,
            Response.seq,
            Response.logprobs,
        )
        .where(Response.endpoint_id.in_(list(names)))
        .order_by(Response.seq)
    )
    if since is not None:
        q = q.where(Response.collected_at >= since)
    if until is not None:
        q = q.where(Response.collected_at <= until)
    if max_seq is not None:
        q = q.where(Response.seq <= max_seq)
    texts: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    logprobs: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    reported: dict[str, list[tuple[int, str]]] = defaultdict(list)
    keys = {vid: _key(v) for vid, v in versions.items()}
    for ep_id, vid, text, model, seq, lp in session.execute(q.execution_options(yield_per=20000)):
        name, cv = names[ep_id], versions[vid]
        if only is not None and name == only[0] and not only[1] <= seq <= only[2]:
            continue
        key = keys[vid]
        ev.key_version[key] = vid
        texts[cv.kind][name][key].append(text)
        if cv.kind == "logprob" and lp:
            logprobs[name][key].append(lp)
        if model and (not reported[name] or reported[name][-1][1] != model):
            reported[name].append((seq, model))
        ev.last_seq = max(ev.last_seq, seq)
    ev.texts = {k: {e: dict(c) for e, c in v.items()} for k, v in texts.items()}
    ev.logprobs = {e: dict(v) for e, v in logprobs.items()}
    ev.reported = dict(reported)
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
    ev: Evidence, protected: str, suspect: str, controls: list[str]
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
    res = stats.identity_test(per[suspect], {c: per.get(c, {}) for c in controls}, combined)
    return {
        "p_value": res.p_value,
        "suspect_claims": res.suspect_claims,
        "suspect_total": res.suspect_total,
        "control_claims": res.control_claims,
        "control_total": res.control_total,
        "odds_ratio": _finite(res.odds_ratio),
        "response_level_fisher_p": res.fisher_p,
        "control_rates": list(res.control_rates),
        "claiming_canaries": list(res.claiming_canaries),
    }


def _choice(
    ev: Evidence, protected: str, suspect: str, controls: list[str]
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

    ctrl = {c: norm(c) for c in controls if per.get(c)}
    if len(ctrl) < 2:
        return None
    res = stats.choice_test(norm(protected), norm(suspect), ctrl)
    if math.isnan(res.p_value):
        return None
    return {
        "p_value": res.p_value,
        "statistic": _finite(res.statistic),
        "suspect_closeness": _finite(res.suspect_closeness),
        "per_canary": [list(r) for r in res.per_canary[:20]],
    }


def _logprob(
    ev: Evidence, protected: str, suspect: str, controls: list[str]
) -> dict[str, Any] | None:
    def tops(endpoint: str) -> dict[str, list[dict[str, float]]]:
        out: dict[str, list[dict[str, float]]] = {}
        for key, items in ev.logprobs.get(endpoint, {}).items():
            vals = [t for t in (_topk(x) for x in items) if t]
            if vals:
                out[key] = vals
        return out

    p, s = tops(protected), tops(suspect)
    ctrl = {c: v for c in controls if (v := tops(c))}
    if not p or not s or len(ctrl) < 2:
        return None
    res = stats.logprob_test(p, s, ctrl)
    if math.isnan(res.p_value):
        return None
    return {"p_value": res.p_value, "statistic": _finite(res.statistic), "measure": res.measure}


def _watermark(ev: Evidence, suspect: str) -> dict[str, Any] | None:
    per = ev.texts.get("watermark", {}).get(suspect, {})
    by_key: dict[tuple[str, float, int], list[str]] = defaultdict(list)
    for key, texts in per.items():
        e = ev.versions[ev.key_version[key]].content.get("expect", {})
        by_key[
            (
                e.get("key_env", "AUDITOR_WATERMARK_KEY"),
                float(e.get("gamma", 0.25)),
                int(e.get("context_width", 1)),
            )
        ].extend(texts)
    results = []
    for (env, gamma, width), texts in by_key.items():
        secret = os.environ.get(env)
        if not secret:
            continue
        res = stats.radioactivity_test(texts, secret.encode(), gamma=gamma, context_width=width)
        results.append(res)
    if not results:
        return None
    best = min(results, key=lambda r: r.p_value)
    return {
        "p_value": best.p_value,
        "green": best.green,
        "scored": best.scored,
        "gamma": best.gamma,
        "green_rate": best.green_rate,
    }


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def analyze_pair(
    ev: Evidence,
    sim: stats.SimilarityTensor | None,
    protected: str,
    suspect: str,
    controls: list[str],
    seed: int = 0,
) -> PairResult | None:
    """Every channel with data, combined; None when no channel could be tested."""
    controls = [c for c in controls if c not in (protected, suspect)]
    channels: dict[str, dict[str, Any]] = {}
    contributions: list[dict[str, Any]] = []
    text_res = None
    if sim is not None and suspect in sim.models and protected in sim.models:
        usable = [c for c in controls if c in sim.models]
        try:
            text_res = stats.provenance_test(
                sim, protected, suspect, usable, reps=sim.reps, seed=seed
            )
        except ValueError:
            text_res = None
        if text_res is not None:
            channels["free_text"] = {
                "p_value": text_res.p_value,
                "statistic": _finite(text_res.statistic),
                "effect": _finite(text_res.effect),
                "representations": text_res.channel_p_values,
                "suspect_score": _finite(text_res.suspect_score),
                "control_scores": {k: _finite(v) for k, v in text_res.control_scores.items()},
                "n_canaries": text_res.n_canaries,
            }
            for c in text_res.contributions:
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
    for name, fn in (("identity", _identity), ("choice", _choice), ("logprob", _logprob)):
        out = fn(ev, protected, suspect, controls)
        if out is not None:
            channels[name] = out
    wm = _watermark(ev, suspect)
    if wm is not None:
        channels["watermark"] = wm
    if not channels:
        return None
    ps = [float(c["p_value"]) for c in channels.values()]
    p = stats.cauchy_combine(ps) if len(ps) > 1 else ps[0]
    used = sorted(
        {
            k
            for per in ev.texts.values()
            for k in per.get(suspect, {})
            if k in per.get(protected, {})
        }
    )
    n_samples = sum(len(per.get(suspect, {}).get(k, [])) for per in ev.texts.values() for k in used)
    return PairResult(
        protected, suspect, controls, float(p), channels, text_res, contributions, used, n_samples
    )


def _verdict(pr: PairResult, ids: dict[str, int], params: dict[str, Any]) -> Verdict:
    t = pr.text
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
) -> list[Verdict]:
    """Analyses every (suspect, protected) pair, stores verdicts and monitors; caller commits.

    ``suspects`` defaults to the endpoints with role ``suspect``; naming a control scores
    it as a pseudo-suspect (left out of its own null pool).
    """
    now = now or utcnow()
    configured = {e.name for e in settings.endpoints if e.enabled}
    rows = [e for e in session.scalars(select(Endpoint)) if not configured or e.name in configured]
    by_role: dict[str, list[str]] = defaultdict(list)
    for e in rows:
        by_role[e.role].append(e.name)
    sus = list(suspects) if suspects is not None else by_role["suspect"]
    prot = list(protected) if protected is not None else by_role["protected"]
    controls = by_role["control"]
    ev = load_evidence(session, rows, since=since, until=until)
    ids = {e.name: e.id for e in rows}
    free = _merge_text(ev)
    sim = _similarities(free, settings)
    seed = settings.analysis.seed
    params = {
        "alpha": settings.analysis.alpha,
        "seed": seed,
        "since": since.isoformat() if since else None,
        "until": (until or now).isoformat(),
        "last_response_seq": ev.last_seq,
        "null": "model-level: suspect exchangeable with the controls",
        "text_representations": list(settings.analysis.representations),
        "embedding_model": settings.analysis.embedding_model,
        "combination": "cauchy",
        "fdr": "benjamini-hochberg",
    }
    results: list[PairResult] = []
    for p in prot:
        for s in sus:
            if s == p:
                continue
            pr = analyze_pair(ev, sim, p, s, controls, seed=seed)
            if pr is not None:
                results.append(pr)
    if not results:
        return []
    q, _ = stats.benjamini_hochberg([r.p_value for r in results], settings.analysis.alpha)
    verdicts = []
    alpha = settings.analysis.alpha
    for pr, qv in zip(results, q, strict=True):
        v = _verdict(pr, ids, params)
        v.q_value, v.created_at = float(qv), now
        if monitor_update:
            v.e_value = _update_monitor(session, ids[pr.suspect], ids[pr.protected], pr, now,
                                        settings.analysis.monitor_half_n)
        v.significant = bool(qv <= alpha)
        verdicts.append(v)
        verdicts += _segment_verdicts(session, settings, ev, pr, ids, params, now)
    session.add_all(verdicts)
    session.flush()
    return verdicts


def _similarities(
    free: dict[str, dict[str, list[str]]], settings: Settings
) -> stats.SimilarityTensor | None:
    """The similarity pass over every free-text answer, in the configured representations."""
    if not free:
        return None
    a = settings.analysis
    config = None
    if "embedding" in a.representations and a.embedding_model:
        from auditor.embeddings import load_encoder

        config = stats.TextConfig(encoder=load_encoder(a.embedding_model))
    return stats.canary_similarities(free, reps=a.representations, config=config)


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
    if row is None:
        row = MonitorState(suspect_id=sid, protected_id=pid,
                           state=monitor.new_state(half_n=half_n))
        session.add(row)
    state = monitor.update(row.state, pr.p_value, max(pr.n_samples, 1), now.isoformat())
    row.state, row.e_value, row.updated_at = state, monitor.e_value(state), now
    return row.e_value


def _segment_verdicts(
    session: Session,
    settings: Settings,
    ev: Evidence,
    pr: PairResult,
    ids: dict[str, int],
    params: dict[str, Any],
    now: datetime,
) -> list[Verdict]:
    """When the suspect's reported model changed, a verdict per run of one model."""
    out = []
    for label, first, last in _segments(ev, pr.suspect):
        sub = load_evidence(session, list(ev.endpoints.values()), only=(pr.suspect, first, last))
        free = _merge_text(sub)
        sim = _similarities(free, settings)
        seg = analyze_pair(
            sub, sim, pr.protected, pr.suspect, pr.controls, seed=settings.analysis.seed
        )
        if seg is None:
            continue
        seg.segment = f"model={label}"[:64]
        v = _verdict(seg, ids, {**params, "segment_seq": [first, last]})
        v.created_at = now
        v.significant = bool(seg.p_value <= settings.analysis.alpha)
        out.append(v)
    return out
