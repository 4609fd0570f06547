"""Watermark keys: made into a 0600 file or an export line, identified, never stored."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
from test_cli import run

from auditor.config import load_settings
from auditor.errors import AuditorError
from auditor.watermark.keys import KEY_ID_LABEL, key_id, load_key

HEX_KEY = re.compile(r"[0-9a-f]{64}")


def test_keygen_writes_a_private_file_and_refuses_to_overwrite_it(tmp_path: Path) -> None:
    path = tmp_path / "wm.key"
    first = run("watermark", "keygen", "--out", str(path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text().strip()
    assert HEX_KEY.fullmatch(key)
    assert key not in first.stdout + first.stderr  # only its id is shown
    assert key_id(bytes.fromhex(key)) in first.stderr

    again = run("watermark", "keygen", "--out", str(path), cwd=tmp_path)
    assert again.returncode != 0
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr
    assert path.read_text().strip() == key

    path.chmod(0o644)
    forced = run("watermark", "keygen", "--out", str(path), "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert path.read_text().strip() != key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keygen_prints_an_export_line_and_id_reads_it_back(tmp_path: Path) -> None:
    made = run("watermark", "keygen", "--env", "MY_WM_KEY", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    line = made.stdout.strip()
    assert re.fullmatch(r"export MY_WM_KEY=[0-9a-f]{64}", line)
    key = line.split("=", 1)[1]
    shown = run("watermark", "id", "--env", "MY_WM_KEY", cwd=tmp_path,
                env={"MY_WM_KEY": key})
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == key_id(bytes.fromhex(key))
    assert shown.stdout.strip() in made.stderr


def test_two_keys_have_different_ids_and_the_id_is_the_documented_hmac() -> None:
    import hashlib
    import hmac

    a, b = bytes(32), bytes([1]) + bytes(31)
    assert key_id(a) != key_id(b)
    assert key_id(a) == hmac.new(a, KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def test_a_key_file_readable_by_others_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "open.key"
    path.write_text("ab" * 32)
    path.chmod(0o644)
    with pytest.raises(AuditorError) as err:
        load_key(file=path)
    assert "chmod 600" in str(err.value) and str(path) in str(err.value)
    result = run("watermark", "id", "--file", str(path), cwd=tmp_path)
    assert result.returncode != 0 and "chmod 600" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_without_a_key_and_an_unset_variable_are_named(tmp_path: Path) -> None:
    path = tmp_path / "not.key"
    path.write_text("hello\n")
    path.chmod(0o600)
    with pytest.raises(AuditorError, match="does not hold a watermark key"):
        load_key(file=path)
    with pytest.raises(AuditorError, match="NO_SUCH_WM_VAR is not set"):
        load_key(env="NO_SUCH_WM_VAR")


def _config(tmp_path: Path, keys: str) -> Path:
    path = tmp_path / "auditor.toml"
    path.write_text(f"[watermark]\ngamma = 0.25\n\n{keys}")
    return path


def test_configured_keys_are_checked_against_their_ids(tmp_path: Path) -> None:
    key = bytes(range(32))
    (tmp_path / "wm.key").write_text(key.hex())
    (tmp_path / "wm.key").chmod(0o600)
    good = _config(tmp_path, (
        "[[watermark.keys]]\n"
        f'id = "{key_id(key)}"\nfile = "wm.key"\n'
        "valid_from = 2026-01-01T00:00:00Z\nvalid_until = 2026-07-01T00:00:00Z\n\n"
        "[[watermark.keys]]\n"
        'id = "00112233445566ff"\nenv = "WM_NEXT"\nvalid_from = 2026-07-01T00:00:00Z\n'))
    ok = run("--config", str(good), "watermark", "id", cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert key_id(key) in ok.stdout and "not readable here" in ok.stdout

    wrong = run("--config", str(good), "watermark", "id", cwd=tmp_path,
                env={"WM_NEXT": key.hex()})  # the old key under the new id
    assert wrong.returncode != 0
    assert "00112233445566ff" in wrong.stderr and "another id" in wrong.stderr


@pytest.mark.parametrize("keys, message", [
    ('[[watermark.keys]]\nid = "00112233445566ff"\nvalid_from = 2026-01-01T00:00:00Z\n',
     "exactly one of env"),
    ('[[watermark.keys]]\nid = "XYZ"\nenv = "A"\nvalid_from = 2026-01-01T00:00:00Z\n',
     "watermark.keys[0].id: 'XYZ' is not a key id"),
    ('[[watermark.keys]]\nid = "00112233445566ff"\nenv = "A"\nvalid_from = 2026-01-01\n',
     "watermark.keys[0].valid_from: Input should have timezone info"),
    ('[[watermark.keys]]\nid = "00112233445566ff"\nenv = "A"\n'
     "valid_from = 2026-01-01T00:00:00Z\n\n"
     '[[watermark.keys]]\nid = "aa112233445566ff"\nenv = "B"\n'
     "valid_from = 2026-03-01T00:00:00Z\n",
     "valid at the same time"),
])
def test_bad_key_entries_are_named_with_file_and_fix(
    tmp_path: Path, keys: str, message: str
) -> None:
    path = _config(tmp_path, keys)
    with pytest.raises(AuditorError) as err:
        load_settings(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_configured_keys_never_reach_the_db_a_log_or_a_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A world whose config names two watermark keys (one in a variable, one in a file,
    both set): the store, the bundle's files and every log record hold neither key."""
    import logging

    from auditor.bundle import write_bundle
    from auditor.config import Watermark
    from auditor.report import ReportRequest
    from auditor.signing import load_private_key
    from tests.report.world import API_KEYS, build_world

    env_key, file_key = bytes(range(32)), bytes(range(32, 64))
    monkeypatch.setenv("WM_KEY_NOW", env_key.hex())
    for name, value in API_KEYS.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "old.key").write_text(file_key.hex())
    (tmp_path / "old.key").chmod(0o600)
    caplog.set_level(logging.DEBUG)
    world = build_world(tmp_path, n_canaries=4)
    settings = world.settings.model_copy(update={"watermark": Watermark.model_validate({
        "keys": [{"id": key_id(file_key), "file": str(tmp_path / "old.key"),
                  "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2026-06-01T00:00:00Z"},
                 {"id": key_id(env_key), "env": "WM_KEY_NOW",
                  "valid_from": "2026-06-01T00:00:00Z"}]})})
    assert settings.watermark.keys  # the keys are configured for this bundle
    with world.store.session() as s:
        result = write_bundle(s, settings, ReportRequest("sus"),
                              load_private_key(settings.signing.key_path),
                              out_dir=tmp_path / "out")
    world.store.close()
    places = {p.name: p.read_bytes() for p in result.path.iterdir()}
    places["zip"] = result.zip_path.read_bytes()
    places["db"] = (tmp_path / "auditor.db").read_bytes()
    places["log"] = caplog.text.encode()
    for key in (env_key, file_key):
        for name, data in places.items():
            assert key.hex().encode() not in data, f"watermark key in {name}"
            assert key.hex().upper().encode() not in data, f"watermark key in {name}"
            assert key not in data, f"watermark key (raw) in {name}"


def test_canaries_commit_signs_the_configured_key_ids_with_the_registry_root(
    tmp_path: Path,
) -> None:
    """The statement published with the registry root names the watermark key ids, so
    its signature (and timestamp, when configured) dates the keys too."""
    from sqlalchemy import select

    from auditor.canonical import canonical_json
    from auditor.signing import load_public_key, verify_signature
    from auditor.store import open_store
    from auditor.store.models import RegistryCommit
    from tests.report.world import build_world

    world = build_world(tmp_path, n_canaries=2)
    world.store.close()
    (tmp_path / "canaries").mkdir()
    (tmp_path / "canaries" / "c.yaml").write_text(
        "id: new-canary\nkind: free_text\nprompt: a brand new prompt\n")
    ids = ["00112233445566ff", "aa112233445566ff"]
    config = tmp_path / "auditor.toml"
    config.write_text(
        f'database_url = "{world.settings.database_url}"\n'
        f'canaries_dir = "{tmp_path / "canaries"}"\n'
        f'[signing]\nkey_path = "{world.settings.signing.key_path}"\n'
        f'[[watermark.keys]]\nid = "{ids[1]}"\nenv = "WM_B"\n'
        "valid_from = 2026-06-01T00:00:00Z\n"
        f'[[watermark.keys]]\nid = "{ids[0]}"\nenv = "WM_A"\n'
        "valid_from = 2026-01-01T00:00:00Z\nvalid_until = 2026-06-01T00:00:00Z\n")
    done = run("-c", str(config), "canaries", "commit", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert all(i in done.stdout for i in ids)
    store = open_store(world.settings.resolved_database_url())
    with store.session() as s:
        rc = s.scalars(select(RegistryCommit).order_by(RegistryCommit.id.desc())).first()
        assert rc is not None and rc.attestation is not None
        att = rc.attestation
    store.close()
    assert att["statement"]["watermark_key_ids"] == ids
    public = load_public_key(att["public_key"].encode("ascii"))
    assert verify_signature(public, bytes.fromhex(att["signature"]),
                            canonical_json(att["statement"]))
