"""The legal portal's cases page on a large store: p50/p95/p99 of GET /cases.

Fills a fresh database with --responses responses (bulk rows: the page never reads them,
which is the point to show) and --verdicts verdicts over --pairs (suspect, protected)
cases, plus cycles, monitors and alerts; starts the real portal under uvicorn on loopback
and times --requests sequential GETs of /cases (and of one case page) through a real HTTP
client with a signed-in session.

    python -m benchmarks.portal --responses 1000000 --verdicts 500 --pairs 100
    python -m benchmarks.portal --database-url postgresql+psycopg://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import insert

from auditor.config import Settings
from auditor.store import open_store, sync_endpoints
from auditor.store.models import (
    Alert,
    Attempt,
    CanaryVersion,
    Cycle,
    MonitorState,
    Response,
    Verdict,
)
from auditor.web import accounts
from auditor.web.app import create_app

PASSWORD = "benchmark passphrase 123"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fill(settings: Settings, responses: int, verdicts: int, pairs: int,
         canaries: int = 200) -> None:
    store = open_store(settings, migrate=True)
    with store.session() as s:
        eps = sync_endpoints(s, settings)
        accounts.add_user(s, "legal", "legal", PASSWORD)
        s.execute(insert(CanaryVersion), [
            {"canary_id": f"c{i:04d}", "version": 1, "kind": "free_text",
             "content": {"id": f"c{i:04d}"}, "content_hash": f"{i:064x}", "salt": "0" * 64,
             "commitment": f"{i:064x}", "created_at": T0} for i in range(canaries)])
    ids = {n: e.id for n, e in eps.items()}
    names = list(ids)
    suspects = [n for n in names if n.startswith("sus")]
    controls = [n for n in names if n.startswith("ctl")]
    per_ep = responses // len(names)
    batch = 50_000
    seq = 0
    for n in names:
        with store.session() as s:
            cyc = Cycle(kind="probe", endpoint_id=ids[n], status="done", planned_at=T0,
                        finished_at=T0 + timedelta(days=30), summary={"ok": per_ep})
            s.add(cyc)
            s.flush()
            cycle_id = cyc.id
        done = 0
        while done < per_ep:
            k = min(batch, per_ep - done)
            with store.session() as s:
                first = s.execute(insert(Attempt).returning(Attempt.id), [
                    {"cycle_id": cycle_id, "endpoint_id": ids[n],
                     "canary_version_id": 1 + (done + j) % canaries,
                     "sample_index": (done + j) // canaries, "status": "ok", "tries": 1}
                    for j in range(k)]).scalars().all()
                s.execute(insert(Response), [
                    {"attempt_id": a, "endpoint_id": ids[n],
                     "canary_version_id": 1 + (done + j) % canaries,
                     "sample_index": (done + j) // canaries,
                     "text": "An answer of about the usual length, " * 4,
                     "raw_sha256": "0" * 64, "imported": False,
                     "collected_at": T0 + timedelta(seconds=seq + j), "seq": seq + j + 1,
                     "record_hash": "0" * 64, "prev_chain": "0" * 64,
                     "chain": f"{seq + j + 1:064x}"} for j, a in enumerate(first)])
            seq += k
            done += k
    prot = ids["prot"]
    with store.session() as s:
        rows = []
        for i in range(verdicts):
            sus = suspects[i % pairs]
            p = 10 ** -(1 + (i % 7))
            rows.append({
                "suspect_id": ids[sus], "protected_id": prot, "method": "loo-control-permutation",
                "params": {"alpha": 0.05}, "statistic": 2.0, "p_value": p, "q_value": p * 2,
                "e_value": 1.0 + i % 40, "effect": 0.2, "effect_low": 0.1, "effect_high": 0.3,
                "n_canaries": canaries, "n_samples": canaries * 5,
                "canaries": [f"c{j:04d}" for j in range(canaries)], "controls": controls,
                "contributions": [{"canary_id": f"c{j:04d}", "contribution": 1.0 / (j + 1)}
                                  for j in range(canaries)],
                "channels": {"free_text": {"p_value": p, "statistic": 2.0}},
                "segment": None, "significant": p < 0.01, "code_version": "bench",
                "created_at": T0 + timedelta(hours=i)})
        s.execute(insert(Verdict), rows)
        for j, sus in enumerate(suspects[:pairs]):
            s.add(MonitorState(suspect_id=ids[sus], protected_id=prot, state={},
                               e_value=1.0 + j))
            if j % 10 == 0:
                s.add(Alert(suspect_id=ids[sus], protected_id=prot, kind="eprocess",
                            value=25.0, threshold=20.0, message="alarm",
                            created_at=T0 + timedelta(days=3)))
    store.close()


def _serve(settings: Settings) -> tuple[uvicorn.Server, threading.Thread, str]:
    store = open_store(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, store), host="127.0.0.1",
                                           port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def _time(client: httpx.Client, path: str, n: int) -> list[float]:
    for _ in range(5):  # warm-up
        assert client.get(path).status_code == 200
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(path)
        out.append((time.perf_counter() - t) * 1000)
        assert r.status_code == 200
    return out


def _pct(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[int(q) - 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--responses", type=int, default=1_000_000)
    ap.add_argument("--verdicts", type=int, default=500)
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="auditor-portal-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'portal.db'}"
        eps = [{"name": "prot", "role": "protected"}]
        eps += [{"name": f"ctl{i:02d}", "role": "control"} for i in range(10)]
        eps += [{"name": f"sus{i:03d}", "role": "suspect"} for i in range(args.pairs)]
        settings = Settings.model_validate({
            "database_url": url, "reports_dir": str(Path(tmp) / "reports"),
            "endpoints": [{**e, "provider": "http", "model": e["name"],
                           "base_url": "http://127.0.0.1:9/v1"} for e in eps]})
        t = time.perf_counter()
        fill(settings, args.responses, args.verdicts, args.pairs)
        print(f"filled {args.responses} responses, {args.verdicts} verdicts, {args.pairs} "
              f"cases in {time.perf_counter() - t:.0f}s ({url.split(':')[0]})", flush=True)
        server, thread, base = _serve(settings)
        try:
            with httpx.Client(base_url=base, timeout=60) as c:
                form = c.get("/signin").text
                csrf = re.search(r'name="csrf" value="([^"]*)"', form)
                assert csrf
                r = c.post("/signin", data={"csrf": csrf.group(1), "username": "legal",
                                            "password": PASSWORD})
                assert r.status_code == 303, r.text
                page = c.get("/cases").text
                assert page.count('class="case"') == args.pairs, "not every case listed"
                for path in ("/cases", "/cases?sort=p&dir=asc", "/cases/sus000/prot"):
                    ms = _time(c, path, args.requests)
                    print(f"GET {path}: n={len(ms)} p50={statistics.median(ms):.1f}ms "
                          f"p95={_pct(ms, 95):.1f}ms p99={_pct(ms, 99):.1f}ms "
                          f"max={max(ms):.1f}ms", flush=True)
        finally:
            server.should_exit = True
            thread.join(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
