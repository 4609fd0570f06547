"""Does the analysis leak? Runs ``analyze_all`` again and again on one store whose size
does not change, and prints the process's resident memory and what Python still holds
after each run. Flat numbers mean the daemon's memory follows the size of the store (the
analysis loads every response: issue #17), not the number of cycles.

    python -m benchmarks.analysis_memory --config var/demo/auditor.toml --runs 12

It works on a copy of the configured SQLite database, so the store itself is untouched.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

from sqlalchemy.engine import make_url

from auditor.analysis import analyze_all
from auditor.config import load_settings
from auditor.store import open_store


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="auditor.toml of a filled SQLite store")
    ap.add_argument("--runs", type=int, default=12)
    args = ap.parse_args()
    settings = load_settings(args.config)
    db = make_url(settings.resolved_database_url()).database
    if not db:
        raise SystemExit("the benchmark needs a SQLite store (database_url = sqlite:///...)")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "auditor.db"
        shutil.copy(db, copy)
        settings = settings.model_copy(update={"database_url": f"sqlite:///{copy}"})
        store = open_store(settings)
        tracemalloc.start()
        try:
            for i in range(args.runs):
                t0 = time.perf_counter()
                with store.session() as session:
                    n = len(analyze_all(session, settings))
                gc.collect()
                held, _ = tracemalloc.get_traced_memory()
                print(f"run {i + 1}: {n} verdicts in {time.perf_counter() - t0:.1f} s, "
                      f"RSS {_rss_mb():.1f} MB, Python objects held {held / 2**20:.1f} MB",
                      flush=True)
        finally:
            store.close()


if __name__ == "__main__":
    main()
