"""Anthropic messages API through the official ``anthropic`` SDK (``max_retries=0``)."""

from __future__ import annotations

__all__ = ["AnthropicAdapter", "message_params", "parse_message"]

from typing import Any

import anthropic

from auditor.config import Endpoint
from auditor.endpoints.base import (
    ProbeError,
    Request,
    Result,
    base_url,
    classify_status,
    decoding_params,
    redact,
    result_from_body,
    status_message,
)

NO_KEY = "unused"


def message_params(request: Request) -> dict[str, Any]:
    """The messages-API body: system messages lifted out, decoding options the installed
    SDK takes (``stop`` as ``stop_sequences``)."""
    system = "\n\n".join(m["content"] for m in request.messages if m["role"] == "system")
    params: dict[str, Any] = {
        "model": request.model,
        "messages": [m for m in request.messages if m["role"] != "system"],
        **decoding_params("anthropic", request),
    }
    if system:
        params["system"] = system
    if "temperature" in params:
        params["temperature"] = min(params["temperature"], 1.0)  # the API's range is [0, 1]
    return params


def parse_message(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise ProbeError("bad_response", "response has no content list")
    texts = [b.get("text", "") for b in data["content"]
             if isinstance(b, dict) and b.get("type") == "text"]
    usage: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}
    return {
        "text": "".join(str(t) for t in texts),
        "finish_reason": data.get("stop_reason"),
        "reported_model": data.get("model"),
        "system_fingerprint": None,
        "prompt_tokens": usage.get("input_tokens"),
        "completion_tokens": usage.get("output_tokens"),
        "logprobs": None,
    }


class AnthropicAdapter:
    """Messages API. It returns no log-probabilities; seeds are not supported."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._key = endpoint.api_key()
        self._client = anthropic.AsyncAnthropic(
            api_key=self._key or NO_KEY,
            base_url=base_url(endpoint),
            max_retries=0,
            timeout=endpoint.limits.timeout_seconds,
        )

    async def send(self, request: Request) -> Result:
        try:
            raw = await self._client.messages.with_raw_response.create(**message_params(request))
        except anthropic.APITimeoutError as exc:
            raise ProbeError("timeout", "request timed out") from exc
        except anthropic.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise ProbeError("connection", redact(f"{type(cause).__name__}: {cause}",
                                                  self._key)) from exc
        except anthropic.APIStatusError as exc:
            raise ProbeError(
                classify_status(exc.status_code),
                redact(status_message(exc.status_code, exc.body, exc.message), self._key),
                http_status=exc.status_code, request_id=exc.response.headers.get("request-id"),
                headers=dict(exc.response.headers)) from exc
        except anthropic.APIResponseValidationError as exc:
            raise ProbeError("bad_response", redact(exc.message, self._key),
                             http_status=exc.status_code) from exc
        headers = dict(raw.headers)
        request_id = headers.get("request-id")
        try:
            body = await raw.read()
        except anthropic.APIConnectionError as exc:
            raise ProbeError("connection", "body cut off", http_status=raw.status_code,
                             request_id=request_id, headers=headers) from exc
        except Exception as exc:  # httpx2 transport errors while reading the body
            kind = "timeout" if "Timeout" in type(exc).__name__ else "connection"
            raise ProbeError(kind, f"{type(exc).__name__} while reading the body",
                             http_status=raw.status_code, request_id=request_id,
                             headers=headers) from exc
        return result_from_body(body, parse_message, raw.status_code, request_id, headers)

    async def aclose(self) -> None:
        await self._client.close()
