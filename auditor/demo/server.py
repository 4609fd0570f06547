"""An OpenAI-compatible chat-completions server on loopback, for the offline demo.

Serves any number of models on one port (``model`` in the request picks one) and can
misbehave on purpose for one of them: 429 with Retry-After and hanging requests.
"""

from __future__ import annotations

__all__ = ["Faults", "ModelServer"]

import hashlib
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Generate = Callable[[str, random.Random, float, int], str]


@dataclass
class Faults:
    """How often a model misbehaves: rate-limited (429) or hanging past the client timeout."""

    rate_limited: float = 0.0
    hang: float = 0.0
    hang_seconds: float = 3.0
    retry_after: float = 0.2


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout, reset) is part of the show, not an error."""


class ModelServer:
    def __init__(
        self, models: dict[str, Generate], faults: dict[str, Faults] | None = None, seed: int = 0
    ) -> None:
        self.models = models
        self.faults = faults or {}
        self.seed = seed
        self.asked: dict[tuple[str, str], int] = {}
        self.lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _draws(self, model: str, prompt: str) -> tuple[float, int]:
        """The fault roll and the sampling seed of this request: the n-th request for a
        (model, prompt) always gets the n-th draws, whatever order concurrent requests
        arrive in, so a run's answers are the same on every machine."""
        with self.lock:
            n = self.asked[(model, prompt)] = self.asked.get((model, prompt), 0) + 1
        digest = hashlib.sha256(f"{self.seed}\x00{model}\x00{prompt}\x00{n}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64, int.from_bytes(digest[8:16], "big")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16  # one write per response (no Nagle / delayed-ACK stalls)
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(
                self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200,
                        {
                            "object": "list",
                            "data": [
                                {"id": m, "object": "model", "owned_by": "demo"}
                                for m in server.models
                            ],
                        },
                    )
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    req = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send(400, {"error": {"message": "bad JSON"}})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                model = req.get("model")
                gen = server.models.get(model)
                if gen is None:
                    self._send(404, {"error": {"message": f"model {model!r} not found"}})
                    return
                with server.lock:
                    server.requests[model] = server.requests.get(model, 0) + 1
                prompt = "\n".join(
                    m.get("content", "") for m in req.get("messages", []) if m.get("role") == "user"
                )
                roll, sample_seed = server._draws(model, prompt)
                fault = server.faults.get(model)
                if fault is not None:
                    if roll < fault.rate_limited:
                        self._send(
                            429,
                            {"error": {"message": "rate limited", "type": "rate_limit"}},
                            {"Retry-After": f"{fault.retry_after:g}"},
                        )
                        return
                    if roll < fault.rate_limited + fault.hang:
                        time.sleep(fault.hang_seconds)
                seed = req.get("seed")
                rng = random.Random(seed if seed is not None else sample_seed)
                temperature = float(
                    req.get("temperature") if req.get("temperature") is not None else 1.0
                )
                max_tokens = int(req.get("max_tokens") or req.get("max_completion_tokens") or 200)
                text = gen(prompt, rng, temperature, max_tokens)
                words = len(text.split())
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": model,
                        "system_fingerprint": f"fp_{abs(hash(model)) % 10**8:08d}",
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": text},
                            }
                        ],
                        "usage": {
                            "prompt_tokens": len(prompt.split()),
                            "completion_tokens": words,
                            "total_tokens": len(prompt.split()) + words,
                        },
                    },
                    {"x-request-id": f"req_{uuid.uuid4().hex[:16]}"},
                )

        return Handler
