"""The reported models' runs, kept as responses arrive, are the runs the database finds
over the whole history (on SQLite and on PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from auditor import model_runs
from auditor.canary import Canary
from auditor.importer import ImportRecord, import_records
from auditor.registry import sync_registry
from auditor.store import open_store, sync_endpoints
from auditor.store.models import Endpoint, ModelRunsHead, Response
from tests.factories import settings_with

LABELS = {  # per endpoint, the reported model of each response in order (None: none)
    "a": ["m1", "m1", None, "m1", "m2", "m2", "", "m2", "m1", "m1"],
    "b": ["x"] * 10,
    "c": [None] * 10,
}


def test_stored_runs_equal_the_runs_of_the_whole_history(db_url: str) -> None:
    settings = settings_with({"a": "suspect", "b": "control", "c": "control"})
    store = open_store(db_url, migrate=True)
    try:
        with store.session() as s:
            eps = sync_endpoints(s, settings)
            sync_registry(s, [Canary(id="q-1", kind="free_text", prompt="Say something.")])
        start = datetime(2026, 11, 1, tzinfo=UTC)
        read = []
        for part in (range(0, 3), range(3, 7), range(7, 10)):  # three cycles
            with store.session() as s:
                for name, labels in LABELS.items():
                    import_records(s, eps[name], [
                        ImportRecord(canary_id="q-1", sample_index=i, text=f"answer {i}",
                                     collected_at=start + timedelta(hours=i),
                                     reported_model=labels[i]) for i in part],
                                   source=f"{name}-{part.start}")
            with store.session() as s:
                read.append(model_runs.update(s))
        with store.session() as s:
            names = {e.id: e.name for e in s.scalars(select(Endpoint))}
            kept = model_runs.runs(s, names)
            found = model_runs.runs_between(s, names, [])
        assert kept == found
        assert [m for _, m in kept["a"]] == ["m1", "m2", "m1"] and len(kept["b"]) == 1
        assert "c" not in kept
        labelled = sum(1 for labels in LABELS.values() for x in labels if x)
        assert sum(read) == labelled  # each labelled response read once
        with store.session() as s:  # and the next update starts after the newest response
            assert s.get(ModelRunsHead, 1).seq == s.scalar(select(func.max(Response.seq)))
            assert model_runs.update(s) == 0
    finally:
        store.close()
