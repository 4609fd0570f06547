"""``auditor serve`` as a process: binds to loopback by default and serves the portal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx


def test_serve_binds_to_loopback_and_answers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env["AUDITOR_DATABASE_URL"] = f"sqlite:///{tmp_path / 'a.db'}"
    env["AUDITOR_WEB__PORT"] = "0"
    proc = subprocess.Popen([sys.executable, "-m", "auditor", "serve"], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        url, seen = None, []
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            m = re.search(r"running on (http://[\d.:]+)", line)
            url = m.group(1) if m else None
        assert url and url.startswith("http://127.0.0.1:"), url
        r = httpx.get(f"{url}/signin", timeout=30)
        assert r.status_code == 200 and "Sign in" in r.text
        assert "content-security-policy" in r.headers and "server" not in r.headers
    finally:
        proc.terminate()
        proc.wait(30)
    # every line the portal wrote is one JSON record, the request's access line included
    assert proc.stderr is not None
    lines = "".join(seen).splitlines() + proc.stderr.read().splitlines()
    records = [json.loads(line) for line in lines if line]
    assert any("GET /signin" in r["msg"] and "200" in r["msg"] for r in records), records
