from __future__ import annotations

from sqlalchemy import update

from auditor.store import Store, custody
from auditor.store.models import CustodyEntry


def _three(store: Store) -> None:
    with store.session() as s:
        for i, action in enumerate(("generate", "download", "verify")):
            custody.append(s, actor=f"user{i}", action=action, address="127.0.0.1",
                           manifest_sha256="ab" * 32, detail={"n": i})


def test_custody_entries_chain_and_verify(any_store: Store) -> None:
    _three(any_store)
    with any_store.session() as s:
        check = custody.verify(s)
    assert check.ok and check.rows == 3


def test_an_altered_custody_entry_breaks_the_chain(any_store: Store) -> None:
    _three(any_store)
    with any_store.session() as s:
        s.execute(update(CustodyEntry).where(CustodyEntry.seq == 2).values(actor="someone else"))
    with any_store.session() as s:
        check = custody.verify(s)
    assert not check.ok and "entry 2" in (check.broken or "")


def test_a_removed_custody_entry_shows(store: Store) -> None:
    _three(store)
    with store.session() as s:
        s.query(CustodyEntry).filter(CustodyEntry.seq == 3).delete()
    with store.session() as s:
        check = custody.verify(s)
    assert not check.ok and "removed" in (check.broken or "")
