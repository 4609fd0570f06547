"""The evidentiary report: what the verdict used, gathered from the store, and rendered.

``build_context`` reads the newest verdict for a suspect (and protected model) within a
time window, every response that verdict used with its attempt, cycle and ledger
position, the registry commitment covering the canaries, and the verdict history for the
timeline. Nothing here writes: ``auditor.bundle`` turns the context into files, signs
and timestamps them.

Secrecy: a canary's prompt appears only when it is unsealed (``--unseal``) or declared
``secret: false`` in its content; otherwise it is named by id and salted commitment.
Responses (answers) appear. API keys are never read here. Raw response bodies and error
messages stay in the store (only their SHA-256 travels), since either may echo a prompt.
"""

from __future__ import annotations

__all__ = [
    "MEASURED_FPR",
    "ReportContext",
    "ReportRequest",
    "build_context",
    "render_html",
    "render_pdf",
    "select_verdict",
    "template_environment",
    "templates_dir",
]

import getpass
import math
import socket
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from auditor.byhand import verify_steps
from auditor.config import Settings
from auditor.errors import AuditorError, Problem
from auditor.figures import TimelinePoint, timeline_svg
from auditor.redact import MARK, quoted_spans, redact
from auditor.registry import UnsealedCanary, unseal
from auditor.stats.identity import POPULATION, lone_claimer_bound
from auditor.store.ledger import ledger_record
from auditor.store.models import (
    Attempt,
    CanaryVersion,
    Cycle,
    Endpoint,
    LedgerHead,
    MonitorState,
    RegistryCommit,
    Response,
    Verdict,
)
from auditor.version import software

ROOT = Path(__file__).resolve().parents[1]


# The method's false-positive rate as measured, and where: the report quotes it.
MEASURED_FPR = {"alpha": "0.05", "fpr": "0.04",
                "source": "BENCHMARKS.md, \u201cDetection power and calibration on real model "
                          "outputs\u201d (provenance benchmark, 50 to 400 canaries, 5 seeds)"}


def templates_dir() -> Path:
    return ROOT / "reports" / "templates"


@dataclass(frozen=True)
class ReportRequest:
    suspect: str
    protected: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    unseal: tuple[str, ...] = ()
    top: int = 5


@dataclass
class ReportContext:
    """Everything a report says. ``data`` is JSON-ready and feeds the templates."""

    data: dict[str, Any]
    evidence: list[dict[str, Any]]
    canaries: list[dict[str, Any]]
    verdict: dict[str, Any]
    timeline_svg: str
    verdict_id: int
    suspect_id: int
    protected_id: int
    extra: dict[str, Any] = field(default_factory=dict)


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(UTC).isoformat() if t is not None else None


def _endpoint(session: Session, name: str) -> Endpoint:
    ep = session.scalars(select(Endpoint).where(Endpoint.name == name)).first()
    if ep is None:
        known = ", ".join(session.scalars(select(Endpoint.name))) or "none"
        raise AuditorError(f"no endpoint named {name!r} in the store (known: {known})",
                           [Problem("unknown endpoint", fix="check the name in auditor.toml")])
    return ep


def select_verdict(session: Session, req: ReportRequest) -> tuple[Verdict, Endpoint, Endpoint]:
    """The newest verdict for the suspect (and protected model) created within the window."""
    suspect = _endpoint(session, req.suspect)
    q = select(Verdict).where(Verdict.suspect_id == suspect.id, Verdict.segment.is_(None))
    if req.protected:
        q = q.where(Verdict.protected_id == _endpoint(session, req.protected).id)
    if req.since:
        q = q.where(Verdict.created_at >= req.since)
    if req.until:
        q = q.where(Verdict.created_at <= req.until)
    verdict = session.scalars(q.order_by(Verdict.created_at.desc(), Verdict.id.desc())).first()
    if verdict is None:
        against = f" against {req.protected!r}" if req.protected else ""
        if suspect.role == "control":  # plain `analyze` scores only role = "suspect"
            problem = Problem(f"{req.suspect!r} is a control: `auditor analyze` scores it only "
                              "when asked", fix=f"run `auditor analyze --suspect {req.suspect}` "
                              "to score it as a pseudo-suspect, or name a suspect")
        elif suspect.role == "protected":
            problem = Problem(f"{req.suspect!r} is the protected model, not a suspect",
                              fix="name a suspect endpoint (role = \"suspect\")")
        else:
            problem = Problem("the report presents a stored analysis; there is none yet",
                              fix="run `auditor analyze` first (or widen --since/--until)")
        raise AuditorError(
            f"no verdict for suspect {req.suspect!r}{against} in the chosen window", [problem])
    protected = session.get(Endpoint, verdict.protected_id)
    assert protected is not None
    return verdict, suspect, protected


def verdict_record(v: Verdict, names: dict[int, str]) -> dict[str, Any]:
    """The verdict row as JSON, endpoint ids resolved to names."""
    return {
        "id": v.id, "suspect": names.get(v.suspect_id), "protected": names.get(v.protected_id),
        "method": v.method, "params": v.params or {}, "statistic": v.statistic,
        "p_value": v.p_value,
        "q_value": v.q_value, "e_value": v.e_value, "effect": v.effect,
        "effect_low": v.effect_low, "effect_high": v.effect_high, "n_canaries": v.n_canaries,
        "n_samples": v.n_samples, "canaries": v.canaries or [], "controls": v.controls or [],
        "contributions": v.contributions or [], "channels": v.channels or {}, "segment": v.segment,
        "significant": bool(v.significant), "code_version": v.code_version,
        "created_at": _iso(v.created_at),
    }


def _canary_id(item: Any) -> str:
    return str(item.get("canary_id") if isinstance(item, dict) else item)


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _trigrams(text: str) -> Counter[str]:
    t = " ".join(text.lower().split())
    return Counter(t[i:i + 3] for i in range(max(len(t) - 2, 1)))


def similarity(a: str, b: str) -> float:
    """Cosine of character-trigram counts: a plain, explainable measure for display."""
    ca, cb = _trigrams(a), _trigrams(b)
    dot = sum(n * cb.get(g, 0) for g, n in ca.items())
    na = math.sqrt(sum(n * n for n in ca.values()))
    nb = math.sqrt(sum(n * n for n in cb.values()))
    return dot / (na * nb) if na and nb else 0.0


def _operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _covering_commit(session: Session, version_ids: set[int]) -> tuple[RegistryCommit | None, bool]:
    """The earliest registry commit holding every version used (proves they were fixed by
    then); else the newest commit, flagged as not covering."""
    commits = list(session.scalars(select(RegistryCommit).order_by(RegistryCommit.id)))
    for rc in commits:
        if version_ids <= set(rc.leaves):
            return rc, True
    return (commits[-1] if commits else None), False


def _is_public(content: dict[str, Any]) -> bool:
    return content.get("secret", True) is False


def _prompt_messages(content: dict[str, Any]) -> list[dict[str, str]]:
    if content.get("messages"):
        return [{"role": m["role"], "content": m["content"]} for m in content["messages"]]
    return [{"role": "user", "content": str(content.get("prompt", ""))}]


def _timeline(session: Session, verdict: Verdict, req: ReportRequest) -> list[TimelinePoint]:
    q = select(Verdict).where(Verdict.suspect_id == verdict.suspect_id,
                              Verdict.protected_id == verdict.protected_id,
                              Verdict.segment.is_(None),
                              Verdict.created_at <= verdict.created_at)
    if req.since:
        q = q.where(Verdict.created_at >= req.since)
    pts = [TimelinePoint(v.created_at, v.p_value, v.e_value, v.effect, v.effect_low,
                         v.effect_high) for v in session.scalars(q.order_by(Verdict.created_at))]
    state = session.scalars(select(MonitorState).where(
        MonitorState.suspect_id == verdict.suspect_id,
        MonitorState.protected_id == verdict.protected_id)).first()
    history = (state.state or {}).get("history") if state is not None else None
    if isinstance(history, list):  # e-process history, when the monitor keeps one
        for h in history:
            t = _parse_time(h.get("at") or h.get("time") or h.get("t")) if isinstance(h, dict) \
                else None
            e = h.get("e_value") if isinstance(h, dict) else None
            if t is not None and isinstance(e, int | float) and t <= verdict.created_at:
                pts.append(TimelinePoint(t, None, float(e)))
    return pts


def _monitor_horizon(session: Session, verdict: Verdict, settings: Settings) -> float:
    """The answers by which the pair's monitor spends half its weight: its own, as its state
    records it, or the configured one for a monitor not started yet."""
    state = session.scalars(select(MonitorState.state).where(
        MonitorState.suspect_id == verdict.suspect_id,
        MonitorState.protected_id == verdict.protected_id)).first() or {}
    half_n = state.get("half_n") if isinstance(state, dict) else None
    return float(half_n) if isinstance(half_n, int | float) else \
        float(settings.analysis.monitor_half_n)


# ---------------------------------------------------------------- context, step by step


@dataclass
class _Parties:
    """The endpoints a verdict involves, and each one's role in it."""

    protected: Endpoint
    suspect: Endpoint
    controls: list[Endpoint]
    missing_controls: list[str]
    endpoints: dict[int, Endpoint]

    @property
    def involved(self) -> list[Endpoint]:
        return [self.protected, self.suspect, *self.controls]

    @property
    def roles(self) -> dict[int, str]:
        roles = {c.id: "control" for c in self.controls}
        roles.update({self.protected.id: "protected", self.suspect.id: "suspect"})
        return roles


@dataclass
class _Gathered:
    """The responses a verdict used, with the canary versions they answer."""

    evidence: list[dict[str, Any]]
    answers: dict[tuple[str, int], list[dict[str, Any]]]
    versions: dict[int, CanaryVersion]
    since: datetime | None
    until: datetime


def _parties(session: Session, verdict: Verdict, suspect: Endpoint,
             protected: Endpoint) -> _Parties:
    endpoints = {e.id: e for e in session.scalars(select(Endpoint))}
    by_name = {e.name: e for e in endpoints.values()}
    control_names = [str(c) for c in verdict.controls or []]
    return _Parties(protected, suspect, [by_name[c] for c in control_names if c in by_name],
                    [c for c in control_names if c not in by_name], endpoints)


def _gather_evidence(session: Session, vrec: dict[str, Any], params: dict[str, Any],
                     req: ReportRequest, verdict: Verdict, parties: _Parties) -> _Gathered:
    """Every response of the involved endpoints to the verdict's canaries in its window."""
    wanted = {_canary_id(c) for c in vrec["canaries"]}
    pinned = {str(c["canary_id"]): int(c["canary_version"]) for c in vrec["contributions"]
              if isinstance(c, dict) and c.get("canary_version") is not None}
    since = max([t for t in (req.since, _parse_time(params.get("since"))) if t], default=None)
    until = min([t for t in (req.until, _parse_time(params.get("until")), verdict.created_at)
                 if t])
    max_seq = params.get("last_response_seq")
    roles = parties.roles
    q = (select(Response, Attempt, Cycle, CanaryVersion)
         .join(Attempt, Response.attempt_id == Attempt.id)
         .join(Cycle, Attempt.cycle_id == Cycle.id)
         .join(CanaryVersion, Response.canary_version_id == CanaryVersion.id)
         .where(Response.endpoint_id.in_([e.id for e in parties.involved]),
                Response.collected_at <= until)
         .order_by(Response.seq))
    if since is not None:
        q = q.where(Response.collected_at >= since)
    if isinstance(max_seq, int):
        q = q.where(Response.seq <= max_seq)
    got = _Gathered([], {}, {}, since, until)
    for resp, att, cyc, cv in session.execute(q).tuples():
        if cv.canary_id not in wanted:
            continue
        if cv.canary_id in pinned and cv.version != pinned[cv.canary_id]:
            continue
        got.versions[cv.id] = cv
        ep = parties.endpoints[resp.endpoint_id]
        source = (cyc.summary or {}).get("source") if isinstance(cyc.summary, dict) else None
        row: dict[str, Any] = {
            "seq": resp.seq,
            "response_id": resp.id,
            "record": ledger_record(resp, ep, cv),
            "record_hash": resp.record_hash,
            "prev_chain": resp.prev_chain,
            "chain": resp.chain,
            "endpoint": {"name": ep.name, "role": roles.get(ep.id, ep.role),
                         "provider": ep.provider, "model": ep.model, "base_url": ep.base_url,
                         "config_hash": ep.config_hash},
            "canary": {"canary_id": cv.canary_id, "version": cv.version, "kind": cv.kind,
                       "commitment": cv.commitment},
            "attempt": {"id": att.id, "cycle_id": cyc.id, "cycle_kind": cyc.kind,
                        "cycle_source": source, "status": att.status, "tries": att.tries,
                        "http_status": att.http_status, "error_class": att.error_class,
                        "latency_ms": att.latency_ms, "request_id": att.request_id,
                        "claimed_by": att.claimed_by, "started_at": _iso(att.started_at),
                        "finished_at": _iso(att.finished_at)},
        }
        if resp.logprobs is not None:
            row["logprobs"] = resp.logprobs
        got.evidence.append(row)
        got.answers.setdefault((cv.canary_id, ep.id), []).append(row)
    return got


def _open_canaries(
    session: Session, req: ReportRequest, wanted: set[str], versions: dict[int, CanaryVersion]
) -> tuple[RegistryCommit | None, bool, list[dict[str, Any]], dict[str, CanaryVersion]]:
    """The covering registry commitment, every canary used (opened ones with their proof)
    and the opened versions by canary id."""
    rc, covering = _covering_commit(session, set(versions))
    unknown = [u for u in req.unseal if u not in wanted]
    if unknown:
        raise AuditorError(f"--unseal names canaries this verdict did not use: {unknown}",
                           [Problem("only canaries behind the verdict can be unsealed here",
                                    fix=f"choose among: {', '.join(sorted(wanted)[:10])} ...")])
    unsealed: dict[int, UnsealedCanary] = {}
    for cv in versions.values():
        if cv.canary_id in req.unseal or _is_public(cv.content):
            if rc is None or cv.id not in rc.leaves:
                raise AuditorError(
                    f"canary {cv.canary_id!r} version {cv.version} is in no registry commit, "
                    "so it cannot be unsealed with a proof",
                    [Problem("unsealing proves content against a committed root",
                             fix="run `auditor canaries commit`, then analyse and report again")])
            unsealed[cv.id] = unseal(session, rc, cv.id)
    canaries = []
    for cv in sorted(versions.values(), key=lambda v: (v.canary_id, v.version)):
        u = unsealed.get(cv.id)
        canaries.append({
            "canary_id": cv.canary_id, "version": cv.version, "kind": cv.kind,
            "commitment": cv.commitment,  # never an unsalted hash: it confirms guesses
            "public": _is_public(cv.content), "in_registry_root": bool(rc and cv.id in rc.leaves),
            "unsealed": u.as_dict() if u is not None else None,
        })
    shown = {cv.canary_id: cv for cv in versions.values() if cv.id in unsealed}
    return rc, covering, canaries, shown


def _strongest(vrec: dict[str, Any], req: ReportRequest, parties: _Parties,
               got: _Gathered, canaries: list[dict[str, Any]],
               shown: dict[str, CanaryVersion]) -> list[dict[str, Any]]:
    """The top canaries of the verdict: protected, suspect and nearest control side by side."""
    protected, suspect = parties.protected, parties.suspect
    strongest = []
    ranked = [c for c in vrec["contributions"] if isinstance(c, dict)] or \
        [{"canary_id": _canary_id(c)} for c in vrec["canaries"]]
    for rank, contrib in enumerate(ranked[: req.top], start=1):
        cid = str(contrib.get("canary_id"))

        def first(ep_id: int, cid: str = cid) -> dict[str, Any] | None:
            rows = got.answers.get((cid, ep_id))
            return rows[0] if rows else None

        def samples(ep_id: int, cid: str = cid) -> int:
            return len(got.answers.get((cid, ep_id), []))

        p_row, s_row = first(protected.id), first(suspect.id)
        p_text = p_row["record"]["text"] if p_row else ""
        best: tuple[float, Endpoint | None, dict[str, Any] | None] = (-1.0, None, None)
        for c in parties.controls:
            c_row = first(c.id)
            if c_row is None:
                continue
            if contrib.get("nearest_control") == c.name:
                best = (similarity(p_text, c_row["record"]["text"]), c, c_row)
                break
            sim = similarity(p_text, c_row["record"]["text"])
            if sim > best[0]:
                best = (sim, c, c_row)
        extras = {k: v for k, v in contrib.items()
                  if k not in {"canary_id", "canary_version", "contribution", "nearest_control"}
                  and isinstance(v, int | float | str | bool)}
        cv_shown = shown.get(cid)
        strongest.append({
            "rank": rank, "canary_id": cid, "version": contrib.get("canary_version"),
            "contribution": contrib.get("contribution"), "extras": extras,
            "prompt": _prompt_messages(cv_shown.content) if cv_shown is not None else None,
            "commitment": next((c["commitment"] for c in canaries if c["canary_id"] == cid), None),
            "protected": _answer(p_row, samples(protected.id)),
            "suspect": _answer(s_row, samples(suspect.id)),
            "control": _answer(best[2], samples(best[1].id) if best[1] else 0),
            "control_name": best[1].name if best[1] else None,
            "sim_suspect": round(similarity(p_text, s_row["record"]["text"]), 3)
            if s_row and p_row else None,
            "sim_control": round(best[0], 3) if best[1] and p_row else None,
        })
    return strongest


def _custody(session: Session, parties: _Parties,
             evidence: list[dict[str, Any]]) -> dict[str, Any]:
    """What was collected from each endpoint, and by which collection run and collector."""
    roles = parties.roles
    custody_eps = []
    for ep in parties.involved:
        rows = [r for r in evidence if r["endpoint"]["name"] == ep.name]
        times = [r["record"]["collected_at"] for r in rows]
        custody_eps.append({
            "name": ep.name, "role": roles[ep.id], "provider": ep.provider, "model": ep.model,
            "base_url": ep.base_url, "config_hash": ep.config_hash, "responses": len(rows),
            "first": min(times) if times else None, "last": max(times) if times else None,
            "reported_models": sorted({r["record"]["reported_model"] for r in rows
                                       if r["record"]["reported_model"]}),
            "fingerprints": sorted({r["record"]["system_fingerprint"] for r in rows
                                    if r["record"]["system_fingerprint"]}),
            "request_ids": sum(1 for r in rows if r["attempt"]["request_id"]),
        })
    cycles: dict[int, dict[str, Any]] = {}
    for r in evidence:
        a = r["attempt"]
        run = cycles.setdefault(a["cycle_id"], {
            "id": a["cycle_id"], "kind": a["cycle_kind"], "source": a["cycle_source"],
            "endpoint": r["endpoint"]["name"], "base_url": r["endpoint"]["base_url"],
            "responses": 0, "collectors": set(),
            "first": r["record"]["collected_at"], "last": r["record"]["collected_at"],
            "first_seq": r["seq"], "last_seq": r["seq"]})
        run["responses"] += 1
        run["last"] = max(run["last"], r["record"]["collected_at"])
        run["first"] = min(run["first"], r["record"]["collected_at"])
        run["last_seq"] = max(run["last_seq"], r["seq"])
        if a["claimed_by"]:
            run["collectors"].add(a["claimed_by"])
    cycle_rows = []
    for run in sorted(cycles.values(), key=lambda x: x["first_seq"]):
        stored_cycle = session.get(Cycle, run["id"])
        run["collectors"] = sorted(run["collectors"])
        run["registry_root"] = stored_cycle.registry_root if stored_cycle else None
        run["collected_by"] = _collected_by(run)
        cycle_rows.append(run)
    return {"endpoints": custody_eps, "cycles": cycle_rows}


def _collected_by(run: dict[str, Any]) -> str:
    """Who collected a run's responses, and from where, in words."""
    if run["source"]:
        return f"imported from file {run['source']}"
    who = f" by {', '.join(run['collectors'])}" if run["collectors"] else ""
    where = f" to {run['base_url']}" if run["base_url"] else " to the provider's default URL"
    return f"auditor {run['kind']} run{who}, requests sent{where}"


def _scope(parties: _Parties, evidence: list[dict[str, Any]]) -> dict[str, int]:
    """How many responses of each role the evidence file holds."""
    count = Counter(r["endpoint"]["role"] for r in evidence)
    return {"suspect": count["suspect"], "protected": count["protected"],
            "controls": count["control"], "n_controls": len(parties.controls)}


def _reading(vrec: dict[str, Any], alpha: float) -> dict[str, Any]:
    """What the verdict rests on, and where the other measures agree or disagree with it."""
    alarm = 1 / alpha
    low, high, e = vrec["effect_low"], vrec["effect_high"], vrec["e_value"]
    has_interval = low is not None and high is not None
    interval_has_zero = has_interval and low <= 0 <= high
    return {
        "alarm": alarm,
        "interval_has_zero": interval_has_zero,
        "interval_disagrees": has_interval and interval_has_zero == bool(vrec["significant"]),
        "e_below_alarm": e is not None and e < alarm,
        "e_disagrees": e is not None and (e >= alarm) != bool(vrec["significant"]),
    }


_CHANNEL_LABELS = {
    "statistic": "test statistic", "effect": "effect size", "suspect_score":
    "suspect's score", "n_canaries": "canaries", "suspect_closeness": "suspect's closeness",
    "measure": "measure", "green": "green tokens", "scored": "tokens scored",
    "gamma": "green-list share", "green_rate": "green-token rate", "odds_ratio": "odds ratio",
}
# shown in words by _identity_figures, or as the p-value column
_NOT_FIGURES = {"p_value", "response_level_fisher_p", "suspect_claims", "suspect_total",
                "control_claims", "control_total", "rank_p_value"}


def _channel_rows(channels: dict[str, Any]) -> list[dict[str, Any]]:
    """The evidence table: each channel's p-value and its other figures, in words."""
    rows = []
    for name, ch in sorted(channels.items()):
        if not isinstance(ch, dict):
            continue
        figures = [f"{_CHANNEL_LABELS.get(k, k.replace('_', ' '))} {fmt_num(x)}"
                   for k, x in sorted(ch.items())
                   if k not in _NOT_FIGURES and isinstance(x, int | float | str)]
        row = {"name": name.replace("_", " "), "key": name, "p_value": ch.get("p_value"),
               "figures": figures, "note": None}
        if name == "identity":
            row["figures"] = _identity_figures(ch) + figures
            row["note"] = _identity_floor(ch)
        if name == "watermark":
            row["figures"], row["note"] = _watermark_words(ch)
        rows.append(row)
    return rows


def _watermark_words(ch: dict[str, Any]) -> tuple[list[str], str | None]:
    """The watermark channel in plain words: green rate against gamma, the exact binomial
    p, how many (window, token) tuples were scored and which were set aside."""
    n, g, gamma = ch.get("scored"), ch.get("green"), ch.get("gamma")
    if not isinstance(n, int) or not isinstance(g, int) or not isinstance(gamma, int | float):
        return [], None
    rate = g / n if n else float("nan")
    figures = [f"{g} of {n} scored tokens green: a rate of {fmt_num(rate)} against "
               f"{fmt_num(gamma)} expected of an independent model",
               f"exact binomial p = {fmt_p(ch.get('p_value', 1.0))}"]
    keys = ch.get("keys_tested", 1)
    h = ch.get("h", 1)
    note = (
        "The protected model's serving stack marks its answers with a secret key: at each "
        f"position, depending on the previous {h} token(s), a key-dependent share of "
        f"{fmt_num(gamma)} of its vocabulary is green and slightly favoured. A model "
        "trained on those answers writes green tokens "
        f"more often than {fmt_num(gamma)}; a model that never learnt from them cannot, "
        "because it does not know the key. The suspect's answers were split into the "
        "protected model's own tokens, and each distinct pair of a token and the "
        f"{h} token(s) before it was counted once ({ch.get('duplicates', 0)} repeats set "
        "aside), so that for an independent model the green count is exactly binomial; "
        f"the p-value is the chance of {g} or more green out of {n} at a rate of "
        f"{fmt_num(gamma)}.")
    if ch.get("filter"):
        note += (f" Only pairs after token windows that the protected model itself wrote on "
                 f"the same canaries were scored ({ch.get('filtered_out', 0)} others set "
                 "aside), which sharpens the test without changing its null.")
    if isinstance(keys, int) and keys > 1:
        note += (f" {keys} keys were tested; the p-value is multiplied by {keys} "
                 "(Bonferroni).")
    if ch.get("key_id"):
        note += (f" Key id {ch['key_id']} (its public fingerprint; the key itself is in "
                 "no part of this report).")
    return figures, note


def _identity_figures(ch: dict[str, Any]) -> list[str]:
    out = []
    if isinstance(ch.get("suspect_total"), int):
        out.append(f"the suspect claimed it in {ch.get('suspect_claims', 0)} of "
                   f"{ch['suspect_total']} answers")
    if isinstance(ch.get("control_total"), int):
        out.append(f"the controls in {ch.get('control_claims', 0)} of "
                   f"{ch['control_total']}")
    if isinstance(ch.get("response_level_fisher_p"), int | float):
        out.append(f"answer-level Fisher exact test p = {fmt_p(ch['response_level_fisher_p'])}"
                   " (descriptive only: it treats answers as independent)")
    return out


def _identity_floor(ch: dict[str, Any]) -> str | None:
    rates = ch.get("control_rates")
    if not isinstance(rates, list) or not rates:
        return None
    k = len(rates)
    rank = ch.get("rank_p_value")
    if not isinstance(rank, int | float):  # a verdict from before the population p-value
        return (f"This p-value ranks the suspect's claim rate among the {k + 1} models "
                f"(suspect and {k} controls): if the suspect were one more independent model, "
                f"it would rank first by chance with probability 1/({k}+1). So the smallest "
                f"p-value this channel can give with {k} controls is 1/({k}+1) = "
                f"{fmt_p(1 / (k + 1))}, however clear the contrast.")
    floor = lone_claimer_bound(k, 0)
    return (f"Ranked among the {k + 1} models (suspect and {k} controls), the suspect's claim "
            f"rate gives p = {fmt_p(float(rank))}: one more independent model would rank first "
            f"by chance with probability 1/({k}+1). Taking the models as a sample from a "
            f"population of at least {POPULATION} independent models, whatever their claim "
            "rates, it is also unlikely that so few of them claim at all: the p-value shown "
            f"uses that too. Its smallest value with {k} controls, when the suspect alone "
            f"claims, is {fmt_p(floor)}, however clear the contrast.")


def build_context(
    session: Session, settings: Settings, req: ReportRequest, now: datetime | None = None
) -> ReportContext:
    """Gathers the verdict, its evidence and everything the report says about it."""
    now = now or datetime.now(UTC)
    verdict, suspect, protected = select_verdict(session, req)
    parties = _parties(session, verdict, suspect, protected)
    vrec = verdict_record(verdict, {i: e.name for i, e in parties.endpoints.items()})
    params = verdict.params or {}
    got = _gather_evidence(session, vrec, params, req, verdict, parties)
    evidence = got.evidence
    wanted = {_canary_id(c) for c in vrec["canaries"]}
    rc, covering, canaries, shown = _open_canaries(session, req, wanted, got.versions)
    redacted = _redact_quotes(evidence, [m["content"] for cv in got.versions.values()
                                         if shown.get(cv.canary_id) is not cv
                                         for m in _prompt_messages(cv.content)])
    head = session.get(LedgerHead, 1)
    first_collected = min((r["record"]["collected_at"] for r in evidence), default=None)
    first_dt = _parse_time(first_collected)
    timeline = _timeline(session, verdict, req)
    alpha = float(params.get("alpha", settings.analysis.alpha))
    data: dict[str, Any] = {
        "title": f"Provenance test of model endpoint “{suspect.name}”",
        "created_at": _iso(now),
        "operator": _operator(),
        "request": {"suspect": req.suspect, "protected": req.protected,
                    "since": _iso(req.since), "until": _iso(req.until),
                    "unseal": list(req.unseal)},
        "window": {"since": _iso(got.since), "until": _iso(got.until)},
        "verdict": vrec,
        "alpha": alpha,
        "reading": _reading(vrec, alpha),
        "channel_rows": _channel_rows(vrec["channels"]),
        "measured_fpr": MEASURED_FPR,
        "seeds": {k: v for k, v in params.items() if "seed" in k.lower()},
        "suspect": _ep_dict(suspect), "protected": _ep_dict(protected),
        "controls": [_ep_dict(c) for c in parties.controls],
        "missing_controls": parties.missing_controls,
        "n_evidence": len(evidence),
        "scope": _scope(parties, evidence),
        "n_canaries_evidence": len({r["canary"]["canary_id"] for r in evidence}),
        "first_collected": first_collected,
        "last_collected": max((r["record"]["collected_at"] for r in evidence), default=None),
        "registry": {
            "root": rc.root if rc else None, "commit_id": rc.id if rc else None,
            "committed_at": _iso(rc.created_at) if rc else None,
            "size": len(rc.leaves) if rc else 0, "covers_all": covering,
            "before_collection": bool(rc is not None and first_dt is not None
                                      and rc.created_at <= first_dt),
            **_attested(rc),
        },
        "ledger_head": {"seq": head.seq if head else 0, "chain": head.chain if head else None},
        "software": dict(software()),
        "config_hash": settings.config_hash(),
        "strongest": _strongest(vrec, req, parties, got, canaries, shown),
        "custody": _custody(session, parties, evidence),
        "canary_summary": {"total": len(canaries),
                           "unsealed": sum(1 for c in canaries if c["unsealed"]),
                           "public": sum(1 for c in canaries if c["public"])},
        "timeline_points": len(timeline),
        "monitor_half_n": _monitor_horizon(session, verdict, settings),
        "redactions": {"answers": redacted, "mark": MARK},
    }
    return ReportContext(
        data=data, evidence=evidence, canaries=canaries, verdict=vrec,
        timeline_svg=timeline_svg(timeline, alpha), verdict_id=verdict.id,
        suspect_id=suspect.id, protected_id=protected.id,
        extra={"registry_attestation": rc.attestation if rc is not None else None})


def _attested(rc: RegistryCommit | None) -> dict[str, Any]:
    """What the registry commit's published statement adds: the key it was signed with and
    the trusted time of its RFC 3161 timestamp (None when absent)."""
    att = (rc.attestation if rc is not None else None) or {}
    return {"signer_fingerprint": att.get("statement", {}).get("signer_fingerprint"),
            "timestamped_at": att.get("timestamped_at"), "tsa_subject": att.get("tsa_subject")}


def _redact_quotes(evidence: list[dict[str, Any]], sealed_prompts: list[str]) -> int:
    """Redacts, in place, the spans of answers that quote a sealed prompt; returns how many
    answers were redacted. The row keeps ``record_hash`` (of the full record, so the chain
    still verifies), is marked with ``redaction``, and loses its token log-probabilities."""
    count = 0
    for row in evidence:
        text = row["record"].get("text")
        spans = quoted_spans(text, sealed_prompts) if text else []
        if not spans:
            continue
        row["record"] = {**row["record"], "text": redact(text, spans)}
        row["redaction"] = {
            "spans": len(spans), "mark": MARK,
            "why": "the answer quotes a sealed canary prompt; record_hash is the hash of the "
                   "full record, which the auditor holds and can produce on order"}
        row.pop("logprobs", None)
        count += 1
    return count


def _ep_dict(ep: Endpoint) -> dict[str, Any]:
    return {"name": ep.name, "role": ep.role, "provider": ep.provider, "model": ep.model,
            "base_url": ep.base_url}


def _answer(row: dict[str, Any] | None, n: int) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"text": row["record"]["text"], "seq": row["seq"], "record_hash": row["record_hash"],
            "collected_at": row["record"]["collected_at"], "samples": n,
            "request_id": row["attempt"]["request_id"], "endpoint": row["endpoint"]["name"]}


# ---------------------------------------------------------------- rendering

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def fmt_p(p: float | None) -> str:
    """A p-value a lawyer can read: 0.031, or 3.2 × 10⁻⁶."""
    if p is None or (isinstance(p, float) and not math.isfinite(p)):
        return "n/a"
    if p >= 0.001:
        return f"{p:.3f}"
    mant, exp = f"{p:.1e}".split("e")
    return f"{mant} × 10{str(int(exp)).translate(_SUPERSCRIPT)}"


def fmt_odds(p: float | None) -> str:
    if p is None or p <= 0 or p >= 0.5:
        return ""
    n = 1 / p
    if n >= 1e12:
        return "less than 1 in a trillion"
    return f"about 1 in {_round_sig(n):,}"


def _round_sig(x: float, sig: int = 2) -> int:
    if x < 100:
        return int(round(x))
    digits = int(math.floor(math.log10(x))) - sig + 1
    return int(round(x / 10 ** digits) * 10 ** digits)


def fmt_num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        if not math.isfinite(x):
            return "n/a"
        if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
            return f"{x:.{digits - 1}e}"
        return f"{x:.{digits}f}".rstrip("0").rstrip(".") if "." in f"{x:.{digits}f}" else str(x)
    return str(x)


def fmt_time(value: str | None) -> str:
    t = _parse_time(value)
    return t.strftime("%Y-%m-%d %H:%M:%S UTC") if t else "n/a"


def fmt_short(value: str | None) -> str:
    t = _parse_time(value)
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else "n/a"


def fmt_date(value: str | None) -> str:
    t = _parse_time(value)
    return t.strftime("%B %-d, %Y") if t else "n/a"


def chunk(value: str | None, size: int = 16) -> str:
    """A long hash in groups, so it wraps between groups and stays readable."""
    if not value:
        return "n/a"
    return " ".join(value[i:i + size] for i in range(0, len(value), size))


def hardwrap(text: str, width: int = 96) -> list[str]:
    """Lines of at most ``width`` characters whose concatenation is ``text`` exactly; a line
    ends after a comma or colon where one is near the limit, else at the limit."""
    lines = []
    while len(text) > width:
        cut = max(text.rfind(",", width - 24, width), text.rfind(":", width - 24, width))
        cut = cut + 1 if cut > 0 else width
        lines.append(text[:cut])
        text = text[cut:]
    return [*lines, text]


def template_environment() -> Environment:
    """Jinja2 over ``reports/templates`` with the report's number and time filters."""
    env = Environment(loader=FileSystemLoader(str(templates_dir())),
                      autoescape=select_autoescape(["html", "html.j2", "xml"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(p=fmt_p, odds=fmt_odds, num=fmt_num, time=fmt_time, short=fmt_short,
                       date=fmt_date, chunk=chunk, hardwrap=hardwrap)
    env.globals["verify_steps"] = verify_steps
    return env


def render_html(ctx: ReportContext, bundle: dict[str, Any]) -> str:
    """The report as one self-contained HTML document (figures inline as data URIs)."""
    import base64

    figure = "data:image/svg+xml;base64," + base64.b64encode(
        ctx.timeline_svg.encode("utf-8")).decode("ascii")
    return template_environment().get_template("report.html.j2").render(
        r=ctx.data, v=ctx.verdict, canaries=ctx.canaries, bundle=bundle, figure=figure)


def render_pdf(html: str) -> bytes:
    """Prints the HTML to PDF with WeasyPrint (paged media CSS in the template)."""
    from weasyprint import HTML

    pdf = HTML(string=html, base_url=str(templates_dir())).write_pdf()
    assert pdf is not None
    return bytes(pdf)
