from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from auditor.errors import AuditorError
from auditor.importer import import_jsonl
from auditor.registry import load_registry, sync_registry
from auditor.store import Store, sync_endpoints
from auditor.store.models import Attempt, Cycle, Response
from tests.factories import REPO, settings_with


def _lines(tmp_path: Path, rows: list[object]) -> Path:
    p = tmp_path / "in.jsonl"
    p.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return p


def _setup(store: Store):  # type: ignore[no-untyped-def]
    with store.session() as s:
        eps = sync_endpoints(s, settings_with({"imp": "suspect"}))
        sync_registry(s, load_registry(REPO / "canaries"))
    return eps["imp"]


def _count(store: Store, table: type) -> int:
    with store.session() as s:
        return int(s.scalar(select(func.count()).select_from(table)) or 0)


def test_import_writes_marked_responses_into_one_cycle(store: Store, tmp_path: Path) -> None:
    ep = _setup(store)
    p = _lines(tmp_path, [
        {"canary_id": "ft-greeting", "sample_index": 0, "text": "Hello",
         "collected_at": "2026-11-01T10:00:00Z", "raw": '{"x":1}'},
        {"canary_id": "ft-greeting", "sample_index": 1, "text": "Hey",
         "collected_at": "2026-11-01T10:01:00+00:00"},
    ])
    with store.session() as s:
        result = import_jsonl(s, ep, p)
    assert result.imported == 2
    with store.session() as s:
        rows = s.scalars(select(Response).order_by(Response.seq)).all()
        cycle = s.get(Cycle, result.cycle_id)
    assert [r.imported for r in rows] == [True, True]
    assert cycle is not None and cycle.kind == "import"
    from auditor.canonical import sha256_hex

    assert rows[0].raw_sha256 == sha256_hex('{"x":1}')


def test_a_bad_line_is_named_and_nothing_is_written(store: Store, tmp_path: Path) -> None:
    ep = _setup(store)
    p = _lines(tmp_path, [
        {"canary_id": "ft-greeting", "text": "ok", "collected_at": "2026-11-01T10:00:00Z"},
        "{not json",
        {"canary_id": "ft-greeting", "text": "no tz", "collected_at": "2026-11-01T10:00:00"},
        {"canary_id": "nope", "sample_index": 1, "text": "x",
         "collected_at": "2026-11-01T10:00:00Z"},
    ])
    with pytest.raises(AuditorError) as info, store.session() as s:
        import_jsonl(s, ep, p)
    text = str(info.value)
    assert f"{p}:2" in text and f"{p}:3" in text and "timezone" in text
    assert _count(store, Response) == 0 and _count(store, Attempt) == 0


def test_unknown_canary_writes_nothing(store: Store, tmp_path: Path) -> None:
    ep = _setup(store)
    p = _lines(tmp_path, [
        {"canary_id": "ft-greeting", "text": "ok", "collected_at": "2026-11-01T10:00:00Z"},
        {"canary_id": "nope", "text": "x", "collected_at": "2026-11-01T10:00:00Z"},
    ])
    with pytest.raises(AuditorError, match="unknown canary"), store.session() as s:
        import_jsonl(s, ep, p)
    assert _count(store, Response) == 0


def test_reimporting_the_same_file_adds_nothing(store: Store, tmp_path: Path) -> None:
    ep = _setup(store)
    p = _lines(tmp_path, [
        {"canary_id": "ft-greeting", "text": "Hello", "collected_at": "2026-11-01T10:00:00Z"},
    ])
    with store.session() as s:
        import_jsonl(s, ep, p)
    with store.session() as s:
        again = import_jsonl(s, ep, p)
    assert again.imported == 0 and again.skipped == 1
    assert _count(store, Response) == 1


def test_an_overlapping_import_adds_only_what_is_new_and_links_each_attempt(
        any_store: Store, tmp_path: Path) -> None:
    """A second file overlapping the first in time: its duplicate is skipped, answers before,
    inside and after the first file's stretch are added, each response points at the
    attempt of its own canary and sample, and the ledger verifies."""
    from auditor.store import ledger

    ep = _setup(any_store)

    def rec(minute: int, text: str, sample: int, canary: str = "ft-greeting") -> dict[str, object]:
        return {"canary_id": canary, "sample_index": sample, "text": text,
                "collected_at": f"2026-11-01T10:{minute:02d}:00Z"}

    with any_store.session() as s:
        first = import_jsonl(s, ep, _lines(tmp_path, [
            rec(0, "a", 0), rec(5, "b", 1), rec(10, "c", 2, "ft-lighthouse-keeper")]))
    with any_store.session() as s:
        second = import_jsonl(s, ep, _lines(tmp_path, [
            rec(5, "b", 1), rec(5, "b changed", 2), rec(1, "early", 3, "ft-lighthouse-keeper"),
            rec(30, "late", 4)]))
    assert (first.imported, second.imported, second.skipped) == (3, 3, 1)
    with any_store.session() as s:
        pairs = s.execute(select(Response, Attempt).join(Attempt, Attempt.id == Response.attempt_id)
                          .order_by(Response.seq)).all()
        assert [r.text for r, _ in pairs] == ["a", "b", "c", "b changed", "early", "late"]
        assert all((a.canary_version_id, a.sample_index, a.endpoint_id)
                   == (r.canary_version_id, r.sample_index, r.endpoint_id) for r, a in pairs)
        assert all(a.started_at == r.collected_at for r, a in pairs)
        assert ledger.verify(s).ok
