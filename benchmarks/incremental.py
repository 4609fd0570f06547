"""Analysis cost per cycle against the stored history (issue 17).

Fills a store through the real import path with synthetic answers of realistic length
(about 1,000 characters: each endpoint writes from its own pool of sentences, with its
own habits, on each canary's topic), 10 endpoints (1 protected, 6 controls, 3 suspects),
500 free-text canaries, 5 samples: 25,000 responses a cycle, 4 cycles a day. At each
history size it then times, each in a fresh process (peak memory is that process's
maximum resident set; ``workers``: the largest of its featurisation workers', when a
backlog is featurised in parallel):

- ``catch-up``: the analysis that featurises what the fill added (at the first size,
  the whole history);
- ``cycle``: one more cycle of 25,000 responses imported, then the analysis after it;
- ``full`` (with ``--full``): ``auditor analyze --full``, every raw response again.

    python -m benchmarks.incremental --db sqlite --history 1000000,3000000,10000000 --full
    python -m benchmarks.incremental --db postgresql --history 1000000 --full

``--db postgresql`` creates the database named in ``--pg-url`` afresh on that server (it
must not be one in use: the default is ``auditor_bench_incremental``) and drops it after.
With ``--keep`` the store (SQLite: at ``--sqlite-path``) is kept after the run, and a
later run with ``--keep`` resumes it: it fills only up to each size not reached yet.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from auditor.config import Settings

CANARIES = 500
SAMPLES = 5
ROLES = ["protected"] + ["control"] * 6 + ["suspect"] * 3
NAMES = [f"ep{i}" for i in range(len(ROLES))]
PER_CYCLE = CANARIES * SAMPLES * len(NAMES)
START = datetime(2026, 1, 1, tzinfo=UTC)
WORDS = ("model answer data system value result method process example point case "
         "language question time people way information number part level form "
         "analysis approach structure change group problem reason step detail idea").split()


def settings(url: str) -> Settings:
    return Settings.model_validate({"database_url": url, "endpoints": [
        {"name": n, "provider": "http", "model": n, "role": r, "base_url": "http://127.0.0.1:9/v1"}
        for n, r in zip(NAMES, ROLES, strict=True)]})


class Writer:
    """Answers of about 1,000 characters from each endpoint's own sentence pool; the
    last suspect copies the protected model's pool (a student)."""

    def __init__(self) -> None:
        rng = random.Random(0)
        self.pools = []
        for i in range(len(NAMES)):
            r = random.Random(i)
            opener = r.choice(["Sure!", "Certainly.", "Here is an overview.", "Great question."])
            pool = [" ".join(r.choice(WORDS) for _ in range(r.randint(8, 20))).capitalize()
                    + r.choice([".", ".", "!", ":"]) for _ in range(400)]
            self.pools.append((opener, pool, r.choice(["\n", " ", "\n- "])))
        self.pools[-1] = self.pools[0]
        self.topics = [" ".join(rng.choice(WORDS) for _ in range(3)) for _ in range(CANARIES)]

    def answer(self, ep: int, canary: int, rng: random.Random) -> str:
        opener, pool, sep = self.pools[ep]
        parts = [opener, f"About {self.topics[canary]}:"]
        while sum(map(len, parts)) < 1000:
            parts.append(rng.choice(pool))
        return sep.join(parts)


def stored(url: str) -> tuple[int, int]:
    """Responses stored, and the store's size in bytes (``auditor db stats``)."""
    from sqlalchemy import func, select

    from auditor.store import open_store
    from auditor.store.models import Response
    from auditor.store.stats import collect

    store = open_store(url)
    try:
        with store.session() as s:
            n = int(s.scalar(select(func.count()).select_from(Response)) or 0)
        return n, collect(store.engine, days=1).database_bytes
    finally:
        store.close()


def fill(url: str, cycles: range) -> None:
    """Imports ``cycles`` (25,000 responses each), one endpoint and 40 cycles a call."""
    from auditor.canary import Canary
    from auditor.importer import ImportRecord, import_records
    from auditor.registry import sync_registry
    from auditor.store import open_store, sync_endpoints

    writer, rng = Writer(), random.Random(cycles.start)
    s_ = settings(url)
    store = open_store(s_)
    try:
        with store.session() as s:
            eps = sync_endpoints(s, s_)
            sync_registry(s, [Canary(id=f"c{i:03d}", kind="free_text", prompt=f"Explain {t}.")
                              for i, t in enumerate(writer.topics)])
        for lo in range(cycles.start, cycles.stop, 40):
            block = range(lo, min(lo + 40, cycles.stop))
            for e, name in enumerate(NAMES):
                recs = [ImportRecord(canary_id=f"c{q:03d}", sample_index=c * SAMPLES + k,
                                     collected_at=START + timedelta(hours=6 * c),
                                     text=writer.answer(e, q, rng))
                        for c in block for q in range(CANARIES) for k in range(SAMPLES)]
                with store.session() as s:
                    import_records(s, eps[name], recs, source=f"bench-{name}-{lo}")
    finally:
        store.close()


class _WorkerPeak(threading.Thread):
    """The largest peak resident set (``VmHWM``) of this process's children (the
    featurisation workers), read from /proc every half second while they live.
    (``RUSAGE_CHILDREN`` would count the parent's memory a spawned child had before its
    exec.)"""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kib, self.done = 0, threading.Event()
        self.start()

    def run(self) -> None:
        me = str(os.getpid())
        while not self.done.wait(0.5):
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    if stat.read_text().rsplit(")", 1)[1].split()[1] != me:
                        continue
                    status = (stat.parent / "status").read_text()
                except (OSError, IndexError):
                    continue
                hwm = re.search(r"VmHWM:\s+(\d+)", status)
                if hwm:
                    self.peak_kib = max(self.peak_kib, int(hwm.group(1)))

    def stop(self) -> float:
        self.done.set()
        self.join()
        return self.peak_kib / 1024


def analyse(url: str, full: bool) -> dict[str, float]:
    """One analysis in this process: seconds, peak RSS, answers featurised, verdicts."""
    from auditor.analysis import analyze_all
    from auditor.store import open_store

    s_ = settings(url)
    store = open_store(s_)
    watch = _WorkerPeak()
    t0 = time.perf_counter()
    try:
        with store.session() as s:
            verdicts = analyze_all(s, s_, full=full)
            feats = next((v.params.get("features") for v in verdicts), None) or {}
    finally:
        store.close()
        workers = watch.stop()
    took = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    flagged = sorted(v.suspect_id for v in verdicts if v.significant and v.segment is None)
    return {"seconds": took, "peak_mib": peak, "worker_peak_mib": workers,
            "added": feats.get("answers_added", 0), "verdicts": len(verdicts),
            "flagged": len(flagged)}


def _child(url: str, full: bool) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.incremental", "--child", url]
                         + (["--full"] if full else []), capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _pg_database(url: str, *, drop: bool, create: bool) -> None:
    """Drops the database of ``url`` (with ``drop``), and creates it if it is missing
    (with ``create``)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    u = make_url(url)
    engine = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        if drop:
            c.execute(text(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)'))
        if create and c.scalar(text("SELECT 1 FROM pg_database WHERE datname = :d"),
                               {"d": u.database}) is None:
            c.execute(text(f'CREATE DATABASE "{u.database}"'))
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--pg-url",
                    default="postgresql+psycopg://postgres@127.0.0.1:5432/auditor_bench_incremental")
    ap.add_argument("--history", default="250000,1000000",
                    help="comma-separated stored-response counts to measure at")
    ap.add_argument("--full", action="store_true", help="also time `analyze --full`")
    ap.add_argument("--keep", action="store_true",
                    help="keep the store after the run; resume a kept one")
    ap.add_argument("--sqlite-path", type=Path,
                    default=Path(tempfile.gettempdir()) / "auditor-incremental.db")
    ap.add_argument("--fill-only", action="store_true",
                    help="fill (a kept store) up to the largest size, measure nothing")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(analyse(args.child, args.full)))
        return 0
    sizes = sorted(int(x) for x in args.history.split(","))
    if args.db == "postgresql":
        url = args.pg_url
        _pg_database(url, drop=not args.keep, create=True)
    else:
        url = f"sqlite:///{args.sqlite_path}"
        if not args.keep:
            args.sqlite_path.unlink(missing_ok=True)
    from auditor.store import open_store

    open_store(url, migrate=True).close()
    cycles = -(-stored(url)[0] // PER_CYCLE)
    if args.fill_only:
        t0 = time.perf_counter()
        fill(url, range(cycles, -(-sizes[-1] // PER_CYCLE)))
        n, size_bytes = stored(url)
        print(f"db={args.db} stored={n} ({size_bytes / 2**30:.1f} GiB) "
              f"fill={time.perf_counter() - t0:.0f}s", flush=True)
        return 0
    try:
        for size in sizes:
            t0 = time.perf_counter()
            target = max(-(-size // PER_CYCLE), cycles)
            fill(url, range(cycles, target))
            filled, added = time.perf_counter() - t0, (target - cycles) * PER_CYCLE
            cycles = target
            n, size_bytes = stored(url)
            catch = _child(url, False)
            fill(url, range(cycles, cycles + 1))
            cycles += 1
            one = _child(url, False)
            line = (f"db={args.db} stored={n} ({size_bytes / 2**30:.1f} GiB) "
                    f"fill={filled:.0f}s ({added / max(filled, 1e-9):,.0f}/s) "
                    f"catch_up={catch['seconds']:.1f}s ({catch['added']:.0f} answers, "
                    f"peak {catch['peak_mib']:.0f} MiB, "
                    f"workers {catch['worker_peak_mib']:.0f} MiB) "
                    f"cycle={one['seconds']:.2f}s ({one['added']:.0f} answers, "
                    f"peak {one['peak_mib']:.0f} MiB, flagged {one['flagged']:.0f} of "
                    f"{one['verdicts']:.0f})")
            if args.full:
                full = _child(url, True)
                line += (f" full={full['seconds']:.1f}s (peak {full['peak_mib']:.0f} MiB, "
                         f"workers {full['worker_peak_mib']:.0f} MiB)")
            print(line, flush=True)
    finally:
        if not args.keep:
            if args.db == "postgresql":
                _pg_database(url, drop=True, create=False)
            else:
                args.sqlite_path.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
