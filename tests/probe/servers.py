"""A real HTTP/1.1 server on loopback that speaks the OpenAI and Anthropic wire formats.

It runs an asyncio loop in a background thread (or, with ``python servers.py``, as its
own process for the benchmark) and injects faults on demand. A fault is chosen by a
directive in the last user message, so that it follows the canary whatever the order
of requests: ``fault=NAME`` (every time) or ``fault=NAME:N`` (the first N requests with
that prompt, then normal answers). Names:

``429`` (with ``Retry-After``), ``429ms`` (with ``retry-after-ms: 50``), ``500``, ``503``,
``400``, ``hang`` (never answers), ``reset`` (TCP reset), ``malformed`` (200, not JSON),
``truncated`` (200, JSON cut in half), ``trickle`` (one byte every 0.2 s), ``empty``
(200, JSON without choices).

Routes: ``POST /v1/chat/completions`` (OpenAI), ``POST /v1/messages`` (Anthropic),
``POST /custom/generate`` (a custom JSON API: ``{"output": {"text": ...}}``); a test may
add its own to ``routes``. ``peak`` is the most requests the server held at once; with
``serial`` it answers one request at a time, like a llama.cpp server with one slot.
"""

from __future__ import annotations

__all__ = ["FakeServer", "Seen"]

import asyncio
import hashlib
import json
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_FAULT = re.compile(r"fault=([a-z0-9]+)(?::(\d+))?")


@dataclass
class Seen:
    """One request as the server received it."""

    at: float
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class FakeServer:
    delay: float = 0.0
    serial: bool = False
    retry_after: str = "1"
    record: bool = True
    seen: list[Seen] = field(default_factory=list)
    routes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(
        default_factory=lambda: dict(ROUTES))
    peak: int = 0
    _in_flight: int = 0
    _one: asyncio.Lock = field(default_factory=asyncio.Lock)
    host: str = "127.0.0.1"
    port: int = 0
    _counts: dict[str, int] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.base_events.Server | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeServer:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, self.host, self.port, backlog=1024))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-llm-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path is None or s.path == path]

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()

    # -- HTTP ----------------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                if self.record:
                    with self._lock:
                        self.seen.append(Seen(time.monotonic(), path, headers, body))
                with self._lock:
                    self._in_flight += 1
                    self.peak = max(self.peak, self._in_flight)
                try:
                    if self.serial:
                        async with self._one:
                            keep = await self._respond(method, path, body, writer)
                    else:
                        keep = await self._respond(method, path, body, writer)
                finally:
                    with self._lock:
                        self._in_flight -= 1
                if not keep or headers.get("connection", "").lower() == "close":
                    writer.close()
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            writer.close()
        except asyncio.CancelledError:  # the server is shutting down
            writer.close()

    @staticmethod
    def _write(writer: asyncio.StreamWriter, status: int, body: bytes,
               headers: dict[str, str] | None = None, length: int | None = None) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
                  500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "X")
        lines = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
                 f"content-length: {len(body) if length is None else length}",
                 "x-request-id: req_" + hashlib.sha256(body).hexdigest()[:12],
                 "request-id: req_" + hashlib.sha256(body).hexdigest()[:12]]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _fault(self, body: dict[str, Any] | None) -> str | None:
        prompt = _last_user_text(body)
        m = _FAULT.search(prompt)
        if not m:
            return None
        name, limit = m.group(1), m.group(2)
        with self._lock:
            n = self._counts.get(prompt, 0)
            self._counts[prompt] = n + 1
        if limit is not None and n >= int(limit):
            return None
        return name

    async def _respond(self, method: str, path: str, body: dict[str, Any] | None,
                       writer: asyncio.StreamWriter) -> bool:
        if self.delay:
            await asyncio.sleep(self.delay)
        if method != "POST" or path not in self.routes:
            self._write(writer, 404, b'{"error":{"message":"no such route"}}')
            return True
        fault = self._fault(body)
        if fault in ("429", "429ms"):
            extra = ({"retry-after": self.retry_after} if fault == "429"
                     else {"retry-after-ms": "50"})
            self._write(writer, 429, b'{"error":{"message":"slow down","type":"rate_limit"}}',
                        extra)
            return True
        if fault in ("500", "503", "400"):
            self._write(writer, int(fault), b'{"error":{"message":"injected","type":"x"}}')
            return True
        if fault == "hang":
            await asyncio.sleep(3600)
            return False
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if fault == "malformed":
            self._write(writer, 200, b"<html>this is not json</html>")
            return True
        answer = self.routes[path](body or {})
        data = json.dumps(answer).encode()
        if fault == "empty":
            self._write(writer, 200, b'{"id":"x","object":"chat.completion","model":"m"}')
            return True
        if fault == "truncated":
            self._write(writer, 200, data[: len(data) // 2])
            return True
        if fault == "trickle":
            self._write(writer, 200, b"", length=len(data))
            for i in range(len(data)):
                writer.write(data[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.2)
            return True
        self._write(writer, 200, data)
        await writer.drain()
        return True


def _last_user_text(body: dict[str, Any] | None) -> str:
    if not body:
        return ""
    if isinstance(body.get("prompt"), str):
        return str(body["prompt"])
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            content = msg.get("content")
            if isinstance(content, list):
                return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
            return str(content)
    return ""


def _answer_text(body: dict[str, Any]) -> str:
    digest = hashlib.sha256(_last_user_text(body).encode()).hexdigest()[:8]
    return f"answer {digest} t={body.get('temperature')}"


def _openai(body: dict[str, Any]) -> dict[str, Any]:
    text = _answer_text(body)
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": text}}
    if body.get("logprobs"):
        k = int(body.get("top_logprobs") or 0)
        choice["logprobs"] = {"content": [
            {"token": tok, "logprob": -0.5, "bytes": list(tok.encode()),
             "top_logprobs": [{"token": f"{tok}{j}", "logprob": -0.5 - j, "bytes": None}
                              for j in range(k)]}
            for tok in text.split()
        ]}
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 1,
            "model": str(body.get("model", "?")) + "-served", "system_fingerprint": "fp_test",
            "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 3,
                      "total_tokens": prompt_tokens + 3}}


def _anthropic(body: dict[str, Any]) -> dict[str, Any]:
    return {"id": "msg_test", "type": "message", "role": "assistant",
            "model": str(body.get("model", "?")) + "-served",
            "content": [{"type": "text", "text": _answer_text(body)}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 7, "output_tokens": 3}}


def _custom(body: dict[str, Any]) -> dict[str, Any]:
    return {"output": {"text": _answer_text(body), "why": "done"},
            "meta": {"model": "custom-1", "in": 5, "out": 3}}


ROUTES = {
    "/v1/chat/completions": _openai,
    "/v1/messages": _anthropic,
    "/custom/generate": _custom,
}


if __name__ == "__main__":  # standalone, for the benchmark: prints the port, serves forever
    srv = FakeServer(record=False, port=int(sys.argv[1]) if len(sys.argv) > 1 else 0).start()
    print(srv.port, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()
