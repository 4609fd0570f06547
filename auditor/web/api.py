"""The read-only JSON API for document-management systems, with bearer tokens.

``GET /api/openapi.json`` describes it (OpenAPI 3.1). Tokens come from ``auditor users
token NAME`` or the admin page; only their hashes are stored. Canary ids appear only to
analyst tokens; canary text never.
"""

from __future__ import annotations

__all__ = ["OPENAPI", "routes"]

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from auditor.store.models import ApiToken, CustodyEntry, Endpoint, Report, Verdict
from auditor.web import accounts, cases


def _iso(t: Any) -> str | None:
    return t.isoformat() if t is not None else None


def _case(r: cases.CaseRow) -> dict[str, Any]:
    return {"suspect": r.suspect, "protected": r.protected, "verdict_id": r.verdict_id,
            "significant": r.significant, "p_value": r.p_value, "q_value": r.q_value,
            "effect": r.effect, "effect_low": r.effect_low, "effect_high": r.effect_high,
            "e_value": r.e_value, "alarm_level": r.alarm_level, "alert_at": _iso(r.alert_at),
            "last_probe": _iso(r.last_probe), "last_analysis": _iso(r.last_analysis)}


def _verdict(v: Verdict, names: dict[int, str], ids: bool) -> dict[str, Any]:
    contributions = [c for c in (v.contributions or []) if isinstance(c, dict)]
    contributions.sort(key=lambda c: -float(c.get("contribution") or 0.0))
    return {
        "id": v.id, "suspect": names.get(v.suspect_id), "protected": names.get(v.protected_id),
        "method": v.method, "p_value": v.p_value, "q_value": v.q_value, "e_value": v.e_value,
        "effect": v.effect, "effect_low": v.effect_low, "effect_high": v.effect_high,
        "n_canaries": v.n_canaries, "n_samples": v.n_samples, "significant": v.significant,
        "controls": [str(c) for c in v.controls or []], "segment": v.segment,
        "code_version": v.code_version, "created_at": _iso(v.created_at),
        "channels": {k: {f: x for f, x in ch.items() if isinstance(x, int | float)}
                     for k, ch in (v.channels or {}).items() if isinstance(ch, dict)},
        "strongest": [{"rank": i + 1, "contribution": c.get("contribution"), "z": c.get("z"),
                       **({"canary_id": str(c.get("canary_id"))} if ids else {})}
                      for i, c in enumerate(contributions[:10])],
    }


def _bundle(r: Report, names: dict[int, str]) -> dict[str, Any]:
    return {"manifest_sha256": r.manifest_sha256, "zip_sha256": r.bundle_sha256,
            "name": Path(r.bundle_path).name, "suspect": names.get(r.suspect_id),
            "protected": names.get(r.protected_id) if r.protected_id else None,
            "verdict_id": r.verdict_id, "signer_fingerprint": r.signer_fingerprint,
            "created_at": _iso(r.created_at),
            "download": f"/bundles/{r.manifest_sha256}/download"}


def _custody(e: CustodyEntry) -> dict[str, Any]:
    return {"seq": e.seq, "at": _iso(e.at), "actor": e.actor, "action": e.action,
            "manifest_sha256": e.manifest_sha256, "address": e.address, "detail": e.detail,
            "record_hash": e.record_hash, "prev_chain": e.prev_chain, "chain": e.chain}


def _endpoint(fn: Callable[[Request, Session, ApiToken], Any]) -> Callable[..., Any]:
    async def handler(request: Request) -> Response:
        portal = request.app.state.portal
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None

        def run(s: Session) -> Any:
            row = accounts.lookup_token(s, token)
            if row is None:
                raise HTTPException(401, "a valid bearer token is needed "
                                    "(Authorization: Bearer aud_...)")
            return fn(request, s, row)

        body = await run_in_threadpool(portal.db, run)
        return JSONResponse(body, headers={"cache-control": "no-store"})

    return handler


def _names(s: Session) -> dict[int, str]:
    return dict(s.execute(select(Endpoint.id, Endpoint.name)).tuples().all())


def list_cases(request: Request, s: Session, tok: ApiToken) -> Any:
    alpha = request.app.state.portal.settings.analysis.alpha
    return {"cases": [_case(r) for r in cases.case_rows(s, alpha)]}


def list_verdicts(request: Request, s: Session, tok: ApiToken) -> Any:
    names = _names(s)
    by_name = {n: i for i, n in names.items()}
    sus = by_name.get(request.path_params["suspect"])
    prot = by_name.get(request.path_params["protected"])
    if sus is None or prot is None:
        raise HTTPException(404, "no such case")
    rows = s.scalars(select(Verdict).where(Verdict.suspect_id == sus,
                                           Verdict.protected_id == prot)
                     .order_by(Verdict.created_at.desc()).limit(1000))
    ids = accounts.can(tok.role, "analyst")
    return {"verdicts": [_verdict(v, names, ids) for v in rows]}


def list_bundles(request: Request, s: Session, tok: ApiToken) -> Any:
    names = _names(s)
    return {"bundles": [_bundle(r, names) for r in
                        s.scalars(select(Report).order_by(Report.created_at.desc()))]}


def one_bundle(request: Request, s: Session, tok: ApiToken) -> Any:
    sha = request.path_params["sha"]
    rep = s.scalars(select(Report).where(Report.manifest_sha256 == sha)).first() \
        if len(sha) == 64 else None
    if rep is None:
        raise HTTPException(404, "no such bundle")
    out = _bundle(rep, _names(s))
    out["custody"] = [_custody(e) for e in s.scalars(
        select(CustodyEntry).where(CustodyEntry.report_id == rep.id)
        .order_by(CustodyEntry.seq))]
    return out


def list_custody(request: Request, s: Session, tok: ApiToken) -> Any:
    after = int(request.query_params.get("after", "0") or 0)
    rows = s.scalars(select(CustodyEntry).where(CustodyEntry.seq > after)
                     .order_by(CustodyEntry.seq).limit(1000))
    return {"entries": [_custody(e) for e in rows]}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


_NUM = {"type": ["number", "null"]}
_STR = {"type": ["string", "null"]}
_CASE = _obj(suspect={"type": "string"}, protected={"type": "string"},
             verdict_id={"type": "integer"}, significant={"type": "boolean"},
             p_value={"type": "number"}, q_value=_NUM, effect=_NUM, effect_low=_NUM,
             effect_high=_NUM, e_value=_NUM, alarm_level={"type": "number"},
             alert_at=_STR, last_probe=_STR, last_analysis={"type": "string"})
_BUNDLE = _obj(manifest_sha256={"type": "string"}, zip_sha256={"type": "string"},
               name={"type": "string"}, suspect=_STR, protected=_STR,
               verdict_id={"type": ["integer", "null"]}, signer_fingerprint=_STR,
               created_at={"type": "string"}, download={"type": "string"})
_CUSTODY = _obj(seq={"type": "integer"}, at={"type": "string"}, actor={"type": "string"},
                action={"type": "string", "enum": ["generate", "download", "verify",
                                                   "export"]},
                manifest_sha256=_STR, address=_STR, detail={"type": "object"},
                record_hash={"type": "string"}, prev_chain={"type": "string"},
                chain={"type": "string"})
_VERDICT = _obj(id={"type": "integer"}, suspect={"type": "string"},
                protected={"type": "string"}, method={"type": "string"},
                p_value={"type": "number"}, q_value=_NUM, e_value=_NUM, effect=_NUM,
                effect_low=_NUM, effect_high=_NUM, n_canaries={"type": "integer"},
                n_samples={"type": "integer"}, significant={"type": "boolean"},
                controls={"type": "array", "items": {"type": "string"}},
                created_at={"type": "string"}, channels={"type": "object"},
                strongest={"type": "array", "items": _obj(
                    rank={"type": "integer"}, contribution=_NUM, z=_NUM,
                    canary_id={"type": "string", "description": "analyst tokens only"})})


def _op(summary: str, schema: dict[str, Any], params: list[dict[str, Any]] | None = None
        ) -> dict[str, Any]:
    return {"get": {"summary": summary, "security": [{"bearer": []}],
                    "parameters": params or [],
                    "responses": {"200": {"description": "OK", "content": {
                        "application/json": {"schema": schema}}},
                        "401": {"description": "no valid bearer token"},
                        "404": {"description": "not found"}}}}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Canary auditor: legal portal API", "version": "1",
             "description": "Read-only: cases (from stored verdicts), verdicts, signed "
                            "report bundles and the hash-chained custody log. Canary text "
                            "never appears; canary ids only to analyst tokens."},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/api/v1/cases": _op("One row per (suspect, protected) pair, latest verdict",
                             _obj(cases={"type": "array", "items": _CASE})),
        "/api/v1/cases/{suspect}/{protected}/verdicts": _op(
            "A case's verdict history, newest first",
            _obj(verdicts={"type": "array", "items": _VERDICT}),
            [_path_param("suspect"), _path_param("protected")]),
        "/api/v1/bundles": _op("Signed report bundles, newest first",
                               _obj(bundles={"type": "array", "items": _BUNDLE})),
        "/api/v1/bundles/{manifest_sha256}": _op(
            "One bundle and its custody entries",
            {"allOf": [_BUNDLE, _obj(custody={"type": "array", "items": _CUSTODY})]},
            [_path_param("manifest_sha256")]),
        "/api/v1/custody": _op(
            "The custody log in chain order (1000 entries a page; ?after=SEQ for the next)",
            _obj(entries={"type": "array", "items": _CUSTODY}),
            [{"name": "after", "in": "query", "schema": {"type": "integer"}}]),
    },
}


async def openapi(request: Request) -> Response:
    return JSONResponse(OPENAPI)


def routes() -> list[Route]:
    return [
        Route("/openapi.json", openapi),
        Route("/v1/cases", _endpoint(list_cases)),
        Route("/v1/cases/{suspect}/{protected}/verdicts", _endpoint(list_verdicts)),
        Route("/v1/bundles", _endpoint(list_bundles)),
        Route("/v1/bundles/{sha}", _endpoint(one_bundle)),
        Route("/v1/custody", _endpoint(list_custody)),
    ]
