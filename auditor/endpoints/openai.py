"""OpenAI chat completions through the official ``openai`` SDK (``max_retries=0``)."""

from __future__ import annotations

__all__ = ["OpenAIAdapter", "parse_chat_completion"]

from typing import Any

import openai

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

NO_KEY = "unused"  # sent when the endpoint names no key variable (local servers)


def chat_params(request: Request) -> dict[str, Any]:
    """The OpenAI chat-completions body for ``request`` (only the parameters given)."""
    params: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        **decoding_params("openai", request),
    }
    if request.logprobs:
        params["logprobs"] = True
        if request.top_logprobs:
            params["top_logprobs"] = request.top_logprobs
    return params


def _normalise_logprobs(content: Any) -> list[Any] | None:
    if not content:
        return None
    out = []
    for item in content:
        get = item.get if isinstance(item, dict) else lambda k, _i=item: getattr(_i, k, None)
        tops = get("top_logprobs") or []
        out.append({
            "token": get("token"),
            "logprob": get("logprob"),
            "top_logprobs": [
                {"token": t.get("token") if isinstance(t, dict) else t.token,
                 "logprob": t.get("logprob") if isinstance(t, dict) else t.logprob}
                for t in tops
            ],
        })
    return out


def parse_chat_completion(data: Any) -> dict[str, Any]:
    """Fields of an OpenAI chat completion (a dict); raises ProbeError when unusable."""
    if not isinstance(data, dict):
        raise ProbeError("bad_response", "response body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProbeError("bad_response", "response has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ProbeError("bad_response", "first choice has no message")
    text = message.get("content")
    if text is None:
        text = message.get("refusal") or ""
    if not isinstance(text, str):
        raise ProbeError("bad_response", "message content is not text")
    usage: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}
    logprobs: dict[str, Any] = (
        choice["logprobs"] if isinstance(choice.get("logprobs"), dict) else {})
    return {
        "text": text,
        "finish_reason": choice.get("finish_reason"),
        "reported_model": data.get("model"),
        "system_fingerprint": data.get("system_fingerprint"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "logprobs": _normalise_logprobs(logprobs.get("content")),
    }


class OpenAIAdapter:
    """Chat completions; asks for logprobs when the canary or the endpoint wants them."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._key = endpoint.api_key()
        self._client = openai.AsyncOpenAI(
            api_key=self._key or NO_KEY,
            base_url=base_url(endpoint),
            max_retries=0,
            timeout=endpoint.limits.timeout_seconds,
        )

    async def send(self, request: Request) -> Result:
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                **chat_params(request))
        except openai.APITimeoutError as exc:
            raise ProbeError("timeout", "request timed out") from exc
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise ProbeError("connection", redact(f"{type(cause).__name__}: {cause}",
                                                  self._key)) from exc
        except openai.APIStatusError as exc:
            raise ProbeError(
                classify_status(exc.status_code),
                redact(status_message(exc.status_code, exc.body, exc.message), self._key),
                http_status=exc.status_code, request_id=exc.request_id,
                headers=dict(exc.response.headers)) from exc
        except openai.APIResponseValidationError as exc:
            raise ProbeError("bad_response", redact(exc.message, self._key),
                             http_status=exc.status_code) from exc
        return result_from_body(raw.content, parse_chat_completion, raw.status_code,
                                raw.request_id, dict(raw.headers))

    async def aclose(self) -> None:
        await self._client.close()
