"""How long ``auditor.analysis.analyze_all`` takes on a filled store, at three sizes.

Fills a fresh SQLite database through the real import path with synthetic answers of toy
persona models (1 protected, 10 controls, the rest suspects; one student distilled from
the protected model), then times the analysis alone: loading the responses, the
similarity pass, every (suspect, protected) test, FDR, monitors, storing verdicts.

    python -m benchmarks.analysis_scale --sizes 250,500,1000 --endpoints 50 --samples 5
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

from auditor.canary import Canary
from auditor.config import Settings
from auditor.demo.lm import Persona, TrigramLM, persona_corpus
from auditor.demo.world import TEMPLATES, TOPICS
from auditor.importer import ImportRecord, import_records
from auditor.registry import sync_registry
from auditor.store import open_store, sync_endpoints


def _prompts(n: int) -> list[str]:
    rng = random.Random(0)
    return [rng.choice(TEMPLATES).format(t=f"{rng.choice(TOPICS)} and {rng.choice(TOPICS)}")
            for _ in range(n)]


def fill(db: Path, canaries: int, endpoints: int, samples: int) -> Settings:
    roles = ["protected"] + ["control"] * 10 + ["suspect"] * (endpoints - 11)
    names = [f"ep{i:02d}" for i in range(endpoints)]
    settings = Settings.model_validate({"database_url": f"sqlite:///{db}", "endpoints": [
        {"name": n, "provider": "http", "model": n, "role": r, "base_url": "http://127.0.0.1:9/v1"}
        for n, r in zip(names, roles, strict=True)]})
    prompts = _prompts(canaries)
    train = _prompts(300)
    lms = [TrigramLM().fit(persona_corpus(Persona(n, "Maker", i), train, 1, i))
           for i, n in enumerate(names)]
    rng = random.Random(1)
    lms[-1] = TrigramLM().fit((p, lms[0].generate(p, rng)) for p in train for _ in range(2))
    store = open_store(settings)
    with store.session() as s:
        eps = sync_endpoints(s, settings)
        sync_registry(s, [Canary(id=f"c{i:04d}", kind="free_text", prompt=p)
                          for i, p in enumerate(prompts)])
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for n, lm in zip(names, lms, strict=True):
        recs = [ImportRecord(canary_id=f"c{i:04d}", sample_index=k, collected_at=at,
                             text=lm.generate(p, rng, 1.0, 60))
                for i, p in enumerate(prompts) for k in range(samples)]
        with store.session() as s:
            import_records(s, eps[n], recs, source=n)
    store.close()
    return settings


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="250,500,1000", help="canary counts")
    ap.add_argument("--endpoints", type=int, default=50)
    ap.add_argument("--samples", type=int, default=5)
    args = ap.parse_args()
    from auditor.analysis import analyze_all

    rows = []
    with tempfile.TemporaryDirectory(prefix="auditor-scale-") as tmp:
        for size in [int(x) for x in args.sizes.split(",")]:
            db = Path(tmp) / f"scale-{size}.db"
            t0 = time.perf_counter()
            settings = fill(db, size, args.endpoints, args.samples)
            filled = time.perf_counter() - t0
            store = open_store(settings)
            tracemalloc.start()
            t0 = time.perf_counter()
            with store.session() as s:
                verdicts = analyze_all(s, settings)
            took = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            store.close()
            n = size * args.endpoints * args.samples
            rows.append((n, took))
            flagged = sum(v.significant for v in verdicts)
            print(f"responses={n} canaries={size} endpoints={args.endpoints} "
                  f"samples={args.samples} analysis={took:.1f}s "
                  f"per_100k={took / n * 1e5:.1f}s peak_python_mem={peak:.0f}MiB "
                  f"verdicts={len(verdicts)} flagged={flagged} (fill {filled:.0f}s)", flush=True)
    if len(rows) >= 2:
        (n0, t0_), (n1, t1) = rows[0], rows[-1]
        print(f"growth: {n1 / n0:.1f}x responses -> {t1 / t0_:.2f}x time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
