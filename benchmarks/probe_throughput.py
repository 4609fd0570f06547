"""Probe throughput: responses durably recorded per second against a fast local endpoint.

Each configuration runs in a fresh Python process (so its peak RSS is its own), against
the loopback server of the tests (``tests/probe/servers.py``) running in another process.
A run plans a cycle of N attempts (committed), then runs it through the real adapter,
limiter, recorder and ledger, and reports recorded responses per second of the run and
the p50 / p95 latency of one request as the cycle summary records it.
The baseline is a plain sequential loop over the SDK that records nothing.

    .venv/bin/python benchmarks/probe_throughput.py                  # the full table
    .venv/bin/python benchmarks/probe_throughput.py --quick          # a smoke run
    .venv/bin/python benchmarks/probe_throughput.py --provider http --concurrency 4 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

PG_ADMIN = os.environ.get("AUDITOR_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _pg_database() -> str | None:
    try:
        import psycopg

        name = f"auditor_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN.replace("+psycopg", ""), autocommit=True,
                             connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    except Exception:
        return None


def _drop_pg(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """One configuration, in this process."""
    from probe.helpers import canary, endpoint, make_settings

    from auditor.probe import RunOptions, prepare, run_cycle
    from auditor.store import open_store

    tmp = Path(tempfile.mkdtemp(prefix="probe-bench-"))
    db_url = f"sqlite:///{tmp / 'bench.db'}" if args.backend == "sqlite" else args.pg_url
    samples = 100
    canaries = [canary(f"c-{i:05d}", f"Benchmark prompt number {i}.", samples=samples)
                for i in range(max(1, args.attempts // samples))]
    url = f"http://127.0.0.1:{args.port}"
    s = make_settings(tmp, db_url, [endpoint("bench", args.provider, url, limits={
        "requests_per_minute": 1e9, "concurrency": args.concurrency, "timeout_seconds": 30,
        "max_retries": 2})], canaries)
    store = open_store(s, migrate=True)
    try:
        t0 = time.perf_counter()
        planned = prepare(store, s)
        plan_s = time.perf_counter() - t0
        rss_after_plan = _peak_mb()
        t1 = time.perf_counter()
        result = asyncio.run(run_cycle(store, s, planned.cycle_id, options=RunOptions()))
        run_s = time.perf_counter() - t1
        return {"backend": args.backend, "provider": args.provider,
                "concurrency": args.concurrency, "attempts": planned.attempts,
                "recorded": result.recorded, "ok": result.summary["bench"]["ok"],
                "plan_s": round(plan_s, 2), "run_s": round(run_s, 2),
                "per_s": round(result.recorded / run_s, 1),
                "p50_ms": round(result.summary["bench"]["p50_ms"], 1),
                "p95_ms": round(result.summary["bench"]["p95_ms"], 1),
                "peak_rss_mb": round(_peak_mb(), 1), "rss_after_plan_mb": round(rss_after_plan, 1)}
    finally:
        store.close()


def run_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """A plain sequential loop over the SDK: no limits, no recording."""
    import openai

    client = openai.OpenAI(api_key="unused", base_url=f"http://127.0.0.1:{args.port}/v1",
                           max_retries=0)
    n = min(args.attempts, 5000)
    latencies = []
    t0 = time.perf_counter()
    for i in range(n):
        t1 = time.perf_counter()
        client.chat.completions.create(
            model="m", max_tokens=16,
            messages=[{"role": "user", "content": f"Benchmark prompt number {i}."}])
        latencies.append((time.perf_counter() - t1) * 1000.0)
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"backend": "none", "provider": "openai (sequential SDK loop)", "concurrency": 1,
            "attempts": n, "recorded": 0, "per_s": round(n / elapsed, 1),
            "p50_ms": round(latencies[n // 2], 1), "p95_ms": round(latencies[n * 95 // 100], 1),
            "peak_rss_mb": round(_peak_mb(), 1)}


def _child(extra: list[str], port: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--port", str(port), *extra],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--backend", default="sqlite", help=argparse.SUPPRESS)
    p.add_argument("--pg-url", default=None, help=argparse.SUPPRESS)
    p.add_argument("--provider", default="openai", choices=["openai", "anthropic", "http"])
    p.add_argument("--concurrency", type=int, nargs="+", default=[4, 16, 64])
    p.add_argument("--attempts", type=int, nargs="+", default=[10_000])
    p.add_argument("--scale", type=int, nargs="+", default=[10_000, 100_000],
                   help="attempt counts for the memory check (SQLite, first concurrency)")
    p.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    p.add_argument("--quick", action="store_true", help="1,000 attempts, no scale check")
    args = p.parse_args()
    if args.one:
        sys.setswitchinterval(0.001)  # as `auditor probe` does: the recorder thread's turn
        args.concurrency, args.attempts = args.concurrency[0], args.attempts[0]
        print(json.dumps(run_baseline(args) if args.baseline else run_one(args)))
        return
    if args.quick:
        args.attempts, args.scale = [1000], []

    server = subprocess.Popen([sys.executable, str(REPO / "tests" / "probe" / "servers.py")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        rows = [_child(["--one", "--baseline", "--attempts", str(args.attempts[0])], port)]
        print(json.dumps(rows[-1]), flush=True)
        for backend in args.backends:
            for n in args.attempts:
                for c in args.concurrency:
                    pg = _pg_database() if backend == "postgresql" else None
                    if backend == "postgresql" and pg is None:
                        print(f"skipping PostgreSQL: not reachable at {PG_ADMIN}", flush=True)
                        break
                    extra = ["--one", "--backend", backend, "--provider", args.provider,
                             "--concurrency", str(c), "--attempts", str(n)]
                    try:
                        rows.append(_child(extra + (["--pg-url", pg] if pg else []), port))
                    finally:
                        if pg:
                            _drop_pg(pg)
                    print(json.dumps(rows[-1]), flush=True)
        for n in args.scale:
            rows.append(_child(["--one", "--backend", "sqlite", "--provider", args.provider,
                                "--concurrency", str(args.concurrency[0]), "--attempts",
                                str(n)], port))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        server.terminate()
        server.wait()
    print()
    print("| backend | provider | concurrency | attempts | recorded/s | p50 / p95 ms "
          "| peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['provider']} | {r['concurrency']} | {r['attempts']} "
              f"| {r['per_s']} | {r['p50_ms']} / {r['p95_ms']} | {r['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
