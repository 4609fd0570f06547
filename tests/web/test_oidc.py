"""Single sign-on against an OpenID Connect provider that the test runs on loopback
(discovery, authorize, token with PKCE, JWKS; ID tokens signed RS256)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from auditor.config import Oidc
from auditor.store.models import User
from auditor.web import accounts
from tests.web.conftest import Live, Server, start_portal

CLIENT_ID = "auditor-portal"


class LoopbackProvider:
    """A small but real OIDC provider: the user is taken as already signed in there."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.claims: dict[str, Any] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.url = ""
        self.server = Server(Starlette(routes=[
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/authorize", self.authorize), Route("/token", self.token, methods=["POST"]),
            Route("/jwks", self.jwks)]))

    def discovery(self, request: Request) -> Response:
        return JSONResponse({"issuer": self.url, "authorization_endpoint": f"{self.url}/authorize",
                             "token_endpoint": f"{self.url}/token", "jwks_uri": f"{self.url}/jwks",
                             "response_types_supported": ["code"],
                             "id_token_signing_alg_values_supported": ["RS256"]})

    def authorize(self, request: Request) -> Response:
        q = request.query_params
        assert q["client_id"] == CLIENT_ID and q["response_type"] == "code"
        assert q["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"nonce": q["nonce"], "challenge": q["code_challenge"],
                            "redirect_uri": q["redirect_uri"]}
        query = urlencode({"code": code, "state": q["state"]})
        return RedirectResponse(f"{q['redirect_uri']}?{query}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        grant = self.codes.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                             ).rstrip(b"=").decode()
        if grant is None or challenge != grant["challenge"] \
                or form.get("redirect_uri") != grant["redirect_uri"]:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        claims = {"iss": self.url, "aud": CLIENT_ID, "sub": "u-123", "iat": now,
                  "exp": now + 300, "nonce": grant["nonce"], "email": "jane@firm.example",
                  "email_verified": True, **self.claims}
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
        return JSONResponse({"access_token": "at", "token_type": "Bearer", "expires_in": 300,
                             "id_token": id_token})

    def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})


@pytest.fixture
def provider() -> Iterator[LoopbackProvider]:
    p = LoopbackProvider()
    p.url = p.server.start()
    try:
        yield p
    finally:
        p.server.stop()


@pytest.fixture
def live(tmp_path: Path, provider: LoopbackProvider) -> Iterator[Live]:
    yield from start_portal(tmp_path, oidc=Oidc(issuer=provider.url, client_id=CLIENT_ID))


def _sso(live: Live) -> Any:
    c = live.client()
    c.follow_redirects = True
    r = c.get("/oidc/login")
    return c, r


def test_a_pre_provisioned_account_signs_in_through_the_provider(
        live: Live, provider: LoopbackProvider) -> None:
    with live.store.session() as s:
        accounts.add_user(s, "jane@firm.example", "legal", None)
    assert "single sign-on" in live.client().get("/signin").text
    c, r = _sso(live)
    assert r.status_code == 200 and str(r.url).endswith("/cases"), r.text
    assert "jane@firm.example" in r.text
    with live.store.session() as s:
        user = s.scalars(select(User).where(User.username == "jane@firm.example")).one()
        assert user.oidc_subject == f"{provider.url}|u-123"


def test_a_stranger_without_a_role_claim_is_refused(live: Live) -> None:
    c, r = _sso(live)
    assert r.status_code == 403 and "no portal account" in r.text
    assert "auditor_session" not in c.cookies


def test_a_role_claim_creates_an_sso_account(live: Live, provider: LoopbackProvider) -> None:
    provider.claims = {"auditor_role": "analyst", "email": "ana@firm.example", "sub": "u-9"}
    c, r = _sso(live)
    assert r.status_code == 200 and "ana@firm.example" in r.text
    with live.store.session() as s:
        user = s.scalars(select(User).where(User.username == "ana@firm.example")).one()
        assert user.role == "analyst" and user.password_hash is None


@pytest.mark.parametrize("bad", [{"aud": "another-client"}, {"iss": "https://evil.example"},
                                 {"exp": 1_000_000}, {"nonce": "replayed"}])
def test_an_id_token_not_meant_for_this_sign_in_is_refused(
        live: Live, provider: LoopbackProvider, bad: dict[str, Any]) -> None:
    with live.store.session() as s:
        accounts.add_user(s, "jane@firm.example", "legal", None)
    provider.claims = bad
    c, r = _sso(live)
    assert r.status_code == 403 and "ID token is not valid" in r.text
    assert "auditor_session" not in c.cookies


def test_a_callback_with_another_state_is_refused(live: Live) -> None:
    c = live.client()
    login = c.get("/oidc/login")
    assert login.status_code == 303
    r = c.get("/oidc/callback", params={"code": "x", "state": "forged"})
    assert r.status_code == 403 and "state differs" in r.text


def test_a_disabled_account_cannot_use_single_sign_on(live: Live) -> None:
    with live.store.session() as s:
        accounts.add_user(s, "jane@firm.example", "legal", None)
        accounts.set_disabled(s, "jane@firm.example")
    c, r = _sso(live)
    assert r.status_code == 403 and "disabled" in r.text


def test_the_access_log_keeps_no_sign_on_code() -> None:
    import logging

    from auditor.web.security import QuietQueries

    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "GET",
                               "/oidc/callback?code=SECRETCODE&state=S", "1.1", 303), None)
    assert QuietQueries().filter(record)
    assert "SECRETCODE" not in record.getMessage() and "/oidc/callback" in record.getMessage()


def test_an_account_linked_to_another_identity_is_not_taken_over(
        live: Live, provider: LoopbackProvider) -> None:
    with live.store.session() as s:
        user = accounts.add_user(s, "jane@firm.example", "admin", None)
        user.oidc_subject = f"{provider.url}|someone-else"
    c, r = _sso(live)  # same e-mail, another subject
    assert r.status_code == 403 and "another single sign-on identity" in r.text
    assert "auditor_session" not in c.cookies
