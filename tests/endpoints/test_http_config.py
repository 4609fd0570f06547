"""Checks of ``provider = "http"`` settings made when the config loads."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.config import load_settings
from auditor.errors import AuditorError

HEAD = """
[[endpoints]]
name = "plain"
provider = "openai"
model = "m"
role = "control"

[[endpoints]]
name = "custom-api"
provider = "http"
model = "m"
base_url = "http://127.0.0.1:9/"
role = "suspect"
"""


def _load(tmp_path: Path, text: str) -> str:
    path = tmp_path / "auditor.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AuditorError) as info:
        load_settings(path)
    return str(info.value)


@pytest.mark.parametrize(("http", "key", "says"), [
    ('request_template = { input = "{prompt}" }', "http.request_template.input",
     "'{prompt}' is not filled in; placeholders are written with double braces: {{prompt}}"),
    ('request_template = { input = "{{prompt}}", n = "{max_tokens}" }',
     "http.request_template.n", "with double braces: {{max_tokens}}"),
    ('request_template = { input = "{{promt}}" }', "http.request_template.input",
     "unknown placeholder '{{promt}}'; known here: {{messages}}, {{prompt}}"),
    ('request_template = { input = "hello" }', "http.request_template",
     "has neither {{prompt}} nor {{messages}}"),
    ('request_template = { input = "{{prompt}}" }\nheaders = { "X-Key" = "{{api_key}}" }',
     "api_key_env", "not set, but {{api_key}} is used"),
    ('headers = { "X-Key" = "{{prompt}}" }', "http.headers.X-Key",
     "unknown placeholder '{{prompt}}'; known here: {{api_key}}, {{model}}"),
])
def test_bad_template_is_refused_at_load_naming_endpoint_key_and_line(
        tmp_path: Path, http: str, key: str, says: str) -> None:
    text = _load(tmp_path, HEAD + "\n[endpoints.http]\n" + http + "\n")
    assert "endpoint 'custom-api'" in text
    assert f"{key}: " in text and says in text
    line = (HEAD + "\n").count("\n") + 1  # the [endpoints.http] line
    assert f"auditor.toml:{line}" in text


def test_bad_template_stops_the_cli_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "auditor.toml").write_text(
        HEAD + 'http = { request_template = { input = "{prompt}" } }\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    result = subprocess.run([sys.executable, "-m", "auditor", "canaries", "validate"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "custom-api" in result.stderr and "{{prompt}}" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_shared_limit_is_refused_naming_the_endpoint(tmp_path: Path) -> None:
    text = _load(tmp_path, HEAD + 'limits = { shared = "llama-box" }\n'
                 "[shared_limits.other]\nconcurrency = 2\n")
    assert "endpoint 'custom-api': limits.shared = 'llama-box'" in text
    assert "[shared_limits.llama-box]" in text and "known: other" in text


@pytest.mark.parametrize(("http", "warns"), [
    ('request_template = { input = "{{prompt}}" }\nresponse_path = "output.text"', True),
    ('request_template = { input = "{{prompt}}" }\nresponse_path = "output.text"\n'
     'prompt_tokens_path = "meta.in"\ncompletion_tokens_path = "meta.out"', False),
    ('request_template = { messages = "{{messages}}" }', False),  # OpenAI-shaped: usage
])
def test_budget_without_readable_token_counts_warns_at_load(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, http: str, warns: bool) -> None:
    path = tmp_path / "auditor.toml"
    path.write_text(HEAD + "limits = { daily_budget_usd = 5 }\n[endpoints.http]\n" + http
                    + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="auditor.config"):
        load_settings(path)
    warned = [r.getMessage() for r in caplog.records if r.name == "auditor.config"]
    assert bool(warned) is warns
    if warns:
        assert "'custom-api'" in warned[0] and "prompt_tokens_path" in warned[0]
