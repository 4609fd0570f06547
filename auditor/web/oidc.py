"""Single sign-on through OpenID Connect: authorization code flow with PKCE (Authlib's
OAuth 2 client) and ID-token validation (joserfc): issuer, audience, expiry and nonce.

Who may enter: an account already linked to the provider's subject; else a local account
whose name is the token's (verified) e-mail, which is then linked; else, when the token
carries ``web.oidc.roles_claim`` with a portal role, a new single-sign-on account. Anyone
else is refused, and nobody disabled gets in.
"""

from __future__ import annotations

__all__ = ["routes"]

import json
import os
import secrets
import time
from typing import Any

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from auditor.config import Oidc, Settings
from auditor.store.models import User
from auditor.web import accounts
from auditor.web.security import cookie_secure

STATE_COOKIE = "auditor_oidc"
_META_TTL = 3600.0


class Provider:
    def __init__(self, conf: Oidc) -> None:
        self.conf = conf
        self._meta: dict[str, Any] | None = None
        self._jwks: dict[str, Any] | None = None
        self._fetched = 0.0

    def _get(self, url: str) -> dict[str, Any]:
        try:
            r = httpx.get(url, timeout=10)
            r.raise_for_status()
            out = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise HTTPException(502, f"the single sign-on provider cannot be reached "
                                f"({type(exc).__name__}); try again or use a local "
                                "account") from None
        if not isinstance(out, dict):
            raise HTTPException(502, "the single sign-on provider answered nonsense")
        return out

    def meta(self) -> dict[str, Any]:
        if self._meta is None or time.monotonic() - self._fetched > _META_TTL:
            issuer = self.conf.issuer.rstrip("/")
            meta = self._get(f"{issuer}/.well-known/openid-configuration")
            if meta.get("issuer", "").rstrip("/") != issuer:
                raise HTTPException(502, "the provider's discovery document names another "
                                    "issuer; check web.oidc.issuer")
            self._meta, self._jwks, self._fetched = meta, None, time.monotonic()
        return self._meta

    def jwks(self) -> dict[str, Any]:
        if self._jwks is None:
            self._jwks = self._get(self.meta()["jwks_uri"])
        return self._jwks

    def client(self, redirect_uri: str) -> OAuth2Client:
        secret = os.environ.get(self.conf.client_secret_env) if self.conf.client_secret_env \
            else None
        return OAuth2Client(self.conf.client_id, secret, scope=self.conf.scope,
                            redirect_uri=redirect_uri, code_challenge_method="S256",
                            token_endpoint_auth_method="client_secret_post" if secret
                            else "none", timeout=10)


def _redirect_uri(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/oidc/callback"


def routes(settings: Settings) -> list[BaseRoute]:
    conf = settings.web.oidc
    if conf is None:
        return []
    provider = Provider(conf)

    def login(request: Request) -> Response:
        meta = provider.meta()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        url, _ = provider.client(_redirect_uri(request)).create_authorization_url(
            meta["authorization_endpoint"], state=state, code_verifier=verifier, nonce=nonce)
        resp = RedirectResponse(url, status_code=303)
        resp.set_cookie(STATE_COOKIE, json.dumps([state, nonce, verifier]), max_age=600,
                        httponly=True, samesite="lax", path="/oidc",
                        secure=cookie_secure(request, settings.web))
        return resp

    def _claims(request: Request) -> dict[str, Any]:
        try:
            state, nonce, verifier = json.loads(request.cookies.get(STATE_COOKIE, ""))
        except (ValueError, TypeError):
            raise HTTPException(403, "the sign-on has no pending request here (cookies off, "
                                "or it took longer than ten minutes); start again") from None
        if not accounts_equal(request.query_params.get("state"), state):
            raise HTTPException(403, "the sign-on answer does not belong to this browser's "
                                "request (state differs); start again")
        if "error" in request.query_params:
            raise HTTPException(403, "the provider refused the sign-on: "
                                f"{request.query_params.get('error', '')[:100]}")
        meta = provider.meta()
        try:
            token = provider.client(_redirect_uri(request)).fetch_token(
                meta["token_endpoint"], code=request.query_params.get("code", ""),
                code_verifier=verifier)
        except Exception as exc:  # noqa: BLE001 - authlib raises several kinds here
            raise HTTPException(403, f"the provider did not accept the sign-on code "
                                f"({type(exc).__name__})") from None
        try:
            decoded = jwt.decode(token.get("id_token", ""),
                                 KeySet.import_key_set(provider.jwks()),  # type: ignore[arg-type]
                                 algorithms=["RS256", "ES256", "PS256", "EdDSA"])
            jwt.JWTClaimsRegistry(
                leeway=60, iss={"essential": True, "value": meta["issuer"]},
                aud={"essential": True, "value": conf.client_id},
                sub={"essential": True}, exp={"essential": True},
                nonce={"essential": True, "value": nonce}).validate(decoded.claims)
        except (JoseError, ValueError, KeyError) as exc:
            raise HTTPException(403, f"the provider's ID token is not valid for this portal "
                                f"({type(exc).__name__})") from None
        return dict(decoded.claims)

    def callback(request: Request) -> Response:
        claims = _claims(request)
        portal = request.app.state.portal
        subject = f"{claims['iss']}|{claims['sub']}"
        email = claims.get("email") if claims.get("email_verified", True) else None
        address = portal.address(request)

        def enter(s: Session) -> str:
            user = s.scalars(select(User).where(User.oidc_subject == subject)).first()
            if user is None and isinstance(email, str):
                user = s.scalars(select(User).where(User.username == email)).first()
                if user is not None and user.oidc_subject not in (None, subject):
                    raise HTTPException(403, "this account is linked to another single "
                                        "sign-on identity; ask an administrator")
                if user is not None:
                    user.oidc_subject = subject
            if user is None:
                role = claims.get(conf.roles_claim)
                if role not in accounts.ROLES or not isinstance(email, str):
                    raise HTTPException(403, "no portal account for this sign-on; ask an "
                                        "administrator to add you")
                user = accounts.add_user(s, email, str(role), None)
                user.oidc_subject = subject
            if user.disabled:
                raise HTTPException(403, "this account is disabled")
            token, _ = accounts.new_session(s, user, address)
            return token

        token = portal.db(enter)
        resp = RedirectResponse("/cases", status_code=303)
        resp.set_cookie("auditor_session", token, httponly=True, samesite="lax",
                        secure=cookie_secure(request, settings.web), path="/")
        resp.delete_cookie(STATE_COOKIE, path="/oidc")
        return resp

    return [Route("/oidc/login", login), Route("/oidc/callback", callback)]


def accounts_equal(a: str | None, b: str) -> bool:
    return a is not None and secrets.compare_digest(a.encode(), b.encode())
