"""Attacks on the portal, each of which must fail, against a real uvicorn on loopback.

Every refused response is checked for what must never leak: a byte of a bundle (the zip's
magic or the manifest), a canary's text, the signing key or an API key."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from auditor.bundle import write_bundle
from auditor.report import ReportRequest
from auditor.signing import load_private_key
from auditor.store.models import CustodyEntry, ReportJob, User
from tests.report.world import API_KEYS, secret_prompt
from tests.web.conftest import PASSWORD, Live, hidden, start_portal


@pytest.fixture
def bundled(tmp_path: Path) -> Iterator[tuple[Live, str]]:
    """A live portal with one bundle written by the CLI's code path."""
    for live in start_portal(tmp_path, signin_max_failures=5,
                             signin_max_failures_per_address=12):
        key = load_private_key(live.settings.signing.key_path)
        with live.store.session() as s:
            result = write_bundle(s, live.settings, ReportRequest("sus"), key,
                                  formats=("html", "json"))
        yield live, result.manifest_sha256


def assert_nothing_leaks(r: httpx.Response, live: Live) -> None:
    body = r.content
    assert b"PK\x03\x04" not in body
    assert b'"ledger_head"' not in body and b"evidence.jsonl" not in body
    assert b"PRIVATE KEY" not in body
    key_pem = Path(live.settings.signing.key_path).read_bytes()
    assert key_pem not in body
    for i in range(8):
        assert secret_prompt(i).encode() not in body
    for v in API_KEYS.values():
        assert v.encode() not in body


def _custody_count(live: Live) -> int:
    with live.store.session() as s:
        return int(s.scalar(select(func.count()).select_from(CustodyEntry)) or 0)


def test_download_without_a_session_is_refused(bundled: tuple[Live, str]) -> None:
    live, sha = bundled
    r = live.client().get(f"/bundles/{sha}/download")
    assert r.status_code == 303 and r.headers["location"].startswith("/signin")
    assert_nothing_leaks(r, live)
    forged = live.client()
    forged.cookies.set("auditor_session", secrets.token_urlsafe(32))
    r = forged.get(f"/bundles/{sha}/download")
    assert r.status_code == 303
    assert_nothing_leaks(r, live)
    assert _custody_count(live) == 0


def test_a_bearer_token_or_a_disabled_account_cannot_download(
        bundled: tuple[Live, str]) -> None:
    from auditor.web import accounts

    live, sha = bundled
    with live.store.session() as s:
        token, _ = accounts.issue_token(s, "dms", "analyst")
    r = live.client().get(f"/bundles/{sha}/download",
                          headers={"authorization": f"Bearer {token}"})
    assert r.status_code == 303
    assert_nothing_leaks(r, live)
    c = live.signin("legal")
    with live.store.session() as s:
        accounts.set_disabled(s, "legal")
    r = c.get(f"/bundles/{sha}/download")
    assert r.status_code == 303
    assert_nothing_leaks(r, live)
    assert _custody_count(live) == 0


def test_another_roles_session_cannot_administer(bundled: tuple[Live, str]) -> None:
    live, _ = bundled
    for role in ("legal", "analyst"):
        c = live.signin(role)
        csrf = hidden(c.get("/cases").text, "csrf")
        assert c.get("/admin").status_code == 403
        r = c.post("/admin/add-user", data={"csrf": csrf, "name": "mallory", "role": "admin",
                                            "password": "x" * 20})
        assert r.status_code == 403
        r = c.post("/admin/issue-token", data={"csrf": csrf, "name": "t", "role": "analyst"})
        assert r.status_code == 403 and "aud_" not in r.text
    with live.store.session() as s:
        assert s.scalars(select(User).where(User.username == "mallory")).first() is None


@pytest.mark.parametrize("path", [
    "/bundles/{other}/download",
    "/bundles/{sha_upper}/download",
    "/bundles/../../keys/signing.pem",
    "/bundles/..%2F..%2Fkeys%2Fsigning.pem/download",
    "/bundles/%2e%2e%2f%2e%2e%2fauditor.db/download",
    "/bundles/{sha}%2F..%2F..%2Fkeys%2Fsigning.pem/download",
    "/static/../keys/signing.pem",
    "/static/..%2F..%2F..%2Fkeys%2Fsigning.pem",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/keys/signing.pem",
    "/cases/sus/..%2F..%2Fkeys",
    "/cases/..%2Fkeys/signing.pem",
    "/jobs/999999",
])
def test_guessing_a_bundle_id_or_path_reveals_nothing(bundled: tuple[Live, str],
                                                        path: str) -> None:
    live, sha = bundled
    c = live.signin("admin")
    url = path.format(sha=sha, other=secrets.token_hex(32), sha_upper=sha.upper())
    r = c.get(url)
    assert r.status_code in (404, 400), (url, r.status_code)
    assert_nothing_leaks(r, live)
    assert _custody_count(live) == 0


def test_a_download_started_from_another_site_is_refused_and_not_logged(
        bundled: tuple[Live, str]) -> None:
    live, sha = bundled
    r = live.signin("legal").get(f"/bundles/{sha}/download",
                                 headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    assert_nothing_leaks(r, live)
    assert _custody_count(live) == 0


def test_a_tampered_zip_on_the_server_is_withheld(bundled: tuple[Live, str]) -> None:
    live, sha = bundled
    from auditor.store.models import Report

    with live.store.session() as s:
        rep = s.scalars(select(Report)).one()
        zip_path = Path(rep.bundle_path).with_suffix(".zip")
    data = bytearray(zip_path.read_bytes())
    data[-30] ^= 1
    zip_path.write_bytes(bytes(data))
    r = live.signin("legal").get(f"/bundles/{sha}/download")
    assert r.status_code == 409
    assert_nothing_leaks(r, live)


def test_a_post_without_the_csrf_token_is_refused(bundled: tuple[Live, str]) -> None:
    live, sha = bundled
    c = live.signin("legal")
    good = hidden(c.get("/cases/sus/prot").text, "csrf")
    for data in ({}, {"csrf": ""}, {"csrf": "x" * 43}, {"csrf": good + "x"}):
        r = c.post("/cases/sus/prot/report", data=data)
        assert r.status_code == 403
        assert_nothing_leaks(r, live)
        assert c.post(f"/bundles/{sha}/verify", data=data).status_code == 403
        assert c.post("/signout", data=data).status_code == 403
    # the right token from another site (the browser says where the form came from)
    r = c.post("/cases/sus/prot/report", data={"csrf": good},
               headers={"origin": "https://evil.example"})
    assert r.status_code == 403
    # another user's token does not fit this session
    other = hidden(live.signin("analyst").get("/cases").text, "csrf")
    assert c.post("/cases/sus/prot/report", data={"csrf": other}).status_code == 403
    with live.store.session() as s:
        assert s.scalar(select(func.count()).select_from(ReportJob)) == 0
    assert _custody_count(live) == 0
    assert c.get("/cases").status_code == 200  # still signed in: the refused sign-out did nothing
    # and sign-in itself needs its pre-session token
    fresh = live.client()
    r = fresh.post("/signin", data={"username": "legal", "password": PASSWORD})
    assert r.status_code == 403 and "set-cookie" not in r.headers


def test_a_session_is_dead_after_sign_out(bundled: tuple[Live, str]) -> None:
    live, sha = bundled
    c = live.signin("legal")
    cookie = c.cookies.get("auditor_session")
    assert cookie
    r = c.post("/signout", data={"csrf": hidden(c.get("/cases").text, "csrf")})
    assert r.status_code == 303
    replay = live.client()
    replay.cookies.set("auditor_session", cookie)
    for url in ("/cases", "/cases/sus/prot", f"/bundles/{sha}/download", "/custody"):
        r = replay.get(url)
        assert r.status_code == 303 and r.headers["location"].startswith("/signin"), url
        assert_nothing_leaks(r, live)
    assert _custody_count(live) == 0


def test_a_brute_force_run_of_sign_ins_is_throttled(bundled: tuple[Live, str]) -> None:
    live, _ = bundled
    c = live.client()
    codes = []
    for i in range(8):
        form = c.get("/signin")
        r = c.post("/signin", data={"csrf": hidden(form.text, "csrf"), "username": "legal",
                                    "password": f"guess number {i:04d}"})
        codes.append(r.status_code)
        assert "auditor_session" not in r.headers.get("set-cookie", "")
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
    form = c.get("/signin")
    r = c.post("/signin", data={"csrf": hidden(form.text, "csrf"), "username": "legal",
                                "password": PASSWORD})
    assert r.status_code == 429  # the right password does not help while throttled
    # spraying other names from the same address is throttled by the address
    for i in range(8):
        form = c.get("/signin")
        r = c.post("/signin", data={"csrf": hidden(form.text, "csrf"),
                                    "username": f"user{i}", "password": "guess guess guess"})
    assert r.status_code == 429
    form = c.get("/signin")
    r = c.post("/signin", data={"csrf": hidden(form.text, "csrf"), "username": "analyst",
                                "password": PASSWORD})
    assert r.status_code == 429
