"""``auditor.store.stats``: rows, sizes and responses per day on real databases."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from auditor.errors import AuditorError
from auditor.store import Store, db, open_store, stats
from tests.factories import fill, settings_with

SETTINGS = settings_with({"p": "protected", "s": "suspect"})


def _fill_two_days(store: Store) -> None:
    """Three of p's answers at 23:58, 23:59 on Nov 1 and 00:00 on Nov 2 (UTC); two of s's
    on Nov 4; one of s's on Oct 20, before the window."""
    fill(store, SETTINGS, {"p": {"ft-greeting": ["Hello!", "Hi!", "Hey!"]}},
         start=datetime(2026, 11, 1, 23, 58, tzinfo=UTC))
    fill(store, SETTINGS, {"s": {"ft-greeting": ["Hello.", "Hi."]}},
         start=datetime(2026, 11, 4, 9, 0, tzinfo=UTC))
    fill(store, SETTINGS, {"s": {"ft-lighthouse-keeper": ["Dark."]}},
         start=datetime(2026, 10, 20, 12, 0, tzinfo=UTC))


def test_rows_sizes_and_responses_per_day(any_store: Store) -> None:
    _fill_two_days(any_store)
    got = stats.collect(any_store.engine, days=5, today=date(2026, 11, 4))

    assert got.revision == got.head == db.head_revision()
    responses = got.table("responses")
    assert responses is not None and responses.rows == 6 and not responses.rows_estimated
    endpoints = got.table("endpoints")
    assert endpoints is not None and endpoints.rows == 2
    assert got.table("alembic_version") is None
    assert [(d.day.isoformat(), d.rows, d.imported) for d in got.days] == [
        ("2026-10-31", 0, 0), ("2026-11-01", 2, 2), ("2026-11-02", 1, 1),
        ("2026-11-03", 0, 0), ("2026-11-04", 2, 2)]
    assert responses.bytes is not None and responses.bytes > 0
    assert responses.index_bytes is not None and 0 < responses.index_bytes < responses.bytes
    assert got.database_bytes >= responses.bytes
    per_row = responses.bytes / 6
    assert got.days[1].approx_bytes == round(2 * per_row)
    assert got.days[0].approx_bytes == 0
    as_dict = got.as_dict()
    assert as_dict["days"][1] == {"day": "2026-11-01", "rows": 2, "imported": 2,
                                  "approx_bytes": round(2 * per_row)}


def test_an_empty_store_has_zero_responses_every_day(any_store: Store) -> None:
    got = stats.collect(any_store.engine, days=14)
    assert len(got.days) == 14 and all(d.rows == 0 for d in got.days)
    assert got.days[-1].day == datetime.now(UTC).date()
    responses = got.table("responses")
    assert responses is not None and responses.rows == 0
    head = got.table("ledger_head")
    assert head is not None and head.rows == 1  # the genesis row
    assert all(d.approx_bytes == 0 for d in got.days)


def test_a_database_without_the_schema_names_the_fix(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        with pytest.raises(AuditorError, match=r"no auditor schema \(fix: run `auditor db "
                                               r"upgrade`\)"):
            stats.collect(engine)
    finally:
        engine.dispose()


def test_sqlite_sizes_come_from_dbstat_and_add_up(store: Store) -> None:
    _fill_two_days(store)
    got = stats.collect(store.engine, days=3)
    assert got.size_source == "dbstat"
    with store.engine.connect() as conn:
        pages = conn.execute(text("PRAGMA page_count")).scalar_one()
        size = conn.execute(text("PRAGMA page_size")).scalar_one()
        free = conn.execute(text("PRAGMA freelist_count")).scalar_one()
        owner = dict(conn.execute(text("SELECT name, tbl_name FROM sqlite_master")).all())
        pgsize = dict(conn.execute(text("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"))
                      .all())
    shown = {t.name for t in got.tables}
    others = sum(n for name, n in pgsize.items() if owner.get(name, name) not in shown)
    assert {owner.get(n, n) for n in pgsize} - shown == {"sqlite_schema", "alembic_version"}
    # every page belongs to a table shown (with its indexes), alembic's or SQLite's own
    responses = got.table("responses")
    assert responses is not None and responses.bytes == sum(
        n for name, n in pgsize.items() if owner.get(name) == "responses")
    assert sum(t.bytes or 0 for t in got.tables) + others + free * size == pages * size
    path = Path(str(store.engine.url.database))
    assert got.database_bytes == path.stat().st_size + (
        os.path.getsize(f"{path}-wal") if os.path.exists(f"{path}-wal") else 0)


def test_sqlite_without_dbstat_reports_the_file_and_says_so(store: Store) -> None:
    _fill_two_days(store)
    got = stats.collect(store.engine, days=3, dbstat=False)
    assert got.size_source == "file"
    assert all(t.bytes is None for t in got.tables)
    assert [d.approx_bytes for d in stats.collect(store.engine, days=1, dbstat=False,
                                                   today=date(2026, 11, 1)).days] == [None]
    assert any("no dbstat" in n for n in got.notes)
    assert got.database_bytes > 0
    responses = got.table("responses")
    assert responses is not None and responses.rows == 6


def test_postgresql_large_tables_show_the_planner_estimate_unless_exact(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    st = open_store(pg_url, migrate=True)
    try:
        _fill_two_days(st)
        with st.engine.begin() as conn:
            conn.execute(text("ANALYZE responses"))
        monkeypatch.setattr(stats, "ESTIMATE_ABOVE", 3)
        estimated = stats.collect(st.engine, days=1).table("responses")
        exact = stats.collect(st.engine, days=1, exact=True).table("responses")
    finally:
        st.close()
    assert estimated is not None and estimated.rows_estimated and estimated.rows == 6
    assert exact is not None and not exact.rows_estimated and exact.rows == 6
