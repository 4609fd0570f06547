"""The portal's pages against a real uvicorn on loopback."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

from sqlalchemy import select

from auditor.bundle import verify_bundle
from auditor.store import custody
from auditor.store.models import CustodyEntry
from tests.report.world import secret_prompt
from tests.web.conftest import Live, hidden


def _generate(live: Live, client: object, suspect: str = "sus", protected: str = "prot") -> str:
    import httpx

    assert isinstance(client, httpx.Client)
    page = client.get(f"/cases/{suspect}/{protected}")
    r = client.post(f"/cases/{suspect}/{protected}/report", data={"csrf": hidden(page.text,
                                                                                  "csrf")})
    assert r.status_code == 303
    job_url = r.headers["location"]
    deadline = time.monotonic() + 240
    while True:
        job = client.get(job_url)
        assert job.status_code == 200
        if "job-done" in job.text or "job-failed" in job.text:
            break
        assert time.monotonic() < deadline, "the report job did not finish"
        time.sleep(0.5)
    assert "job-done" in job.text, job.text
    import re

    m = re.search(r'href="(/bundles/[0-9a-f]{64}/download)"', job.text)
    assert m
    return m.group(1)


def test_cases_page_lists_each_pair_from_stored_verdicts(live: Live) -> None:
    c = live.signin("legal")
    r = c.get("/cases")
    assert r.status_code == 200
    assert 'href="/cases/sus/prot"' in r.text
    assert "Significant" in r.text and "3.2 × 10⁻⁶" in r.text
    assert "<script" not in r.text
    filtered = c.get("/cases", params={"q": "nothing-like-this"})
    assert 'href="/cases/sus/prot"' not in filtered.text


def test_security_headers_and_cookie_flags(live: Live) -> None:
    c = live.client()
    r = c.get("/signin")
    csp = r.headers["content-security-policy"]
    assert "script-src" not in csp or "'unsafe-inline'" not in csp
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    r = c.post("/signin", data={"csrf": hidden(r.text, "csrf"), "username": "legal",
                                "password": "a long enough passphrase 42"})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_case_page_shows_canary_ids_to_analysts_only_and_never_canary_text(live: Live) -> None:
    legal = live.signin("legal").get("/cases/sus/prot")
    analyst = live.signin("analyst").get("/cases/sus/prot")
    assert legal.status_code == analyst.status_code == 200
    assert "ft-canary-0000" in analyst.text
    assert "ft-canary-0000" not in legal.text
    for page in (legal.text, analyst.text):
        for i in range(8):
            assert secret_prompt(i) not in page
            assert "Zebra-quartz" not in page
        assert "THISMUSTNEVERLEAK" not in page


def test_generate_download_and_verify_a_report_with_custody_entries(live: Live) -> None:
    c = live.signin("legal")
    link = _generate(live, c)
    r = c.get(link)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert any(n.endswith("/manifest.json") for n in zf.namelist())
    path = live.tmp / "downloaded.zip"
    path.write_bytes(r.content)
    assert "bundle ok" in verify_bundle(path).summary()
    page = c.get("/cases/sus/prot")
    v = c.post(link.replace("/download", "/verify"), data={"csrf": hidden(page.text, "csrf")})
    assert v.status_code == 200 and "Verified." in v.text
    with live.store.session() as s:
        actions = [(e.actor, e.action) for e in
                   s.scalars(select(CustodyEntry).order_by(CustodyEntry.seq))]
        assert actions == [("legal", "generate"), ("legal", "download"), ("legal", "verify")]
        assert custody.verify(s).ok
    assert "download" in c.get("/custody").text


def test_custody_export_is_itself_logged(live: Live) -> None:
    c = live.signin("legal")
    r = c.get("/custody/export.jsonl")
    assert r.status_code == 200
    assert '"action":"export"' in r.text and '"actor":"legal"' in r.text


def test_json_api_needs_a_token_and_serves_cases_and_openapi(live: Live) -> None:
    from auditor.web import accounts

    with live.store.session() as s:
        legal_token, _ = accounts.issue_token(s, "dms", "legal")
        analyst_token, _ = accounts.issue_token(s, "lab", "analyst")
    c = live.client()
    assert c.get("/api/v1/cases").status_code == 401
    assert c.get("/api/v1/cases", headers={"authorization": "Bearer aud_wrong"}
                 ).status_code == 401
    r = c.get("/api/v1/cases", headers={"authorization": f"Bearer {legal_token}"})
    assert r.status_code == 200
    assert r.json()["cases"][0]["suspect"] == "sus"
    v = c.get("/api/v1/cases/sus/prot/verdicts",
              headers={"authorization": f"Bearer {legal_token}"}).json()
    assert len(v["verdicts"]) == 3 and "canary_id" not in v["verdicts"][0]["strongest"][0]
    va = c.get("/api/v1/cases/sus/prot/verdicts",
               headers={"authorization": f"Bearer {analyst_token}"}).json()
    assert va["verdicts"][0]["strongest"][0]["canary_id"] == "ft-canary-0000"
    spec = c.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/api/v1/custody" in spec["paths"]


def test_admin_page_is_for_admins_and_issues_tokens_once(live: Live) -> None:
    assert live.signin("analyst").get("/admin").status_code == 403
    c = live.signin("admin")
    page = c.get("/admin")
    assert page.status_code == 200
    r = c.post("/admin/issue-token", data={"csrf": hidden(page.text, "csrf"), "name": "dms",
                                           "role": "legal"})
    token = hidden(r.text.replace('id="issued-token">', 'name="tok" value="').replace(
        "</code>", '"', 1), "tok")
    assert token.startswith("aud_")
    assert token not in c.get("/admin").text


def test_the_portal_works_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    from tests.web.conftest import start_portal

    for live in start_portal(tmp_path, database_url=pg_url):
        c = live.signin("legal")
        assert 'href="/cases/sus/prot"' in c.get("/cases").text
        link = _generate(live, c)
        r = c.get(link)
        assert r.status_code == 200 and r.content[:4] == b"PK\x03\x04"
        r2 = live.signin("analyst").get(link)
        assert r2.content == r.content
        with live.store.session() as s:
            assert [e.action for e in s.scalars(select(CustodyEntry).order_by(
                CustodyEntry.seq))] == ["generate", "download", "download"]
            assert custody.verify(s).ok


def test_an_admin_ends_another_users_session(live: Live) -> None:
    import re

    legal = live.signin("legal")
    assert legal.get("/cases").status_code == 200
    admin = live.signin("admin")
    page = admin.get("/admin").text
    # the row of legal's session: its End form carries the session id
    row = re.search(r'<td data-label="User">legal</td><td data-label="Since">.*?'
                    r'name="id" value="(\d+)"', page, re.S)
    assert row
    r = admin.post("/admin/revoke-session", data={"csrf": hidden(page, "csrf"),
                                                  "id": row.group(1)})
    assert r.status_code == 200 and "session ended" in r.text
    assert legal.get("/cases").status_code == 303
    assert admin.get("/cases").status_code == 200
