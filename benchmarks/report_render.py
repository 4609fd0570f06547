"""Report rendering at scale: a 1,000-canary verdict, from store to signed, verified bundle.

Fills a fresh SQLite store through the real paths (endpoints from settings, canaries
synced and committed, responses imported and chained: 1 protected, 3 controls, 1 suspect,
2 samples each), stores a verdict as analysis would, then times each report stage.

    .venv/bin/python benchmarks/report_render.py [--canaries 1000] [--samples 2]

Prints one line per stage and the total; nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auditor.bundle import verify_bundle, write_bundle  # noqa: E402
from auditor.canary import Canary  # noqa: E402
from auditor.config import Settings  # noqa: E402
from auditor.importer import ImportRecord, import_records  # noqa: E402
from auditor.registry import commit_registry, sync_registry  # noqa: E402
from auditor.report import ReportRequest, build_context, render_html, render_pdf  # noqa: E402
from auditor.signing import init_key  # noqa: E402
from auditor.store import open_store, sync_endpoints  # noqa: E402
from auditor.store.models import Verdict  # noqa: E402

NAMES = {"prot": "protected", "sus": "suspect", "c1": "control", "c2": "control",
         "c3": "control"}
WORDS = ("lantern harbour quiet tide salt rope keeper night beam fog gull stone window ember "
         "kettle copper morning ledger river orchard bell winter thread").split()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--canaries", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="report-bench-"))
    settings = Settings.model_validate({
        "database_url": f"sqlite:///{tmp / 'a.db'}",
        "signing": {"key_path": str(tmp / "key.pem")},
        "endpoints": [{"name": n, "role": r, "provider": "openai", "model": f"m-{n}"}
                      for n, r in NAMES.items()],
    })
    store = open_store(settings.resolved_database_url(), migrate=True)
    rng = random.Random(0)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    t0 = time.perf_counter()
    ids = [f"ft-{i:05d}" for i in range(args.canaries)]
    with store.session() as s:
        eps = sync_endpoints(s, settings)
        sync_registry(s, [Canary(id=c, kind="free_text", prompt=f"secret prompt {c}")
                          for c in ids])
        commit_registry(s)
        for name in NAMES:
            recs = [ImportRecord(canary_id=c, sample_index=k, collected_at=start + timedelta(
                seconds=i), text=" ".join(rng.choice(WORDS) for _ in range(60)))
                for i, c in enumerate(ids) for k in range(args.samples)]
            import_records(s, eps[name], recs, source=f"{name}.jsonl")
        s.add(Verdict(
            suspect_id=eps["sus"].id, protected_id=eps["prot"].id, method="bench",
            params={"alpha": 0.05, "seed": 0}, statistic=3.0, p_value=1e-4, q_value=None,
            e_value=50.0, effect=0.2, effect_low=0.1, effect_high=0.3,
            n_canaries=len(ids), n_samples=len(ids) * args.samples * len(NAMES),
            canaries=ids, controls=["c1", "c2", "c3"],
            contributions=[{"canary_id": c, "canary_version": 1, "contribution": 1 / (i + 1)}
                           for i, c in enumerate(ids)],
            channels={"free_text": {"p_value": 1e-4}}, segment=None, significant=True,
            code_version="bench", created_at=start + timedelta(days=2)))
    print(f"fill store ({len(ids) * args.samples * len(NAMES)} responses): "
          f"{time.perf_counter() - t0:.1f} s (not part of the report)")
    key = init_key(settings.signing.key_path)
    req = ReportRequest("sus")
    with store.session() as s:
        t = time.perf_counter()
        ctx = build_context(s, settings, req)
        t_ctx = time.perf_counter() - t
        bundle = {"name": "bench", "manifest_sha256": "0" * 64, "fingerprint": "0" * 64,
                  "timestamp": None, "tsa_url": None, "files": {}, "renderings": []}
        t = time.perf_counter()
        html = render_html(ctx, bundle)
        t_html = time.perf_counter() - t
        t = time.perf_counter()
        pdf = render_pdf(html)
        t_pdf = time.perf_counter() - t
        t = time.perf_counter()
        result = write_bundle(s, settings, req, key, out_dir=tmp / "out")
        t_all = time.perf_counter() - t
    t = time.perf_counter()
    verify_bundle(result.path)
    t_verify = time.perf_counter() - t
    print(f"context (query + evidence + figure): {t_ctx:.2f} s")
    print(f"html: {t_html:.2f} s ({len(html) / 1e6:.1f} MB)")
    print(f"pdf: {t_pdf:.2f} s ({len(pdf) / 1e6:.1f} MB)")
    print(f"whole `auditor report` bundle (html, pdf, json, sign, zip): {t_all:.2f} s")
    print(f"auditor verify: {t_verify:.2f} s")
    store.close()


if __name__ == "__main__":
    main()
