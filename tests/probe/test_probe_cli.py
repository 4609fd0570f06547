"""``auditor probe --once`` and ``auditor fingerprint`` from the command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from probe.helpers import canary, write_canaries
from probe.servers import FakeServer
from sqlalchemy import select

from auditor.store import ledger, open_store
from auditor.store.models import Cycle, Endpoint, Response

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, server: FakeServer) -> Path:
    write_canaries(tmp_path / "canaries", [canary("c-one", samples=2),
                                           canary("c-bad", "x fault=500")])
    endpoints = ""
    for name, role, provider in (("prot", "protected", "anthropic"),
                                 ("susp", "suspect", "openai")):
        url = server.url if provider == "anthropic" else server.url + "/v1"
        endpoints += f"""
[[endpoints]]
name = "{name}"
provider = "{provider}"
model = "m-{name}"
role = "{role}"
base_url = "{url}"
[endpoints.limits]
max_retries = 0
requests_per_minute = 100000
"""
    path = tmp_path / "auditor.toml"
    path.write_text('database_url = "sqlite:///auditor.db"\ncanaries_dir = "canaries"\n'
                    + endpoints)
    return path


def _cli(config: Path, *args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "auditor", "--config", str(config), *args],
                          cwd=config.parent, env=env, capture_output=True, text=True, timeout=120)


def test_probe_once_runs_a_cycle_and_prints_a_table_per_endpoint(tmp_path: Path,
                                                                 server: FakeServer) -> None:
    result = _cli(_config(tmp_path, server), "probe", "--once")
    assert result.returncode == 0, result.stderr
    for text in ("prot", "susp", "server_error 1", "p95"):
        assert text in result.stdout
    st = open_store(f"sqlite:///{tmp_path / 'auditor.db'}")
    try:
        with st.session() as session:
            assert len(list(session.scalars(select(Response)))) == 4
            assert ledger.verify(session).ok
    finally:
        st.close()


def test_fingerprint_probes_only_protected_endpoints_in_a_fingerprint_cycle(
        tmp_path: Path, server: FakeServer) -> None:
    result = _cli(_config(tmp_path, server), "fingerprint")
    assert result.returncode == 0, result.stderr
    st = open_store(f"sqlite:///{tmp_path / 'auditor.db'}")
    try:
        with st.session() as session:
            (cycle,) = session.scalars(select(Cycle))
            names = set(session.scalars(select(Endpoint.name).join(
                Response, Response.endpoint_id == Endpoint.id)))
        assert cycle.kind == "fingerprint" and cycle.status == "done"
        assert names == {"prot"}
    finally:
        st.close()


def test_probe_without_once_or_resume_is_a_user_error(tmp_path: Path,
                                                      server: FakeServer) -> None:
    result = _cli(_config(tmp_path, server), "probe")
    assert result.returncode == 2
    assert "--once" in result.stderr and "Traceback" not in result.stderr


def _words(text: str) -> str:
    return " ".join(text.split())


def test_at_80_columns_the_summary_keeps_the_error_class_and_message(
        tmp_path: Path, server: FakeServer) -> None:
    result = _cli(_config(tmp_path, server), "probe", "--once", columns=80)
    assert result.returncode == 0, result.stderr
    out = _words(result.stdout)
    assert "…" not in result.stdout
    assert "server_error 1" in out
    assert "susp: last error server_error: HTTP 500: injected" in out
    assert f"({server.url}/v1)" in out


def test_endpoint_without_any_answer_names_class_message_url_and_exits_non_zero(
        tmp_path: Path, server: FakeServer) -> None:
    config = _config(tmp_path, server)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    config.write_text(config.read_text().replace(f'base_url = "{server.url}"\n',
                                                 f'base_url = "{closed}"\n'))
    result = _cli(config, "fingerprint")
    assert result.returncode == 1, result.stdout + result.stderr
    out = _words(result.stdout)
    assert "prot: last error connection: ConnectError" in out and f"({closed})" in out
    assert "no successful answer from prot" in _words(result.stderr)
    assert "Traceback" not in result.stderr
