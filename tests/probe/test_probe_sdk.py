"""The SDKs installed today: what each takes, the example config against them, and our own
bugs kept apart from the endpoint's faults."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from probe.helpers import FAST, attempts, canary, endpoint, make_settings, run
from probe.servers import FakeServer

from auditor.config import load_settings
from auditor.endpoints import Request, Result
from auditor.errors import AuditorError
from auditor.probe import RunOptions
from auditor.sdk import parameters
from auditor.store import Store

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_parameters_read_from_the_sdk_source_are_those_of_the_imported_method(
        provider: str) -> None:
    if provider == "openai":
        from openai.resources.chat.completions import AsyncCompletions as Resource
    else:
        from anthropic.resources.messages import AsyncMessages as Resource
    imported = set(inspect.signature(Resource.create).parameters) - {"self"}
    assert parameters(provider) == imported


def test_decoding_option_the_sdk_does_not_take_is_a_config_error_naming_it(
        tmp_path: Path) -> None:
    path = tmp_path / "auditor.toml"
    path.write_text('[[endpoints]]\nname = "prot"\nprovider = "anthropic"\nmodel = "m"\n'
                    'role = "protected"\ndecoding = { temperature = 0.7, max_tokens = 10 }\n')
    with pytest.raises(AuditorError) as info:
        load_settings(path)
    text = str(info.value)
    assert "'prot'" in text and "temperature" in text and f"{path}:6" in text


def test_example_config_protected_endpoint_is_answered_with_todays_sdks(
        tmp_path: Path, sqlite_url: str, server: FakeServer, store: Store,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    example = load_settings(REPO / "auditor.example.toml")
    (prot,) = example.by_role("protected")
    ep = prot.model_dump(mode="json") | {"base_url": server.url}
    ep["limits"] |= {"requests_per_minute": 1e6}
    s = make_settings(tmp_path, sqlite_url, [ep], [canary("c-1", samples=2)])
    result = run(store, s)
    assert [a.status for a in attempts(store, result.cycle_id)] == ["ok", "ok"]
    assert len(server.requests("/v1/messages")) == 2


def test_canary_decoding_the_sdk_does_not_take_is_left_out_for_that_provider(
        tmp_path: Path, sqlite_url: str, server: FakeServer, store: Store) -> None:
    s = make_settings(tmp_path, sqlite_url,
                      [endpoint("ep", "anthropic", server.url, limits={"max_retries": 3})],
                      [canary("c-hot", decoding={"temperature": 0.9, "stop": ["END"]})])
    (a,) = attempts(store, run(store, s).cycle_id)
    assert (a.status, a.tries) == ("ok", 1)
    (seen,) = server.requests()
    assert seen.body is not None and "temperature" not in seen.body
    assert seen.body["stop_sequences"] == ["END"]


class _BuggyAdapter:
    """Stands in for a bug in an adapter: it fails before any request leaves."""

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, request: Request) -> Result:
        self.calls += 1
        raise TypeError("create() got an unexpected keyword argument 'temperature'")

    async def aclose(self) -> None:
        pass


def test_our_own_type_error_ends_the_run_loudly_and_is_never_the_endpoints_fault(
        tmp_path: Path, sqlite_url: str, server: FakeServer, store: Store) -> None:
    s = make_settings(tmp_path, sqlite_url,
                      [endpoint("ep", "openai", server.url,
                                limits={"max_retries": 3, "concurrency": 1})],
                      [canary("c-1", samples=3)])
    buggy = _BuggyAdapter()
    with pytest.raises(AuditorError) as info:
        run(store, s, options=RunOptions(backoff=FAST, adapters={"ep": buggy}))
    assert "'ep'" in str(info.value) and "TypeError" in str(info.value)
    assert buggy.calls == 1  # never retried, and the run stopped at the first
    rows = attempts(store)
    assert not [a for a in rows if a.status == "failed"]
    assert {a.status for a in rows} <= {"planned", "interrupted"}


def test_timeout_is_sent_once_when_the_endpoint_does_not_retry_timeouts(
        tmp_path: Path, sqlite_url: str, server: FakeServer, store: Store) -> None:
    limits = {"max_retries": 3, "timeout_seconds": 0.3}
    s = make_settings(tmp_path, sqlite_url, [
        endpoint("once", "openai", server.url, limits=limits | {"retry_timeouts": False}),
        endpoint("again", "http", server.url, limits=limits)],
        [canary("c-slow", "x fault=hang")])
    rows = attempts(store, run(store, s).cycle_id)
    tries = {a.endpoint_id: (a.status, a.error_class, a.tries) for a in rows}
    assert sorted(tries.values()) == [("failed", "timeout", 1), ("failed", "timeout", 4)]
    assert len(server.requests()) == 5
