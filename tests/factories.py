"""Small builders for tests: settings with endpoints, and a store filled through the
real registry and import paths."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from auditor.config import Settings
from auditor.demo.lm import TrigramLM
from auditor.demo.world import build_models, harvest_prompts
from auditor.importer import ImportRecord, import_records
from auditor.registry import load_registry, sync_registry
from auditor.store import Store, sync_endpoints

REPO = Path(__file__).resolve().parents[1]


def settings_with(endpoints: dict[str, str], **kwargs: object) -> Settings:
    """Settings with one endpoint per ``name -> role`` (provider http on loopback)."""
    return Settings.model_validate({
        **kwargs,
        "endpoints": [
            {"name": name, "provider": "http", "model": f"model-{name}", "role": role,
             "base_url": "http://127.0.0.1:9/v1"}
            for name, role in endpoints.items()
        ],
    })


def fill(
    store: Store,
    settings: Settings,
    answers: dict[str, dict[str, list[str]]],
    canaries_dir: Path = REPO / "canaries",
    start: datetime = datetime(2026, 11, 1, tzinfo=UTC),
) -> None:
    """``answers[endpoint][canary_id]`` = texts (one per sample), imported and chained."""
    with store.session() as s:
        eps = sync_endpoints(s, settings)
        sync_registry(s, load_registry(canaries_dir))
        for name, per_canary in answers.items():
            records = [
                ImportRecord(canary_id=cid, sample_index=i, text=text,
                             collected_at=start + timedelta(minutes=i))
                for cid, texts in per_canary.items() for i, text in enumerate(texts)
            ]
            import_records(s, eps[name], records, source=f"{name}.jsonl")


def demo_lms() -> dict[str, TrigramLM]:
    """The demo world's models, plus a student trained on the protected model's answers."""
    models = build_models().lms
    rng = random.Random(5)
    teacher = models["protected"]
    pairs = [(p, teacher.generate(p, rng)) for p in harvest_prompts() for _ in range(2)]
    return {**models, "student": TrigramLM().fit(pairs)}
