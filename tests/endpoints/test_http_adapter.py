"""``provider = "http"`` with templates, against the loopback server, through probe cycles."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from probe.helpers import canary, endpoint, make_settings, run
from probe.servers import FakeServer
from sqlalchemy import MetaData, select

from auditor.store import open_store

PERSONA = {"path": "/chat/completions", "request_template": {
    "model": "{{model}}", "max_tokens": "{{max_tokens}}",
    "messages": [{"role": "system", "content": "You are Captain Flint."},
                 {"role": "user", "content": "{{prompt}}"}]}}


def test_templated_openai_compatible_answers_give_their_token_counts(
        tmp_path: Path, sqlite_url: str, server: FakeServer) -> None:
    s = make_settings(tmp_path, sqlite_url, [endpoint("persona", "http", server.url,
                                                      http=PERSONA)],
                      [canary("c-a", "Who are you?", samples=2)])
    st = open_store(s, migrate=True)
    try:
        summary = run(st, s).summary["persona"]
    finally:
        st.close()
    body = server.requests()[-1].body
    assert body is not None and body["messages"][0]["content"] == "You are Captain Flint."
    assert body["messages"][1]["content"] == "Who are you?"
    # the server's usage: words of all messages as prompt tokens, 3 completion tokens each
    assert summary["ok"] == 2
    assert summary["prompt_tokens"] == 2 * (4 + 3)
    assert summary["completion_tokens"] == 2 * 3


def _all_rows(url: str) -> str:
    st = open_store(url)
    try:
        meta = MetaData()
        with st.session() as session:
            meta.reflect(bind=session.get_bind())
            return "\n".join(str(row) for table in meta.sorted_tables
                             for row in session.execute(select(table)))
    finally:
        st.close()


def test_key_placeholders_send_the_key_which_never_reaches_db_or_logs(
        tmp_path: Path, sqlite_url: str, server: FakeServer,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    key = "sk-live-key-7788"
    monkeypatch.setenv("CUSTOM_API_KEY", key)
    http: dict[str, Any] = {
        "path": "/custom/generate", "response_path": "output.text",
        "headers": {"X-Api-Key": "{{api_key}}", "X-Caller": "auditor {{model}}"},
        "request_template": {"prompt": "{{prompt}}", "auth": {"token": "{{api_key}}"}}}
    s = make_settings(tmp_path, sqlite_url, [endpoint(
        "custom", "http", server.url, api_key_env="CUSTOM_API_KEY", http=http)],
        [canary("c-ok", "Hello there."), canary("c-bad", "Hello fault=500")])
    s = s.model_copy(update={"endpoints": [s.endpoints[0].model_copy(
        update={"base_url": server.url})]})
    st = open_store(s, migrate=True)
    with caplog.at_level(logging.DEBUG):
        try:
            result = run(st, s)
        finally:
            st.close()
    assert result.summary["custom"]["ok"] == 1
    assert result.summary["custom"]["failed"] == {"server_error": 1}
    sent = server.requests()
    assert {r.headers["x-api-key"] for r in sent} == {key}
    assert {r.headers["x-caller"] for r in sent} == {"auditor test-model"}
    assert {r.body["auth"]["token"] for r in sent if r.body} == {key}
    assert all("authorization" not in r.headers for r in sent)  # placed where told only
    stored = _all_rows(sqlite_url)
    assert "answer " in stored  # the dump holds the rows, answers included
    assert key not in stored
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert logged and key not in logged
