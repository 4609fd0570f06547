"""Personas on one single-slot server: latency and queueing without and with a shared limit.

A loopback server that answers one request at a time (``serial``, like a llama.cpp server
with one slot) in ``--service`` seconds; ``--endpoints`` persona endpoints at concurrency
1 each send ``--samples`` requests. Without a shared limit the requests queue inside the
server and every answer's latency includes that wait; with ``limits.shared`` (concurrency
1) they queue in the auditor, latency is the service time and the wait is reported apart.

    .venv/bin/python benchmarks/shared_limit.py
    .venv/bin/python benchmarks/shared_limit.py --endpoints 8 --samples 10 --service 0.1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))


def _run(n: int, samples: int, service: float, shared: bool) -> dict[str, Any]:
    from probe.helpers import canary, endpoint, make_settings, run
    from probe.servers import FakeServer

    from auditor.store import open_store

    with tempfile.TemporaryDirectory() as tmp, FakeServer(delay=service, serial=True,
                                                          record=False) as server:
        limits: dict[str, Any] = {"concurrency": 1, "timeout_seconds": 600}
        if shared:
            limits["shared"] = "box"
        eps = [endpoint(f"persona-{i}", "http", server.url, limits=limits) for i in range(n)]
        s = make_settings(Path(tmp), f"sqlite:///{tmp}/a.db", eps,
                          [canary("c-p", samples=samples)],
                          shared_limits={"box": {"concurrency": 1}} if shared else {})
        st = open_store(s, migrate=True)
        try:
            t0 = time.perf_counter()
            summary = run(st, s).summary
            wall = time.perf_counter() - t0
        finally:
            st.close()
    ok = sum(v["ok"] for v in summary.values())
    return {"shared": shared, "ok": ok, "wall_s": round(wall, 2),
            "p50_ms": round(median(v["p50_ms"] for v in summary.values())),
            "queue_p50_ms": (round(median(v["queue_p50_ms"] for v in summary.values()))
                             if shared else None)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoints", type=int, default=8)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--service", type=float, default=0.1)
    a = ap.parse_args()
    print(f"{a.endpoints} endpoints x {a.samples} samples, one slot of {a.service}s")
    print("| shared limit | ok | wall s | p50 latency (median of endpoints) | queued p50 |")
    print("| --- | --- | --- | --- | --- |")
    for shared in (False, True):
        r = _run(a.endpoints, a.samples, a.service, shared)
        queued = "-" if r["queue_p50_ms"] is None else f"{r['queue_p50_ms']} ms"
        print(f"| {'yes' if shared else 'no'} | {r['ok']} | {r['wall_s']} | {r['p50_ms']} ms "
              f"| {queued} |")


if __name__ == "__main__":
    main()
