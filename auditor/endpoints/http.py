"""Plain ``httpx``: OpenAI-compatible servers (vLLM, llama.cpp, Ollama) and custom JSON APIs.

Without a ``request_template`` in ``[endpoints.http]`` the request is an OpenAI chat
completion and the answer is read as one. With one, the body is the template with its
``{{placeholders}}`` filled (the names are checked when the config loads), and the answer
is read at the configured dotted paths; an OpenAI-shaped answer (``choices.…``) gives its
``usage`` where no token paths are configured.
"""

from __future__ import annotations

__all__ = ["HttpAdapter", "extract", "render_template"]

import json
import re
from typing import Any

import httpx2 as httpx  # the maintained successor of httpx, also used by the SDKs

from auditor.config import PLACEHOLDER, Endpoint, HttpTemplate
from auditor.endpoints.base import (
    ProbeError,
    Request,
    Result,
    classify_status,
    redact,
    result_from_body,
)
from auditor.endpoints.openai import chat_params, parse_chat_completion
from auditor.errors import AuditorError, Problem

_OPENAI_TEXT = "choices.0.message.content"
_OPENAI_USAGE = ("usage.prompt_tokens", "usage.completion_tokens")


def _values(request: Request, api_key: str | None) -> dict[str, Any]:
    system = "\n\n".join(m["content"] for m in request.messages if m["role"] == "system")
    users = [m["content"] for m in request.messages if m["role"] == "user"]
    return {
        "messages": request.messages,
        "prompt": users[-1] if users else "",
        "system": system,
        "model": request.model,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "seed": request.seed,
        "stop": request.stop,
        "api_key": api_key,
    }


def render_template(template: Any, values: dict[str, Any]) -> Any:
    """``template`` with ``{{name}}`` placeholders replaced (whole strings keep the type)."""
    if isinstance(template, dict):
        return {k: render_template(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [render_template(v, values) for v in template]
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template.strip())
        if whole and whole.group(1) in values:
            return values[whole.group(1)]

        def text(m: re.Match[str]) -> str:
            if m.group(1) not in values:
                return m.group(0)
            value = values[m.group(1)]
            return "" if value is None else str(value)

        return PLACEHOLDER.sub(text, template)
    return template


def extract(data: Any, path: str) -> Any:
    """The value at a dotted path (``choices.0.message.content``); KeyError when absent."""
    current = data
    for part in path.split("."):
        if isinstance(current, list) and part.lstrip("-").isdigit():
            current = current[int(part)]
        elif isinstance(current, dict) and part in current:
            current = current[part]
        else:
            raise KeyError(path)
    return current


def _optional(data: Any, path: str | None) -> Any:
    if path is None:
        return None
    try:
        return extract(data, path)
    except (KeyError, IndexError):
        return None


class HttpAdapter:
    def __init__(self, endpoint: Endpoint) -> None:
        if not endpoint.base_url:
            raise AuditorError(
                f"endpoint {endpoint.name!r}: provider 'http' needs base_url",
                [Problem("no base_url given",
                         fix="set base_url, e.g. http://127.0.0.1:8000/v1 for vLLM or llama.cpp")])
        self._key = endpoint.api_key()
        self._tpl = endpoint.http or HttpTemplate()
        fixed = {"api_key": self._key, "model": endpoint.model}
        headers = {"content-type": "application/json"}
        headers.update(render_template(self._tpl.headers, fixed))
        # the key goes where the template puts it; else in Authorization: Bearer
        keyed = "api_key" in PLACEHOLDER.findall(
            json.dumps([self._tpl.request_template, self._tpl.headers]))
        if self._key and not keyed:
            headers["authorization"] = f"Bearer {self._key}"
        conc = endpoint.limits.concurrency
        path = render_template(self._tpl.path, fixed)
        self._url = endpoint.base_url.rstrip("/") + "/" + path.lstrip("/")
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=endpoint.limits.timeout_seconds,
            limits=httpx.Limits(max_connections=conc, max_keepalive_connections=conc),
        )

    def _body(self, request: Request) -> Any:
        if self._tpl.request_template is None:
            return chat_params(request)
        return render_template(self._tpl.request_template, _values(request, self._key))

    def _parse(self, data: Any) -> dict[str, Any]:
        tpl = self._tpl
        if tpl.response_path == _OPENAI_TEXT:
            fields = parse_chat_completion(data)
        else:
            try:
                text = extract(data, tpl.response_path)
            except (KeyError, IndexError):
                raise ProbeError("bad_response",
                                 f"no value at response_path {tpl.response_path!r}") from None
            if not isinstance(text, str):
                raise ProbeError("bad_response", f"value at {tpl.response_path!r} is not text")
            fields = {"text": text, "finish_reason": None, "reported_model": None,
                      "system_fingerprint": None, "prompt_tokens": None,
                      "completion_tokens": None, "logprobs": None}
        openai_shaped = tpl.response_path.startswith("choices.")
        prompt_path, completion_path = _OPENAI_USAGE if openai_shaped else (None, None)
        for name, path in (("finish_reason", tpl.finish_reason_path),
                           ("reported_model", tpl.model_path),
                           ("prompt_tokens", tpl.prompt_tokens_path or prompt_path),
                           ("completion_tokens", tpl.completion_tokens_path or completion_path)):
            value = _optional(data, path)
            if name.endswith("_tokens"):
                value = value if isinstance(value, int) else fields[name]
            if value is not None:
                fields[name] = value
        return fields

    async def send(self, request: Request) -> Result:
        content = json.dumps(self._body(request), ensure_ascii=False).encode("utf-8")
        try:
            resp = await self._client.post(self._url, content=content)
        except httpx.TimeoutException as exc:
            raise ProbeError("timeout", "request timed out") from exc
        except httpx.TransportError as exc:
            raise ProbeError("connection", redact(f"{type(exc).__name__}: {exc}",
                                                  self._key)) from exc
        headers = dict(resp.headers)
        request_id = headers.get("x-request-id") or headers.get("request-id")
        if resp.status_code >= 400:
            raise ProbeError(classify_status(resp.status_code),
                             redact(resp.text, self._key), http_status=resp.status_code,
                             request_id=request_id, headers=headers)
        return result_from_body(resp.content, self._parse, resp.status_code, request_id,
                                headers)

    async def aclose(self) -> None:
        await self._client.aclose()
