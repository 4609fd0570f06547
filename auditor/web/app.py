"""The portal's pages: sign-in, cases, a case, report jobs, bundles, custody log, admin.

Pages are rendered on the server and work without JavaScript (there is none). Every POST
carries the session's CSRF token; sign-in carries a pre-session token in a cookie.
"""

from __future__ import annotations

__all__ = ["create_app"]

import hashlib
import re
import secrets
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from auditor.config import Settings
from auditor.errors import AuditorError
from auditor.figures import TimelinePoint, timeline_svg
from auditor.report import fmt_num, fmt_p
from auditor.store import Store, custody, open_store
from auditor.store.models import (
    ApiToken,
    CustodyEntry,
    Report,
    ReportJob,
    Verdict,
    WebSession,
)
from auditor.web import accounts, cases
from auditor.web.accounts import SessionInfo
from auditor.web.jobs import JobRunner
from auditor.web.security import SecurityHeaders, cookie_secure, same_origin, tokens_equal

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "auditor_session"
SIGNIN_COOKIE = "auditor_signin"
SHA = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
T = TypeVar("T")


class SignInNeeded(Exception):
    pass


def _fmt_time(t: Any) -> str:
    return t.strftime("%Y-%m-%d %H:%M UTC") if t is not None else "—"


def _templates() -> Jinja2Templates:
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")),
                      autoescape=select_autoescape(default=True), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters.update(p=fmt_p, num=fmt_num, when=_fmt_time,
                       short=lambda h: (h or "")[:16], spark=cases.sparkline)
    return Jinja2Templates(env=env)


class Portal:
    """The app's state and the helpers its handlers share."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store
        self.web = settings.web
        self.templates = _templates()
        self.jobs = JobRunner(store, settings)

    # ------------------------------------------------------------ plumbing

    def db(self, fn: Callable[[Session], T]) -> T:
        with self.store.session() as s:
            return fn(s)

    async def adb(self, fn: Callable[[Session], T]) -> T:
        return await run_in_threadpool(self.db, fn)

    def who(self, request: Request, s: Session) -> SessionInfo | None:
        return accounts.lookup_session(s, request.cookies.get(SESSION_COOKIE), self.web)

    def need(self, request: Request, s: Session, role: str = "legal") -> SessionInfo:
        info = self.who(request, s)
        if info is None:
            raise SignInNeeded()
        if not accounts.can(info.role, role):
            raise HTTPException(403, f"this page needs the {role} role")
        return info

    @staticmethod
    def address(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def page(self, request: Request, name: str, user: SessionInfo | None,
             status: int = 200, **ctx: Any) -> Response:
        ctx.update(user=user, csrf=user.csrf if user else None,
                   analyst=bool(user and accounts.can(user.role, "analyst")),
                   admin=bool(user and accounts.can(user.role, "admin")),
                   oidc=self.web.oidc)
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)

    async def form(self, request: Request) -> dict[str, str]:
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}

    async def posted(self, request: Request, role: str = "legal"
                     ) -> tuple[SessionInfo, dict[str, str]]:
        """The signed-in user of a POST whose CSRF token and origin check out."""
        form = await self.form(request)
        info = await self.adb(lambda s: self.need(request, s, role))
        if not same_origin(request) or not tokens_equal(form.get("csrf"), info.csrf):
            raise HTTPException(403, "the form's security token is missing or stale; "
                                "reload the page and try again")
        return info, form


def _next(value: str | None) -> str:
    """Only our own paths after sign-in (no open redirect)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/cases"


# ---------------------------------------------------------------- sign-in and out


async def signin_form(request: Request) -> Response:
    portal: Portal = request.app.state.portal
    token = secrets.token_urlsafe(24)
    resp = portal.page(request, "signin.html", None, signin_csrf=token,
                       next=_next(request.query_params.get("next")), error=None)
    resp.set_cookie(SIGNIN_COOKIE, token, httponly=True, samesite="strict",
                    secure=cookie_secure(request, portal.web), path="/signin")
    return resp


async def signin(request: Request) -> Response:
    portal: Portal = request.app.state.portal
    form = await portal.form(request)
    pre = request.cookies.get(SIGNIN_COOKIE)
    if not same_origin(request) or not tokens_equal(form.get("csrf"), pre):
        raise HTTPException(403, "the sign-in form's security token is missing or stale; "
                            "reload the sign-in page")
    address = portal.address(request)

    def attempt(s: Session) -> tuple[str, SessionInfo] | accounts.SignInRefused:
        try:
            user = accounts.authenticate(s, portal.web, form.get("username", ""),
                                         form.get("password", ""), address)
        except accounts.SignInRefused as exc:
            return exc  # returned, not raised: the failed attempt must be committed
        return accounts.new_session(s, user, address)

    outcome = await portal.adb(attempt)
    if isinstance(outcome, accounts.SignInRefused):
        exc = outcome
        new_pre = secrets.token_urlsafe(24)
        resp = portal.page(request, "signin.html", None, status=429 if exc.throttled else 401,
                           signin_csrf=new_pre, next=_next(form.get("next")), error=str(exc))
        resp.set_cookie(SIGNIN_COOKIE, new_pre, httponly=True, samesite="strict",
                        secure=cookie_secure(request, portal.web), path="/signin")
        return resp
    token, _ = outcome
    resp = RedirectResponse(_next(form.get("next")), status_code=303)
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="lax",
                    secure=cookie_secure(request, portal.web), path="/")
    resp.delete_cookie(SIGNIN_COOKIE, path="/signin")
    return resp


async def signout(request: Request) -> Response:
    portal: Portal = request.app.state.portal
    info, _ = await portal.posted(request)
    await portal.adb(lambda s: accounts.revoke_session(s, info.session_id))
    resp = RedirectResponse("/signin", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


# ---------------------------------------------------------------- cases


def home(request: Request) -> Response:
    return RedirectResponse("/cases", status_code=303)


def case_list(request: Request) -> Response:
    portal: Portal = request.app.state.portal
    q = request.query_params
    sort = q.get("sort", "analysis")
    sort = sort if sort in cases.SORTS else "analysis"
    desc = q.get("dir", "desc") != "asc"

    def load(s: Session) -> tuple[SessionInfo, list[cases.CaseRow]]:
        info = portal.need(request, s)
        return info, cases.case_rows(s, portal.settings.analysis.alpha,
                                     query=q.get("q", "")[:100], sort=sort, descending=desc,
                                     only_alerts=q.get("alerts") == "1",
                                     only_significant=q.get("significant") == "1")

    info, rows = portal.db(load)
    return portal.page(request, "cases.html", info, rows=rows, sort=sort, desc=desc,
                       q=q.get("q", "")[:100], alerts=q.get("alerts") == "1",
                       significant=q.get("significant") == "1",
                       alpha=portal.settings.analysis.alpha)


def _pair(request: Request) -> tuple[str, str]:
    suspect = request.path_params["suspect"]
    protected = request.path_params["protected"]
    if not NAME.match(suspect) or not NAME.match(protected):
        raise HTTPException(404, "no such case")
    return suspect, protected


def case_page(request: Request) -> Response:
    portal: Portal = request.app.state.portal
    suspect, protected = _pair(request)

    def load(s: Session) -> tuple[SessionInfo, dict[str, Any] | None]:
        info = portal.need(request, s)
        return info, cases.case_detail(s, suspect, protected,
                                       show_canary_ids=accounts.can(info.role, "analyst"))

    info, case = portal.db(load)
    if case is None:
        raise HTTPException(404, "no such case")
    return portal.page(request, "case.html", info, c=case,
                       alpha=portal.settings.analysis.alpha)


def timeline(request: Request) -> Response:
    portal: Portal = request.app.state.portal
    suspect, protected = _pair(request)

    def load(s: Session) -> list[TimelinePoint] | None:
        portal.need(request, s)
        case = cases.case_detail(s, suspect, protected, show_canary_ids=False)
        if case is None:
            return None
        vs: list[Verdict] = case["verdicts"]
        return [TimelinePoint(v.created_at, v.p_value, v.e_value, v.effect, v.effect_low,
                              v.effect_high) for v in reversed(vs)]

    points = portal.db(load)
    if points is None:
        raise HTTPException(404, "no such case")
    return Response(timeline_svg(points, portal.settings.analysis.alpha),
                    media_type="image/svg+xml")


async def generate(request: Request) -> Response:
    portal: Portal = request.app.state.portal
    info, _ = await portal.posted(request)
    suspect, protected = _pair(request)
    exists = await portal.adb(lambda s: cases.case_detail(s, suspect, protected, False)
                              is not None)
    if not exists:
        raise HTTPException(404, "no such case")
    job_id = portal.jobs.submit(suspect, protected, info.username, portal.address(request))
    return RedirectResponse(f"/jobs/{job_id}", status_code=303)


def job_page(request: Request) -> Response:
    portal: Portal = request.app.state.portal
    job_id = request.path_params["job_id"]

    def load(s: Session) -> tuple[SessionInfo, ReportJob | None, Report | None]:
        info = portal.need(request, s)
        job = s.get(ReportJob, job_id)
        rep = s.get(Report, job.report_id) if job and job.report_id else None
        return info, job, rep

    info, job, rep = portal.db(load)
    if job is None:
        raise HTTPException(404, "no such report job")
    return portal.page(request, "job.html", info, job=job, report=rep)


# ---------------------------------------------------------------- bundles


def _report(s: Session, sha: str) -> Report:
    if not SHA.match(sha):
        raise HTTPException(404, "no such bundle")
    rep = s.scalars(select(Report).where(Report.manifest_sha256 == sha)).first()
    if rep is None:
        raise HTTPException(404, "no such bundle")
    return rep


def _zip_bytes(rep: Report) -> bytes:
    """The stored zip, only if it still hashes as recorded (never another file)."""
    path = Path(rep.bundle_path).with_suffix(".zip")
    try:
        data = path.read_bytes()
    except OSError:
        raise HTTPException(410, "this bundle's zip is no longer on the server") from None
    if hashlib.sha256(data).hexdigest() != rep.bundle_sha256:
        raise HTTPException(409, "this bundle's zip on the server does not match the hash "
                            "recorded when it was written; it is withheld (ask the operator "
                            "to run `auditor verify` on it)")
    return data


def download(request: Request) -> Response:
    portal: Portal = request.app.state.portal
    sha = request.path_params["sha"]

    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(403, "evidence is downloaded from the portal's own pages; open "
                            "the case in the portal and download it there")

    def load(s: Session) -> tuple[bytes, str]:
        info = portal.need(request, s)
        rep = _report(s, sha)
        data = _zip_bytes(rep)
        custody.append(s, actor=info.username, action="download",
                       address=portal.address(request), report_id=rep.id,
                       manifest_sha256=rep.manifest_sha256,
                       detail={"bundle": Path(rep.bundle_path).name,
                               "zip_sha256": rep.bundle_sha256})
        return data, Path(rep.bundle_path).name + ".zip"

    data, name = portal.db(load)
    return Response(data, media_type="application/zip", headers={
        "content-disposition": f'attachment; filename="{name}"'})


async def verify(request: Request) -> Response:
    portal: Portal = request.app.state.portal
    info, _ = await portal.posted(request)
    sha = request.path_params["sha"]
    from auditor.bundle import verify_bundle  # the same check as `auditor verify`
    from auditor.timestamp import read_roots

    st = portal.settings

    def check(s: Session) -> tuple[Report, str, bool]:
        rep = _report(s, sha)
        zip_path = Path(rep.bundle_path).with_suffix(".zip")
        try:
            roots = read_roots(st.path(st.timestamp.ca_file) if st.timestamp.ca_file else None)
            summary, ok = verify_bundle(zip_path, roots).summary(), True
        except AuditorError as exc:
            summary, ok = str(exc), False
        custody.append(s, actor=info.username, action="verify", address=portal.address(request),
                       report_id=rep.id, manifest_sha256=rep.manifest_sha256,
                       detail={"ok": ok})
        return rep, summary, ok

    rep, summary, ok = await portal.adb(check)
    return portal.page(request, "verify.html", info, report=rep, summary=summary, ok=ok,
                       bundle_name=Path(rep.bundle_path).name)


# ---------------------------------------------------------------- custody log


def custody_page(request: Request) -> Response:
    portal: Portal = request.app.state.portal

    def load(s: Session) -> tuple[SessionInfo, list[CustodyEntry], custody.CustodyCheck]:
        info = portal.need(request, s)
        rows = list(s.scalars(select(CustodyEntry).order_by(CustodyEntry.seq.desc())
                              .limit(500)))
        return info, rows, custody.verify(s)

    info, rows, check = portal.db(load)
    return portal.page(request, "custody.html", info, rows=rows, check=check)


def custody_export(request: Request) -> Response:
    portal: Portal = request.app.state.portal
    from auditor.canonical import canonical_json

    def load(s: Session) -> bytes:
        info = portal.need(request, s)
        custody.append(s, actor=info.username, action="export",
                       address=portal.address(request), detail={"format": "jsonl"})
        lines = []
        for row in s.scalars(select(CustodyEntry).order_by(CustodyEntry.seq)):
            lines.append(canonical_json({**custody.custody_record(row),
                                         "record_hash": row.record_hash,
                                         "prev_chain": row.prev_chain, "chain": row.chain}))
        return b"\n".join(lines) + b"\n"

    data = portal.db(load)
    return Response(data, media_type="application/x-ndjson", headers={
        "content-disposition": 'attachment; filename="custody-log.jsonl"'})


# ---------------------------------------------------------------- admin


def admin_page(request: Request, issued: str | None = None, issued_name: str | None = None,
               message: str | None = None) -> Response:
    portal: Portal = request.app.state.portal

    def load(s: Session) -> tuple[SessionInfo, dict[str, Any]]:
        info = portal.need(request, s, "admin")
        users = accounts.list_users(s)
        names = {u.id: u.username for u in users}
        sessions = [(w, names.get(w.user_id, "?")) for w in s.scalars(
            select(WebSession).where(WebSession.revoked_at.is_(None))
            .order_by(WebSession.last_seen_at.desc()).limit(100))]
        tokens = list(s.scalars(select(ApiToken).order_by(ApiToken.name)))
        return info, {"users": users, "sessions": sessions, "tokens": tokens}

    info, ctx = portal.db(load)
    return portal.page(request, "admin.html", info, issued=issued, issued_name=issued_name,
                       message=message, roles=accounts.ROLES, **ctx)


async def admin_action(request: Request) -> Response:
    portal: Portal = request.app.state.portal
    info, form = await portal.posted(request, "admin")
    action = request.path_params["action"]
    issued: tuple[str, str] | None = None

    def act(s: Session) -> str:
        nonlocal issued
        name = form.get("name", "").strip()
        if action == "add-user":
            password = form.get("password") or None
            accounts.add_user(s, name, form.get("role", "legal"), password)
            return f"added {name}"
        if action == "disable-user":
            if name == info.username:
                raise AuditorError("you cannot disable your own account here")
            accounts.set_disabled(s, name, form.get("enable") != "1")
            return f"{name} {'enabled' if form.get('enable') == '1' else 'disabled'}"
        if action == "set-role":
            accounts.set_role(s, name, form.get("role", ""))
            return f"{name} is now {form.get('role')}"
        if action == "issue-token":
            secret, _ = accounts.issue_token(s, name, form.get("role", "legal"), info.user_id)
            issued = (secret, name)
            return f"token {name} issued"
        if action == "revoke-token":
            accounts.revoke_token(s, name)
            return f"token {name} revoked"
        if action == "revoke-session":
            sid = form.get("id", "")
            if not sid.isdigit():
                raise HTTPException(404, "no such session")
            accounts.revoke_session(s, int(sid))
            return "session ended"
        raise HTTPException(404, "no such action")

    try:
        message = await portal.adb(act)
    except AuditorError as exc:
        message = f"not done: {exc}"
    return admin_page(request, issued[0] if issued else None, issued[1] if issued else None,
                      message)


# ---------------------------------------------------------------- errors and the app


async def http_error(request: Request, exc: Exception) -> Response:
    portal: Portal = request.app.state.portal
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/"):
        from starlette.responses import JSONResponse

        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    user = None
    try:
        user = await portal.adb(lambda s: portal.who(request, s))
    except Exception:  # noqa: BLE001 - the error page must render whatever happened
        user = None
    return portal.page(request, "error.html", user, status=exc.status_code,
                       code=exc.status_code, detail=exc.detail)


async def signin_needed(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        from starlette.responses import JSONResponse

        return JSONResponse({"error": "a bearer token is needed"}, status_code=401)
    target = request.url.path if request.method == "GET" else "/cases"
    return RedirectResponse(f"/signin?next={quote(target)}", status_code=303)


def health(request: Request) -> Response:
    return HTMLResponse("ok\n", media_type="text/plain")


def create_app(settings: Settings, store: Store | None = None) -> Starlette:
    """The portal over ``store`` (opened from the settings when not given)."""
    own = store is None
    st = store or open_store(settings)
    portal = Portal(settings, st)
    from auditor.web import api, oidc

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        await run_in_threadpool(portal.jobs.recover)
        yield
        await run_in_threadpool(portal.jobs.shutdown)
        if own:
            st.close()

    routes = [
        Route("/", home),
        Route("/healthz", health),
        Route("/signin", signin_form, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/cases", case_list),
        Route("/cases/{suspect}/{protected}", case_page),
        Route("/cases/{suspect}/{protected}/timeline.svg", timeline),
        Route("/cases/{suspect}/{protected}/report", generate, methods=["POST"]),
        Route("/jobs/{job_id:int}", job_page),
        Route("/bundles/{sha}/download", download),
        Route("/bundles/{sha}/verify", verify, methods=["POST"]),
        Route("/custody", custody_page),
        Route("/custody/export.jsonl", custody_export),
        Route("/admin", admin_page),
        Route("/admin/{action}", admin_action, methods=["POST"]),
        *oidc.routes(settings),
        Mount("/api", routes=api.routes()),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    middleware=[Middleware(SecurityHeaders, web=settings.web)],
                    exception_handlers={HTTPException: http_error,
                                        SignInNeeded: signin_needed})
    app.state.portal = portal
    return app


