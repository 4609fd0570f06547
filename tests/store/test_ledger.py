from __future__ import annotations

from sqlalchemy import delete, select, update

from auditor.store import Store, ledger
from auditor.store.models import CanaryVersion, Endpoint, LedgerHead, Response
from tests.factories import fill, settings_with

ANSWERS = {
    "p": {"ft-greeting": ["Hello! How can I help?", "Hi there!"],
          "ft-lighthouse-keeper": ["Dark."]},
    "s": {"ft-greeting": ["Hello! How may I help?"]},
}


def _filled(store: Store) -> None:
    fill(store, settings_with({"p": "protected", "s": "suspect"}), ANSWERS)


def test_imported_responses_form_a_chain_that_verifies(any_store: Store) -> None:
    _filled(any_store)
    with any_store.session() as s:
        check = ledger.verify(s)
        rows = s.scalars(select(Response).order_by(Response.seq)).all()
        head = s.get(LedgerHead, 1)
    assert check.ok and check.rows == 4
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    assert rows[0].prev_chain == ledger.GENESIS
    assert all(b.prev_chain == a.chain for a, b in zip(rows, rows[1:], strict=False))
    assert head is not None and head.chain == rows[-1].chain == check.head


def test_an_altered_response_text_is_named_as_the_first_break(store: Store) -> None:
    _filled(store)
    with store.session() as s:
        s.execute(update(Response).where(Response.seq == 3).values(text="Hi there?"))
    with store.session() as s:
        check = ledger.verify(s)
    assert not check.ok and check.broken is not None
    assert check.broken.seq == 3 and "altered" in check.broken.reason


def test_a_removed_response_breaks_the_chain(store: Store) -> None:
    _filled(store)
    with store.session() as s:
        s.execute(delete(Response).where(Response.seq == 2))
    with store.session() as s:
        check = ledger.verify(s)
    assert check.broken is not None and check.broken.seq == 2 and "missing" in check.broken.reason


def test_removing_the_last_response_is_caught_by_the_head(store: Store) -> None:
    _filled(store)
    with store.session() as s:
        s.execute(delete(Response).where(Response.seq == 4))
    with store.session() as s:
        check = ledger.verify(s)
    assert check.broken is not None and "head" in check.broken.reason


def test_a_recomputed_forgery_is_caught_by_the_next_link(store: Store) -> None:
    """Rewriting one row's hashes consistently still breaks the following row's link."""
    _filled(store)
    from auditor.canonical import canonical_json, sha256_hex

    with store.session() as s:
        row = s.scalars(select(Response).where(Response.seq == 2)).one()
        row.text = "forged"
        ep, cv = s.get_one(Endpoint, row.endpoint_id), s.get_one(CanaryVersion,
                                                                  row.canary_version_id)
        row.record_hash = sha256_hex(canonical_json(ledger.ledger_record(row, ep, cv)))
        row.chain = ledger.chain_hash(row.prev_chain, row.record_hash)
    with store.session() as s:
        check = ledger.verify(s)
    assert check.broken is not None and check.broken.seq == 3


def test_raw_bodies_moved_out_leave_the_ledger_verifiable(any_store: Store) -> None:
    """Retention (README): the chain holds raw_sha256, not the body, so raw_body can be
    archived elsewhere and cleared; the archived body still hashes to raw_sha256."""
    from datetime import UTC, datetime

    from auditor.canonical import sha256_hex
    from auditor.importer import ImportRecord, import_records
    from auditor.registry import load_registry, sync_registry
    from auditor.store import sync_endpoints
    from tests.factories import REPO

    with any_store.session() as s:
        eps = sync_endpoints(s, settings_with({"p": "protected"}))
        sync_registry(s, load_registry(REPO / "canaries"))
        import_records(s, eps["p"], [
            ImportRecord(canary_id="ft-greeting", sample_index=i, text=f"Hello {i}",
                         raw=f'{{"id": "chatcmpl-{i}", "text": "Hello {i}"}}',
                         collected_at=datetime(2026, 11, 1, 12, i, tzinfo=UTC))
            for i in range(3)], source="p.jsonl")
    with any_store.session() as s:
        archive = {seq: (digest, body) for seq, digest, body in s.execute(
            select(Response.seq, Response.raw_sha256, Response.raw_body)).tuples()}
        s.execute(update(Response).where(Response.seq <= 2).values(raw_body=None))
    with any_store.session() as s:
        check = ledger.verify(s)
        left = s.scalars(select(Response.raw_body).order_by(Response.seq)).all()
    assert check.ok and check.rows == 3
    assert left[:2] == [None, None] and left[2] is not None
    assert all(body is not None and sha256_hex(body) == digest
               for digest, body in archive.values())
