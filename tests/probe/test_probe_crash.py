"""A probe process killed mid-cycle (SIGKILL) resumes: every attempt completes exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from probe.helpers import canary, write_canaries
from probe.servers import FakeServer
from sqlalchemy import func, select

from auditor.errors import AuditorError
from auditor.store import ledger, open_store
from auditor.store.models import Attempt, Response

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, db_url: str, server: FakeServer, samples: int) -> Path:
    write_canaries(tmp_path / "canaries", [canary("c-crash", "survive this", samples=samples),
                                           canary("c-other", "and this", samples=samples)])
    path = tmp_path / "auditor.toml"
    path.write_text(f"""
database_url = "{db_url}"
canaries_dir = "canaries"

[[endpoints]]
name = "crashy"
provider = "openai"
model = "m"
role = "suspect"
base_url = "{server.url}/v1"
[endpoints.limits]
requests_per_minute = 1000000
concurrency = 4
timeout_seconds = 10
max_retries = 0
""")
    return path


def _cli(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "auditor", "--config", str(config), *args],
                            cwd=config.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _count(store, *where) -> int:  # type: ignore[no-untyped-def]
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(Attempt).where(*where)) or 0)


def test_sigkill_mid_cycle_then_resume_completes_each_attempt_exactly_once(
        tmp_path: Path, db_url: str) -> None:
    server = FakeServer(delay=0.01).start()
    try:
        config = _config(tmp_path, db_url, server, samples=100)
        if db_url.startswith("postgresql"):
            open_store(db_url, migrate=True).close()
        proc = _cli(config, "probe", "--once")
        store = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"probe ended before it was killed:\n{proc.stdout.read()}")
            if store is None and (db_url.startswith("postgresql") or
                                  (tmp_path / "auditor.db").exists()):
                try:
                    store = open_store(db_url, migrate=False)
                except AuditorError:  # the probe is still migrating the new database
                    store = None
            try:
                if store is not None and _count(store, Attempt.status == "ok") >= 30:
                    break
            except Exception:  # the schema may not be there yet
                pass
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert store is not None
        total = _count(store)
        ok_before = _count(store, Attempt.status == "ok")
        assert total == 200 and 30 <= ok_before < total
        server.reset()

        again = _cli(config, "probe", "--resume")
        out, _ = again.communicate(timeout=120)
        assert again.returncode == 0, out

        assert _count(store, Attempt.status == "ok") == total
        with store.session() as session:
            responses = session.scalar(select(func.count()).select_from(Response))
            distinct = session.scalar(select(func.count(func.distinct(Response.attempt_id))))
            assert responses == distinct == total
            assert ledger.verify(session).ok
        # completed attempts were never sent again; each unfinished one exactly once
        assert len(server.requests()) == total - ok_before

        check = _cli(config, "verify", "--ledger")
        out, _ = check.communicate(timeout=60)
        assert check.returncode == 0 and "ledger ok" in out
        store.close()
    finally:
        server.stop()


def test_sigint_right_after_planning_then_once_again_sends_each_attempt_once(
        tmp_path: Path, sqlite_url: str) -> None:
    server = FakeServer(delay=0.5).start()
    try:
        config = _config(tmp_path, sqlite_url, server, samples=4)
        config.write_text(config.read_text().replace("concurrency = 4", "concurrency = 1"))
        proc = _cli(config, "probe", "--once")
        deadline = time.monotonic() + 60
        while not server.requests() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the first request is out: planned, and the handler is set
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, out
        store = open_store(sqlite_url, migrate=False)
        try:
            planned = _count(store)
            assert planned == 8 and _count(store, Attempt.status == "ok") < planned

            again = _cli(config, "probe", "--once")
            out, _ = again.communicate(timeout=120)
            assert again.returncode == 0, out
            assert "resuming the unfinished probe cycle of crashy" in " ".join(out.split())
            assert _count(store) == planned  # no second cycle
            assert _count(store, Attempt.status == "ok") == planned
            assert len(server.requests()) == planned  # each attempt sent once, in all
        finally:
            store.close()
    finally:
        server.stop()
