"""``auditor users``: accounts from the shell, passwords never from an argument."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from auditor.store import open_store
from auditor.store.models import User, WebSession
from auditor.web import accounts

PW = "a long enough passphrase 42"


def run(tmp: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env["AUDITOR_DATABASE_URL"] = f"sqlite:///{tmp / 'a.db'}"
    return subprocess.run([sys.executable, "-m", "auditor", "users", *args], cwd=tmp, env=env,
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_add_list_disable_and_passwd(tmp_path: Path) -> None:
    r = run(tmp_path, "add", "jane@firm.example", "--role", "analyst", "--password-stdin",
            stdin=PW + "\n")
    assert r.returncode == 0, r.stderr
    assert PW not in r.stdout + r.stderr
    listed = run(tmp_path, "list")
    assert "jane@firm.example" in listed.stdout and "analyst" in listed.stdout
    assert "active" in listed.stdout
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        with store.session() as s:
            user = s.scalars(select(User)).one()
            assert accounts.check_password(user.password_hash, PW)
            accounts.new_session(s, user, "127.0.0.1")
        assert run(tmp_path, "disable", "jane@firm.example").returncode == 0
        with store.session() as s:
            assert s.scalars(select(User)).one().disabled
            assert s.scalars(select(WebSession)).one().revoked_at is not None
        r = run(tmp_path, "passwd", "jane@firm.example", "--password-stdin",
                stdin="another long passphrase\n")
        assert r.returncode == 0, r.stderr
        with store.session() as s:
            assert accounts.check_password(s.scalars(select(User)).one().password_hash,
                                           "another long passphrase")
    finally:
        store.close()


def test_bad_input_is_one_line_with_the_fix(tmp_path: Path) -> None:
    r = run(tmp_path, "add", "jane", "--password-stdin", stdin="short\n")
    assert r.returncode == 2 and "at least 12" in r.stderr and "Traceback" not in r.stderr
    r = run(tmp_path, "add", "jane", "--role", "boss", "--password-stdin", stdin=PW + "\n")
    assert r.returncode == 2 and "legal|analyst|admin" in r.stderr
    r = run(tmp_path, "add", "jane")  # no terminal, no --password-stdin
    assert r.returncode == 2 and "--password-stdin" in r.stderr
    r = run(tmp_path, "disable", "nobody")
    assert r.returncode == 2 and "auditor users list" in r.stderr


def test_a_password_argument_does_not_exist(tmp_path: Path) -> None:
    r = run(tmp_path, "add", "jane", "--password", PW)
    assert r.returncode != 0 and "No such option" in r.stderr


def test_token_is_printed_once_and_stored_as_a_hash(tmp_path: Path) -> None:
    r = run(tmp_path, "token", "dms", "--role", "legal")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("aud_")
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        with store.session() as s:
            assert accounts.lookup_token(s, token) is not None
    finally:
        store.close()
    assert run(tmp_path, "token", "dms", "--revoke").returncode == 0
