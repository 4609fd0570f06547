"""Builders shared by the probe and endpoint tests: settings, canaries, runs, queries."""

from __future__ import annotations

__all__ = ["attempts", "canary", "endpoint", "make_settings", "run", "write_canaries"]

from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from auditor.config import Settings
from auditor.probe import CycleRun, RunOptions, probe_once_sync
from auditor.ratelimit import Backoff
from auditor.store import Store
from auditor.store.models import Attempt

FAST = Backoff(base=0.01, cap=0.05)


def canary(cid: str, prompt: str = "Say something.", *, kind: str = "free_text",
           samples: int = 1, **extra: Any) -> dict[str, Any]:
    return {"id": cid, "kind": kind, "prompt": prompt, "samples": samples, **extra}


def endpoint(name: str, provider: str, base_url: str, **extra: Any) -> dict[str, Any]:
    limits = {"requests_per_minute": 1e6, "concurrency": 4, "timeout_seconds": 5.0,
              "max_retries": 0}
    limits.update(extra.pop("limits", {}))
    url = base_url if provider == "anthropic" else base_url + "/v1"
    return {"name": name, "provider": provider, "model": "test-model", "role": "suspect",
            "base_url": url, "limits": limits, **extra}


def write_canaries(directory: Path, canaries: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "canaries.yaml").write_text(yaml.safe_dump({"canaries": canaries}))
    return directory


def make_settings(tmp_path: Path, db_url: str, endpoints: list[dict[str, Any]],
                  canaries: list[dict[str, Any]], **extra: Any) -> Settings:
    cdir = write_canaries(tmp_path / "canaries", canaries)
    return Settings.model_validate({
        "database_url": db_url, "canaries_dir": str(cdir), "endpoints": endpoints,
        "base_dir": str(tmp_path), **extra})


def run(store: Store, settings: Settings, **kw: Any) -> CycleRun:
    options = kw.pop("options", None) or RunOptions(backoff=FAST)
    return probe_once_sync(store, settings, options=options, **kw)


def attempts(store: Store, cycle_id: int | None = None) -> list[Attempt]:
    with store.session() as session:
        q = select(Attempt).order_by(Attempt.id)
        if cycle_id is not None:
            q = q.where(Attempt.cycle_id == cycle_id)
        return list(session.scalars(q))
