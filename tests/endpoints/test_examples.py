"""Every endpoint example we ship, commented ones included, loads and sends a right body.

The endpoints of ``auditor.example.toml`` (its commented blocks uncommented) and of each
TOML block of the README go through the real config loader and the real adapters to a
loopback server; each body is checked against the example's own template.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from probe.servers import FakeServer

from auditor.canary import Canary
from auditor.config import Endpoint, load_settings
from auditor.endpoints import Result, make_adapter, request_for
from auditor.probe import probe_once_sync
from auditor.store import open_store

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-example-key-0042"
PROMPT = "Name the tallest mountain on Mars."
_COMMENTED = re.compile(r"^#\s?(\[.*\]|[A-Za-z_\"][\w.\"-]*\s*=.*)$")
_LEFT_OVER = re.compile(r"\{\{?\s*[a-z_]+\s*\}\}?")


def uncomment(text: str) -> str:
    """Commented TOML blocks (a ``# [table]`` line and the ``# key = ...`` lines after it)
    made live; prose comments stay."""
    out, live = [], False
    for line in text.splitlines():
        m = _COMMENTED.match(line)
        if m and (live or m.group(1).startswith("[")):
            out.append(m.group(1))
            live = True
        else:
            out.append(line)
            live = False
    return "\n".join(out) + "\n"


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "[[endpoints]]" in b]


def examples() -> list[Any]:
    """(where, TOML text, endpoint name) of every endpoint in a shipped config."""
    found = [("auditor.example.toml", uncomment(
        (ROOT / "auditor.example.toml").read_text(encoding="utf-8")))]
    found += [(f"README block {i + 1}", uncomment(b)) for i, b in enumerate(readme_blocks())]
    params = []
    for where, text in found:
        for ep in tomllib.loads(text)["endpoints"]:
            params.append(pytest.param(where, text, ep["name"], id=f"{where}:{ep['name']}"))
    return params


def test_the_readme_has_the_two_custom_api_examples() -> None:
    templated = [b for b in readme_blocks() if "request_template" in b]
    assert any("/chat/completions" in b and '"system"' in b for b in templated)
    assert any("response_path" in b and "choices." not in b for b in templated)


def _answer(ep: Endpoint) -> Any:
    """A route answering at the endpoint's configured paths (OpenAI when it says so)."""
    tpl = ep.http
    assert tpl is not None

    def respond(body: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for path, value in ((tpl.response_path, "an answer"),
                            (tpl.finish_reason_path, "stop"),
                            (tpl.prompt_tokens_path, 11), (tpl.completion_tokens_path, 2)):
            if path:
                *parents, leaf = path.split(".")
                node = data
                for part in parents:
                    node = node.setdefault(part, {})
                node[leaf] = value
        return data

    return respond


def _check(template: Any, sent: Any, expected: dict[str, Any], where: str) -> None:
    """``sent`` is ``template`` with each placeholder holding its value, typed."""
    if isinstance(template, dict):
        assert isinstance(sent, dict) and set(sent) == set(template), where
        for k in template:
            _check(template[k], sent[k], expected, f"{where}.{k}")
    elif isinstance(template, list):
        assert isinstance(sent, list) and len(sent) == len(template), where
        for i, (t, s) in enumerate(zip(template, sent, strict=True)):
            _check(t, s, expected, f"{where}.{i}")
    elif isinstance(template, str) and (m := re.fullmatch(r"\{\{(\w+)\}\}", template)):
        assert sent == expected[m.group(1)], where
    elif isinstance(template, str):
        assert isinstance(sent, str) and not _LEFT_OVER.search(sent), where
    else:
        assert sent == template, where


def _send(ep: Endpoint, canary: Canary) -> Result:
    async def go() -> Result:
        adapter = make_adapter(ep)
        try:
            return await adapter.send(request_for(ep, canary))
        finally:
            await adapter.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(("where", "text", "name"), examples())
def test_each_example_endpoint_loads_and_sends_its_template_filled(
        where: str, text: str, name: str, tmp_path: Path, server: FakeServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "auditor.toml"
    path.write_text(text, encoding="utf-8")
    for variable in set(re.findall(r'api_key_env\s*=\s*"([A-Z0-9_]+)"', text)):
        monkeypatch.setenv(variable, KEY)
    settings = load_settings(path)
    canary = Canary.model_validate({"id": "c-mars", "kind": "free_text", "prompt": PROMPT})
    for configured in [settings.endpoint(name)]:
        given = urlsplit(configured.base_url or "")
        base = server.url + (given.path if configured.provider != "anthropic" else "")
        if configured.provider == "openai" and not given.path:
            base += "/v1"
        ep = configured.model_copy(update={"base_url": base})
        tpl = ep.http
        if tpl is not None and tpl.request_template is not None:
            route = urlsplit(base).path + "/" + tpl.path.replace("{{model}}", ep.model).lstrip("/")
            server.routes.setdefault(route, _answer(ep))
        server.reset()
        result = _send(ep, canary)
        seen = server.requests()
        assert len(seen) == 1, f"{where}: {ep.name}"
        body, headers = seen[0].body, seen[0].headers
        request = request_for(ep, canary)
        if tpl is None or tpl.request_template is None:
            assert body is not None and body["messages"][-1]["content"] == PROMPT
            assert body["max_tokens"] == request.max_tokens
        else:
            expected = {"prompt": PROMPT, "messages": request.messages, "system": "",
                        "model": ep.model, "max_tokens": request.max_tokens,
                        "temperature": request.temperature, "top_p": request.top_p,
                        "seed": request.seed, "stop": request.stop, "api_key": KEY}
            _check(tpl.request_template, body, expected, f"{where}: {ep.name}")
            assert PROMPT in str(body)
        for name, value in (tpl.headers.items() if tpl else []):
            assert headers[name.lower()] == value.replace("{{api_key}}", KEY), name
        if ep.api_key_env:
            assert KEY in str(headers) + str(body), f"{ep.name}: the key was not sent"
        assert result.text, ep.name
        counted = (tpl is None or tpl.response_path.startswith("choices.")
                   or tpl.prompt_tokens_path is not None)
        if counted or ep.limits.daily_budget_usd is not None or ep.limits.tokens_per_minute:
            assert result.prompt_tokens is not None, f"{where}: {ep.name} reads no tokens"


def test_the_readme_persona_copied_per_persona_runs_under_one_shared_limit(
        tmp_path: Path, sqlite_url: str) -> None:
    """The set-up of issue #18: the README's persona endpoint copied once per persona, only
    the name and the system text changed, all on one single-slot server."""
    block = next(b for b in readme_blocks() if "/chat/completions" in b and '"system"' in b)
    shared, persona = block.split("[[endpoints]]", 1)
    old_name = re.search(r'name = "([^"]+)"', persona)
    old_system = re.search(r'role = "system", content = "([^"]+)"', persona)
    assert old_name and old_system
    names = ["persona-a", "persona-b", "persona-c"]
    copies = [persona.replace(old_name.group(1), n).replace(old_system.group(1), f"You are {n}.")
              for n in names]
    with FakeServer(serial=True, delay=0.02) as server:
        text = re.sub(r'base_url = "http://[^/"]+', f'base_url = "{server.url}',
                      shared + "".join("[[endpoints]]" + c for c in copies))
        (tmp_path / "canaries").mkdir()
        (tmp_path / "canaries" / "c.yaml").write_text(
            f"id: c-mars\nkind: free_text\nprompt: {PROMPT}\nsamples: 3\n", encoding="utf-8")
        path = tmp_path / "auditor.toml"
        path.write_text(f'database_url = "{sqlite_url}"\n' + text, encoding="utf-8")
        settings = load_settings(path)
        st = open_store(settings, migrate=True)
        try:
            summary = probe_once_sync(st, settings).summary
        finally:
            st.close()
        seen = server.requests()
    assert server.peak == 1 and len(seen) == 9
    for n in names:
        assert summary[n]["ok"] == 3 and summary[n]["prompt_tokens"] > 0
        assert summary[n]["queue_p50_ms"] is not None
        bodies = [r.body for r in seen if r.body and r.body["messages"][0]["content"]
                  == f"You are {n}."]
        assert len(bodies) == 3
        assert all(b["messages"][1]["content"] == PROMPT for b in bodies)
