"""Each adapter against a real loopback server, through the real SDKs and httpx."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from probe.servers import FakeServer

from auditor.canary import Canary
from auditor.config import Endpoint
from auditor.endpoints import ProbeError, Request, Result, make_adapter, request_for
from auditor.errors import AuditorError

PROVIDERS = ["openai", "anthropic", "http"]


def _endpoint(provider: str, url: str, **extra: Any) -> Endpoint:
    base = url if provider == "anthropic" else url + "/v1"
    limits = {"timeout_seconds": 1.0, **extra.pop("limits", {})}
    return Endpoint(name="ep", provider=provider, model="m", role="suspect", base_url=base,
                    limits=limits, **extra)


def _send(ep: Endpoint, request: Request) -> Result:
    async def go() -> Result:
        adapter = make_adapter(ep)
        try:
            return await adapter.send(request)
        finally:
            await adapter.aclose()

    return asyncio.run(go())


def _req(prompt: str = "hello there", **kw: Any) -> Request:
    return Request(messages=[{"role": "user", "content": prompt}], model="m", max_tokens=5, **kw)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_adapter_reads_text_usage_model_and_request_id(server: FakeServer, provider: str) -> None:
    result = _send(_endpoint(provider, server.url), _req())
    assert result.text.startswith("answer ")
    assert result.reported_model == "m-served"
    assert result.completion_tokens == 3 and result.prompt_tokens
    assert result.request_id and result.request_id.startswith("req_")
    assert result.finish_reason in {"stop", "end_turn"}
    assert result.raw_body.startswith(b"{")


@pytest.mark.parametrize(
    ("fault", "error_class", "status"),
    [("429", "rate_limited", 429), ("500", "server_error", 500), ("503", "server_error", 503),
     ("400", "client_error", 400), ("hang", "timeout", None), ("reset", "connection", None),
     ("malformed", "bad_response", 200), ("truncated", "bad_response", 200),
     ("empty", "bad_response", 200)],
)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_adapter_classifies_each_fault(server: FakeServer, provider: str, fault: str,
                                       error_class: str, status: int | None) -> None:
    with pytest.raises(ProbeError) as info:
        _send(_endpoint(provider, server.url, limits={"timeout_seconds": 0.5}),
              _req(f"q fault={fault}"))
    assert info.value.error_class == error_class
    assert info.value.http_status == status


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rate_limited_error_carries_the_retry_after_header(server: FakeServer,
                                                           provider: str) -> None:
    with pytest.raises(ProbeError) as info:
        _send(_endpoint(provider, server.url), _req("q fault=429"))
    assert info.value.headers.get("retry-after") == "1"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_refused_connection_is_a_connection_error(provider: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ProbeError) as info:
        _send(_endpoint(provider, f"http://127.0.0.1:{port}"), _req())
    assert info.value.error_class == "connection"


@pytest.mark.parametrize("provider", ["openai", "http"])
def test_logprob_canary_asks_for_top_logprobs_and_gets_them(server: FakeServer,
                                                            provider: str) -> None:
    ep = _endpoint(provider, server.url)
    canary = Canary(id="lp-x", kind="logprob", prompt="Once upon a", expect={"top_logprobs": 3})
    result = _send(ep, request_for(ep, canary))
    body = server.requests()[-1].body
    assert body is not None and body["logprobs"] is True and body["top_logprobs"] == 3
    assert result.logprobs is not None
    assert len(result.logprobs[0]["top_logprobs"]) == 3


def test_endpoint_logprobs_flag_asks_for_logprobs_on_any_canary(server: FakeServer) -> None:
    ep = _endpoint("openai", server.url, logprobs=True)
    canary = Canary(id="ft-x", kind="free_text", prompt="Hi")
    _send(ep, request_for(ep, canary))
    body = server.requests()[-1].body
    assert body is not None and body["logprobs"] is True and "top_logprobs" not in body


def test_free_text_canary_on_plain_endpoint_asks_for_no_logprobs(server: FakeServer) -> None:
    ep = _endpoint("openai", server.url)
    _send(ep, request_for(ep, Canary(id="ft-x", kind="free_text", prompt="Hi")))
    body = server.requests()[-1].body
    assert body is not None and "logprobs" not in body


def test_canary_decoding_overrides_the_endpoint_decoding(server: FakeServer) -> None:
    ep = _endpoint("openai", server.url, decoding={"temperature": 0.2, "max_tokens": 50,
                                                    "seed": 7})
    canary = Canary(id="ft-x", kind="free_text", prompt="Hi",
                    decoding={"temperature": 1.0, "max_tokens": 5})
    _send(ep, request_for(ep, canary))
    body = server.requests()[-1].body
    assert body is not None
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (1.0, 5, 7)


def test_anthropic_lifts_the_system_message_out(server: FakeServer) -> None:
    ep = _endpoint("anthropic", server.url)
    canary = Canary(id="ft-x", kind="free_text", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    _send(ep, request_for(ep, canary))
    body = server.requests()[-1].body
    assert body is not None and body["system"] == "Be brief."
    assert [m["role"] for m in body["messages"]] == ["user"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_api_key_comes_from_the_named_variable(server: FakeServer, provider: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PROBE_KEY", "sk-secret-123")
    _send(_endpoint(provider, server.url, api_key_env="TEST_PROBE_KEY"), _req())
    headers = server.requests()[-1].headers
    assert "sk-secret-123" in (headers.get("authorization", "") + headers.get("x-api-key", ""))


def test_missing_key_variable_is_a_user_error_naming_it() -> None:
    ep = Endpoint(name="ep", provider="openai", model="m", role="suspect",
                  api_key_env="TEST_PROBE_UNSET_KEY")
    with pytest.raises(AuditorError, match="TEST_PROBE_UNSET_KEY"):
        make_adapter(ep)


def test_http_template_fills_placeholders_and_reads_configured_paths(server: FakeServer) -> None:
    ep = Endpoint(name="ep", provider="http", model="m7", role="suspect", base_url=server.url,
                  http={"path": "/custom/generate",
                        "request_template": {"input": "{{prompt}}", "model": "{{model}}",
                                             "params": {"max_new": "{{max_tokens}}"},
                                             "tag": "run-{{model}}"},
                        "response_path": "output.text", "finish_reason_path": "output.why",
                        "model_path": "meta.model", "prompt_tokens_path": "meta.in",
                        "completion_tokens_path": "meta.out"})
    result = _send(ep, _req("hello custom"))
    body = server.requests()[-1].body
    assert body == {"input": "hello custom", "model": "m", "params": {"max_new": 5},
                    "tag": "run-m"}
    assert result.text.startswith("answer ")
    assert (result.finish_reason, result.reported_model) == ("done", "custom-1")
    assert (result.prompt_tokens, result.completion_tokens) == (5, 3)


def test_http_template_with_a_wrong_response_path_is_a_bad_response(server: FakeServer) -> None:
    ep = Endpoint(name="ep", provider="http", model="m", role="suspect", base_url=server.url,
                  http={"path": "/custom/generate", "request_template": {"input": "{{prompt}}"},
                        "response_path": "output.nothing"})
    with pytest.raises(ProbeError) as info:
        _send(ep, _req())
    assert info.value.error_class == "bad_response"


def test_sdk_clients_never_retry(server: FakeServer) -> None:
    for provider in ("openai", "anthropic"):
        server.reset()
        with pytest.raises(ProbeError):
            _send(_endpoint(provider, server.url), _req(f"{provider} fault=503"))
        assert len(server.requests()) == 1
