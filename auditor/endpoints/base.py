"""What every endpoint adapter shares: the request, the result, the error, the Protocol.

An adapter makes exactly one HTTP request per ``send`` (no retries: the probe loop owns
them) and either returns a :class:`Result` or raises :class:`ProbeError` carrying the
error class that is recorded with the attempt.
"""

from __future__ import annotations

__all__ = [
    "ERROR_CLASSES",
    "RETRYABLE",
    "Adapter",
    "ProbeError",
    "Request",
    "Result",
    "base_url",
    "classify_status",
    "decoding_params",
    "request_for",
    "result_from_body",
]

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol

from auditor.canary import Canary
from auditor.config import Endpoint
from auditor.sdk import DECODING, accepted

log = logging.getLogger("auditor.endpoints")
ERROR_CLASSES = (
    "timeout",
    "rate_limited",
    "server_error",
    "client_error",
    "connection",
    "bad_response",
    "budget",
    "interrupted",
    "config",
)
RETRYABLE = frozenset({"timeout", "rate_limited", "server_error", "connection", "bad_response"})


DEFAULT_BASE_URL = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}


def base_url(endpoint: Endpoint) -> str:
    """Where the endpoint's requests go: its ``base_url``, else the SDK's default."""
    return endpoint.base_url or DEFAULT_BASE_URL.get(endpoint.provider, "(no base_url)")


@dataclass(frozen=True)
class Request:
    """One canary sample, ready for any wire protocol."""

    messages: list[dict[str, str]]
    model: str
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None

    def estimated_tokens(self) -> int:
        """Prompt tokens (about four characters each) plus the most the answer may take."""
        chars = sum(len(m["content"]) for m in self.messages)
        return chars // 4 + 4 * len(self.messages) + self.max_tokens


@dataclass
class Result:
    """What came back from one successful request."""

    text: str
    raw_body: bytes
    http_status: int = 200
    finish_reason: str | None = None
    reported_model: str | None = None
    system_fingerprint: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: list[Any] | None = None
    request_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


class ProbeError(Exception):
    """A request that did not yield a usable answer, with the class we record."""

    def __init__(
        self,
        error_class: str,
        message: str,
        *,
        http_status: int | None = None,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        assert error_class in ERROR_CLASSES, error_class
        super().__init__(message)
        self.error_class = error_class
        self.message = message
        self.http_status = http_status
        self.request_id = request_id
        self.headers: Mapping[str, str] = headers or {}

    @property
    def retryable(self) -> bool:
        return self.error_class in RETRYABLE


def classify_status(status: int) -> str:
    """HTTP status of a failed request -> error class."""
    if status == 429:
        return "rate_limited"
    if status == 408:
        return "timeout"
    if status >= 500:
        return "server_error"
    return "client_error"


class Adapter(Protocol):
    """One wire protocol. ``send`` makes one request; it never retries."""

    async def send(self, request: Request) -> Result: ...

    async def aclose(self) -> None: ...


def request_for(endpoint: Endpoint, canary: Canary) -> Request:
    """The request for ``canary`` on ``endpoint``: endpoint decoding, canary overrides."""
    d, o = endpoint.decoding, canary.decoding
    wants_logprobs = canary.kind == "logprob" or endpoint.logprobs
    top = canary.expect.get("top_logprobs") if canary.kind == "logprob" else None
    return Request(
        messages=canary.chat(),
        model=endpoint.model,
        max_tokens=o.max_tokens if o.max_tokens is not None else d.max_tokens,
        temperature=o.temperature if o.temperature is not None else d.temperature,
        top_p=o.top_p if o.top_p is not None else d.top_p,
        seed=o.seed if o.seed is not None else d.seed,
        stop=o.stop if o.stop is not None else d.stop,
        logprobs=wants_logprobs,
        top_logprobs=int(top) if top else None,
    )


def decoding_params(provider: str, request: Request) -> dict[str, Any]:
    """The request's decoding options under the names ``provider``'s SDK gives them.

    Only options the installed SDK takes are sent. The config rejects others on the
    endpoint, so one here came from a canary's override (written for every endpoint):
    it is left out for this provider, whose default applies, and logged once.
    """
    takes = accepted(provider) or {}
    params: dict[str, Any] = {}
    for option in DECODING[provider]:
        value = getattr(request, option)
        if value is None:
            continue
        if option in takes:
            params[takes[option]] = value
        else:
            _left_out(provider, option)
    return params


@cache
def _left_out(provider: str, option: str) -> None:
    log.warning("decoding_option_left_out", extra={"provider": provider, "option": option})


def result_from_body(
    body: bytes,
    parse: Callable[[Any], dict[str, Any]],
    http_status: int,
    request_id: str | None,
    headers: dict[str, str],
) -> Result:
    """Parses a 2xx body into a Result; an unusable body is a ``bad_response`` that keeps
    the status, request id and headers of the exchange."""
    try:
        fields = parse(json.loads(body))
    except ValueError as exc:
        raise ProbeError("bad_response", f"unreadable body: {type(exc).__name__}",
                         http_status=http_status, request_id=request_id,
                         headers=headers) from exc
    except ProbeError as exc:
        exc.http_status, exc.request_id, exc.headers = http_status, request_id, headers
        raise
    return Result(raw_body=body, http_status=http_status, request_id=request_id,
                  headers=headers, **fields)


def status_message(status: int, body: object, fallback: str) -> str:
    """``HTTP <status>: <the server's own message>``, the same whatever SDK release
    formatted its exception: the message is read from an ``{"error": {"message": ...}}``
    (or ``{"message": ...}``) body; otherwise the SDK's text."""
    err = body.get("error", body) if isinstance(body, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    return f"HTTP {status}: {message}" if isinstance(message, str) else fallback


def redact(message: str, secret: str | None) -> str:
    """An error message safe to store: the key removed, the length bounded."""
    if secret:
        message = message.replace(secret, "***")
    return message[:2000]
