"""The daemon's registry commitments are published like ``auditor canaries commit``'s:
signed with the configured key, so a bundle signed later by another key shows."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from auditor.daemon.reload import load, sync_to_store
from auditor.signing import fingerprint, init_key
from auditor.store import open_store
from auditor.store.models import RegistryCommit
from tests.daemon.helpers import canaries, write_canaries, write_config


def _setup(tmp_path: Path, key_path: str) -> Path:
    write_canaries(tmp_path / "canaries", canaries(3))
    return write_config(tmp_path / "auditor.toml", f"sqlite:///{tmp_path / 'a.db'}",
                        "http://127.0.0.1:9", extra=f'[signing]\nkey_path = "{key_path}"')


def test_a_commitment_the_daemon_makes_is_signed_with_the_configured_key(
        tmp_path: Path) -> None:
    key = init_key(tmp_path / "keys" / "signing.pem")
    loaded = load(_setup(tmp_path, "keys/signing.pem"))
    store = open_store(loaded.settings)
    try:
        root = sync_to_store(store, loaded)
        with store.session() as s:
            rc = s.scalars(select(RegistryCommit).where(RegistryCommit.root == root)).one()
            statement = rc.attestation["statement"]
        assert statement["root"] == root
        assert statement["signer_fingerprint"] == fingerprint(key)
    finally:
        store.close()


def test_without_a_key_the_commitment_is_left_unattested_and_nothing_fails(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    loaded = load(_setup(tmp_path, "keys/missing.pem"))
    store = open_store(loaded.settings)
    try:
        with caplog.at_level(logging.WARNING, logger="auditor.daemon"):
            root = sync_to_store(store, loaded)
        with store.session() as s:
            rc = s.scalars(select(RegistryCommit).where(RegistryCommit.root == root)).one()
            assert rc.attestation is None
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        store.close()
