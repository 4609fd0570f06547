"""Soak: the real ``auditor daemon`` for a long run against faulty loopback endpoints.

Run by hand (not in the test suite; it takes ``--minutes``, 30 by default)::

    .venv/bin/python benchmarks/soak.py                     # 30 minutes
    .venv/bin/python benchmarks/soak.py --minutes 10 --interval 30s

Five endpoints (protected, suspect, three controls), each on its own loopback server of
the tests (``tests/probe/servers.py``) that answers a share of requests with a fault:
429 with ``retry-after``, a hang past the timeout, a reset connection. One control is
dead (every request hangs) for 10 minutes (a third of shorter runs). The daemon gets a
SIGHUP every 5 minutes, a ``kill -9`` at half time and is restarted at once, and a
SIGTERM at the end. Checked and printed as JSON at the end:

- every line the daemon wrote (stdout and stderr) parses as JSON, none has a traceback;
- RSS and open file descriptors of each daemon process after a minute of warm-up and at
  its end (flat: the difference should stay within noise);
- cycles completed against cycles scheduled (per endpoint, by nominal time), skips;
- duplicates: 0 responses sharing an attempt, 0 attempts answered twice; the ledger
  verifies.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from probe.servers import FakeServer  # noqa: E402

ROLES = {"prot": "protected", "sus": "suspect", "c0": "control", "c1": "control",
         "c2": "control"}
DEAD = "c2"


class FaultyServer(FakeServer):
    """Answers, or (with the given odds) 429, hangs past the client timeout, resets."""

    def __init__(self, rng: random.Random, p429: float, phang: float, preset: float,
                 style: str) -> None:
        super().__init__(record=False, retry_after="1")
        self.rng, self.p429, self.phang, self.preset = rng, p429, phang, preset
        self.style = style  # answers differ by model (the suspect answers like "prot")
        self.dead = False
        self.faults: Counter[str] = Counter()

    async def _respond(self, method: str, path: str, body: dict[str, Any] | None,
                       writer: Any) -> bool:
        for msg in reversed((body or {}).get("messages") or []):
            if msg.get("role") == "user" and isinstance(msg.get("content"), str):
                msg["content"] += f" [{self.style} {self.rng.randint(0, 3)}]"
                break
        return await super()._respond(method, path, body, writer)

    def _fault(self, body: dict[str, Any] | None) -> str | None:
        if self.dead:
            self.faults["dead"] += 1
            return "hang"
        x = self.rng.random()
        for name, p in (("429", self.p429), ("hang", self.phang), ("reset", self.preset)):
            if x < p:
                self.faults[name] += 1
                return name
            x -= p
        return None


def _proc_stats(pid: int) -> dict[str, float]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines()
                   if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return {}
    return {"rss_mb": round(rss / 1024.0, 1), "open_fds": fds}


def _write_inputs(root: Path, servers: dict[str, FaultyServer], interval: str) -> Path:
    (root / "canaries").mkdir()
    items = [{"id": f"ft{i:02d}", "kind": "free_text", "prompt": f"Tell a short story {i}.",
              "samples": 1} for i in range(6)]
    items += [{"id": f"ch{i}", "kind": "choice", "prompt": f"Pick a colour ({i}).",
               "samples": 2, "expect": {"aliases": {"grey": "gray"}}} for i in range(2)]
    import yaml

    (root / "canaries" / "soak.yaml").write_text(yaml.safe_dump({"canaries": items}))
    lines = [f'database_url = "sqlite:///{root / "soak.db"}"', 'canaries_dir = "canaries"',
             "[daemon]", "heartbeat_seconds = 5", "shutdown_grace_seconds = 5",
             "lease_seconds = 30", "misfire_grace_seconds = 120", "watch_files = false",
             "metrics_port = 0", "analyze_after_cycle = true"]
    for name, role in ROLES.items():
        lines += ["[[endpoints]]", f'name = "{name}"', 'provider = "openai"',
                  f'model = "m-{name}"', f'base_url = "{servers[name].url}/v1"',
                  f'role = "{role}"', 'api_key_env = "SOAK_KEY"',
                  f'schedule = {{ interval = "{interval}", jitter_seconds = 3 }}',
                  "limits = { requests_per_minute = 600, concurrency = 4, "
                  "timeout_seconds = 3, max_retries = 2 }"]
    cfg = root / "auditor.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def _start(root: Path, cfg: Path, n: int) -> tuple[subprocess.Popen[bytes], Path]:
    log = root / f"daemon-{n}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env |= {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "SOAK_KEY": "sk-soak-secret-1"}
    with log.open("ab") as sink:
        popen = subprocess.Popen([sys.executable, "-m", "auditor", "--config", str(cfg),
                                  "daemon"], cwd=root, env=env, stdout=sink, stderr=sink)
    return popen, log


def _check_logs(logs: list[Path], urls: list[str]) -> dict[str, Any]:
    lines = bad = tracebacks = url_lines = 0
    levels: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            lines += 1
            try:
                rec = json.loads(line)
            except ValueError:
                bad += 1
                print("NOT JSON:", line[:300], file=sys.stderr)
                continue
            levels[rec.get("level", "?")] += 1
            if rec.get("level") in ("error", "critical"):
                errors[rec.get("msg", "")[:80]] += 1
            if "traceback" in rec or "Traceback" in line:
                tracebacks += 1
                print("TRACEBACK:", line[:600], file=sys.stderr)
            if any(u in line for u in urls) or "sk-soak-secret-1" in line:
                url_lines += 1
    return {"lines": lines, "not_json": bad, "tracebacks": tracebacks,
            "lines_with_url_or_key": url_lines, "levels": dict(levels),
            "error_messages": dict(errors)}


def _check_store(db: str, interval_s: float, t0: float, t1: float) -> dict[str, Any]:
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from auditor.store import ledger, open_store
    from auditor.store.models import Attempt, Cycle, Endpoint, Response

    store = open_store(db)
    try:
        with store.session() as s:
            names = dict(s.execute(select(Endpoint.id, Endpoint.name)).tuples().all())
            per_attempt = s.execute(select(Response.attempt_id, func.count())
                                    .group_by(Response.attempt_id)
                                    .having(func.count() > 1)).tuples().all()
            cycles = list(s.scalars(select(Cycle)))
            statuses = Counter(s.scalars(select(Attempt.status)))
            responses = int(s.scalar(select(func.count()).select_from(Response)) or 0)
            check = ledger.verify(s)
        start = datetime.fromtimestamp(t0, UTC)
        end = datetime.fromtimestamp(t1, UTC)
        per: dict[str, Counter[str]] = {n: Counter() for n in ROLES}
        for c in cycles:
            key = c.schedule_key or ""
            name, _, when = key.partition("@")
            nominal = datetime.fromisoformat(when.replace("Z", "+00:00")) if when else None
            if name in per and nominal is not None and start <= nominal <= end:
                per[name][c.status] += 1
        anchor = datetime(2000, 1, 1, tzinfo=UTC)
        first = int(-(-(start - anchor).total_seconds() // interval_s))
        last = int((end - anchor).total_seconds() // interval_s)
        scheduled = last - first + 1
        del names
        return {
            "scheduled_per_endpoint": scheduled,
            "cycles_per_endpoint": {n: dict(v) for n, v in per.items()},
            "attempt_statuses": dict(statuses),
            "responses": responses,
            "duplicate_responses": len(per_attempt),
            "ledger_ok": bool(check.ok),
        }
    finally:
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--interval", default="30s", help="every endpoint's schedule interval")
    ap.add_argument("--hup-every", type=float, default=300.0, help="seconds between SIGHUPs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    args = ap.parse_args()

    from auditor.config import parse_duration

    interval_s = parse_duration(args.interval)
    duration = args.minutes * 60.0
    dead_from, dead_for = duration / 6, min(600.0, duration / 3)
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="auditor-soak-"))
    servers = {n: FaultyServer(random.Random(rng.random()), 0.04, 0.02, 0.02,
                               "prot" if n == "sus" else n).start() for n in ROLES}
    cfg = _write_inputs(root, servers, args.interval)
    events: list[dict[str, Any]] = []
    stats: list[dict[str, Any]] = []
    t0 = time.time()
    proc, log = _start(root, cfg, 1)
    logs = [log]
    n, born = 1, time.monotonic()
    start_mono = time.monotonic()
    next_hup = args.hup_every
    killed = False
    measured_start = False
    try:
        while (now := time.monotonic() - start_mono) < duration:
            time.sleep(1.0)
            if proc.poll() is not None:
                raise SystemExit(f"daemon exited on its own ({proc.returncode}); see {log}")
            if not measured_start and time.monotonic() - born >= 60:
                stats.append({"process": n, "at": "start", "t": round(now),
                              **_proc_stats(proc.pid)})
                measured_start = True
            dead = dead_from <= now < dead_from + dead_for
            if dead != servers[DEAD].dead:
                servers[DEAD].dead = dead
                events.append({"t": round(now), "event": f"{DEAD} {'dead' if dead else 'back'}"})
            if now >= next_hup:
                proc.send_signal(signal.SIGHUP)
                events.append({"t": round(now), "event": "SIGHUP"})
                next_hup += args.hup_every
            if not killed and now >= duration / 2:
                stats.append({"process": n, "at": "end (before kill -9)", "t": round(now),
                              **_proc_stats(proc.pid)})
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                events.append({"t": round(now), "event": "kill -9, restart"})
                killed = True
                n += 1
                proc, log = _start(root, cfg, n)
                logs.append(log)
                born, measured_start = time.monotonic(), False
        stats.append({"process": n, "at": "end", "t": round(time.monotonic() - start_mono),
                      **_proc_stats(proc.pid)})
        t1 = time.time()
        stop0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        events.append({"t": round(time.monotonic() - start_mono), "event": "SIGTERM",
                       "exit_code": code, "stop_seconds": round(time.monotonic() - stop0, 1)})
    finally:
        if proc.poll() is None:
            proc.kill()
        for srv in servers.values():
            srv.stop()
    result = {
        "minutes": args.minutes, "interval": args.interval, "events": events,
        "process_stats": stats,
        "faults_injected": {n: dict(s.faults) for n, s in servers.items()},
        "logs": _check_logs(logs, [s.url for s in servers.values()]),
        # cycles whose nominal time is in the run, but leave the last interval (and the
        # shutdown) out: those may still have been running at the stop
        "store": _check_store(f"sqlite:///{root / 'soak.db'}", interval_s, t0,
                              t1 - interval_s - 5),
        "workdir": str(root),
    }
    print(json.dumps(result, indent=2))
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
