"""Detection power and calibration on real model outputs, through the whole product path.

For every canary budget and seed: draw the canaries, load every involved model's answers
through the project's import path into a fresh SQLite database, run
``auditor.analysis.analyze_all`` exactly as the daemon does, and take each verdict's
p-value. Every control is also scored as a pseudo-suspect against each protected model
(left out of its own pool): these are extra negatives, and they show calibration.

    python -m benchmarks.provenance --cases ../shared/provenance-bench/cases.dev.json \\
        --data ../shared/provenance-bench --canaries 50,100,200,400 --seeds 5 --json out.json

Prints one line per budget:
``canaries=N AUROC=x.xxx TPR@0.05=x.xxx FPR@0.05=x.xxx cases=K seeds=S``
where K counts the scored (protected, suspect) pairs per seed: the file's cases plus the
pseudo-suspects.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from auditor.canary import Canary
from auditor.config import Settings
from auditor.importer import ImportRecord, import_records
from auditor.registry import sync_registry
from auditor.store import open_store, sync_endpoints
from auditor.store.models import Endpoint
from benchmarks.bench_data import (
    CasesFile,
    common_prompt_ids,
    draw_canaries,
    load_cases,
    load_outputs,
    load_prompts,
    score_pvalues,
)

__all__ = ["endpoint_name", "main", "run_budget"]

COLLECTED = datetime(2026, 1, 1, tzinfo=UTC)


def endpoint_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", model)[:64]


def _settings(cf: CasesFile, db_url: str, analysis: dict[str, object] | None = None) -> Settings:
    protected = set(cf.protected_models())
    endpoints = []
    for m in cf.models():
        role = "control" if m in cf.controls else "protected" if m in protected else "suspect"
        endpoints.append({"name": endpoint_name(m), "provider": "http", "model": m, "role": role,
                          "base_url": "http://127.0.0.1:9/v1"})
    return Settings.model_validate({"database_url": db_url, "endpoints": endpoints,
                                    "analysis": analysis or {}})


def run_budget(cf: CasesFile, data: Path, n: int, seed: int, workdir: Path,
               alpha: float = 0.05,
               analysis: dict[str, object] | None = None) -> list[dict[str, object]]:
    """Scores every case and pseudo-suspect at one budget and seed; returns one row each."""
    models = cf.models()
    ids = draw_canaries(common_prompt_ids(models, data), n, seed)
    prompts = load_prompts(data)
    db = workdir / f"bench-{n}-{seed}.db"
    settings = _settings(cf, f"sqlite:///{db}", analysis)
    store = open_store(settings)
    try:
        with store.session() as s:
            eps = sync_endpoints(s, settings)
            sync_registry(s, [Canary(id=f"c-{i}", kind="free_text", prompt=prompts[i])
                              for i in ids])
            for m in models:
                out = load_outputs(m, data)
                recs = [ImportRecord(canary_id=f"c-{i}", text=out[i], collected_at=COLLECTED)
                        for i in ids]
                import_records(s, eps[endpoint_name(m)], recs, source=f"{m}.jsonl")
        rows: list[dict[str, object]] = []
        from auditor.analysis import analyze_all

        labels = {(c.protected, c.suspect): c.label for c in cf.cases}
        for p in cf.protected_models():
            suspects = [c.suspect for c in cf.cases if c.protected == p]
            pseudo = [c for c in cf.controls if c != p and c not in suspects]
            with store.session() as s:
                verdicts = analyze_all(
                    s, settings, protected=[endpoint_name(p)],
                    suspects=[endpoint_name(x) for x in suspects + pseudo],
                    monitor_update=False)
                names = {e.id: e.name for e in s.query(Endpoint)}
                by_suspect = {names[v.suspect_id]: v for v in verdicts if v.segment is None}
                for x in suspects + pseudo:
                    v = by_suspect.get(endpoint_name(x))
                    rows.append({
                        "canaries": n, "seed": seed, "protected": p, "suspect": x,
                        "label": labels.get((p, x), 0), "pseudo": x in pseudo,
                        "p_value": v.p_value if v else 1.0,
                        "effect": v.effect if v else None,
                        "flagged_controls": (v.params or {}).get("flagged_controls", {})
                        if v else {},
                    })
                s.rollback()  # the benchmark keeps no verdicts
        return rows
    finally:
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)


def summarise(rows: Sequence[dict[str, object]], alpha: float) -> dict[str, float]:
    p = np.array([float(r["p_value"]) for r in rows])  # type: ignore[arg-type]
    y = np.array([int(r["label"]) for r in rows])  # type: ignore[call-overload]
    return score_pvalues(p, y, alpha)


def per_case_table(rows: Sequence[dict[str, object]], alpha: float) -> list[str]:
    """One line per (protected, suspect): label, median p over seeds and how many seeds
    were significant; positives first, then negatives by median p."""
    agg: dict[tuple[str, str, int, bool], list[float]] = {}
    for r in rows:
        key = (str(r["protected"]), str(r["suspect"]), int(r["label"]),  # type: ignore[call-overload]
               bool(r["pseudo"]))
        agg.setdefault(key, []).append(float(r["p_value"]))  # type: ignore[arg-type]
    order = sorted(agg, key=lambda k: (-k[2], float(np.median(agg[k]))))
    out = []
    for k in order:
        ps = np.array(agg[k])
        who = f"{k[1]} (control as pseudo-suspect)" if k[3] else k[1]
        out.append(f"  {k[0]:22s} {who:50s} label={k[2]} median p={np.median(ps):.4f} "
                   f"significant {int((ps <= alpha).sum())}/{ps.size}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, required=True, help="cases file (cases.dev.json form)")
    ap.add_argument("--data", type=Path, required=True, help="provenance-bench folder")
    ap.add_argument("--canaries", default="50,100,200,400", help="comma-separated budgets")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--json", type=Path, help="write every case's p-value here")
    ap.add_argument("--analysis", action="append", default=[], metavar="KEY=VALUE",
                    help="an [analysis] setting for the run (repeatable), e.g. "
                         "exclude_flagged_controls=true or representations=word,layout,style")
    ap.add_argument("--per-case", action="store_true",
                    help="after each budget, print every pair's median p over the seeds "
                         "(to standard error)")
    args = ap.parse_args(argv)
    cf = load_cases(args.cases)
    analysis: dict[str, object] = {}
    for kv in args.analysis:
        key, _, value = kv.partition("=")
        analysis[key.strip()] = value.strip()
    budgets = [int(x) for x in args.canaries.split(",") if x.strip()]
    all_rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="auditor-bench-") as tmp:
        for n in budgets:
            t0 = time.perf_counter()
            rows: list[dict[str, object]] = []
            for seed in range(args.seeds):
                rows += run_budget(cf, args.data, n, seed, Path(tmp), args.alpha, analysis)
            m = summarise(rows, args.alpha)
            print(f"canaries={n} AUROC={m['auroc']:.3f} TPR@{args.alpha:g}={m['tpr']:.3f} "
                  f"FPR@{args.alpha:g}={m['fpr']:.3f} cases={len(rows) // args.seeds} "
                  f"seeds={args.seeds}", flush=True)
            print(f"  ceiling TPR@{args.alpha:g}={m['ceiling']:.3f} (the best any threshold on "
                  f"these p-values reaches at that FPR) ({time.perf_counter() - t0:.1f}s)",
                  file=sys.stderr)
            if args.per_case:
                print("\n".join(per_case_table(rows, args.alpha)), file=sys.stderr)
            all_rows += rows
    if args.json:
        args.json.write_text(json.dumps(all_rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
