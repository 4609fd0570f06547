"""The signing key: created private, refused when missing, exposed, or about to be replaced."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from auditor.errors import AuditorError
from auditor.signing import (
    fingerprint,
    init_key,
    load_private_key,
    load_public_key,
    public_pem,
    sign,
    verify_signature,
)


def test_init_creates_a_key_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.pem"
    init_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_init_refuses_to_replace_a_key(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    first = fingerprint(init_key(path))
    with pytest.raises(AuditorError, match="--force"):
        init_key(path)
    assert fingerprint(load_private_key(path)) == first


def test_missing_key_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "nope.pem"
    with pytest.raises(AuditorError, match="auditor keys init") as err:
        load_private_key(path)
    assert str(path) in str(err.value)


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    init_key(path)
    path.chmod(0o644)
    with pytest.raises(AuditorError, match="chmod 600"):
        load_private_key(path)


def test_signature_verifies_with_the_published_key_only_over_the_same_bytes(tmp_path: Path) -> None:
    key = init_key(tmp_path / "k.pem")
    pub = load_public_key(public_pem(key))
    sig = sign(key, b"manifest")
    assert verify_signature(pub, sig, b"manifest")
    assert not verify_signature(pub, sig, b"manifesT")
