from __future__ import annotations

import pytest
from sqlalchemy import select

from auditor.config import Web
from auditor.errors import AuditorError
from auditor.store import Store
from auditor.store.models import ApiToken, User, WebSession
from auditor.web import accounts

PW = "correct horse battery staple"


def test_passwords_are_stored_as_argon2id_hashes(store: Store) -> None:
    with store.session() as s:
        accounts.add_user(s, "jane@firm.example", "legal", PW)
    with store.session() as s:
        user = s.scalars(select(User)).one()
        assert user.password_hash and user.password_hash.startswith("$argon2id$")
        assert PW not in user.password_hash
        assert accounts.check_password(user.password_hash, PW)
        assert not accounts.check_password(user.password_hash, PW + "x")


def test_short_passwords_and_unknown_roles_are_refused(store: Store) -> None:
    with store.session() as s, pytest.raises(AuditorError, match="at least 12"):
        accounts.add_user(s, "a", "legal", "short")
    with store.session() as s, pytest.raises(AuditorError, match="legal, analyst and admin"):
        accounts.add_user(s, "b", "boss", PW)


def test_sign_in_is_throttled_after_repeated_failures(any_store: Store) -> None:
    web = Web(signin_max_failures=3)
    with any_store.session() as s:
        accounts.add_user(s, "jane", "legal", PW)
    for _ in range(3):
        with any_store.session() as s, pytest.raises(accounts.SignInRefused) as exc:
            accounts.authenticate(s, web, "jane", "wrong password!", "10.0.0.1")
        assert not exc.value.throttled
    with any_store.session() as s, pytest.raises(accounts.SignInRefused) as exc:
        accounts.authenticate(s, web, "jane", PW, "10.0.0.1")  # even the right password
    assert exc.value.throttled


def test_sessions_store_only_a_hash_and_end_on_revoke_and_password_change(any_store: Store) -> None:
    web = Web()
    with any_store.session() as s:
        user = accounts.add_user(s, "jane", "legal", PW)
        token, info = accounts.new_session(s, user, "127.0.0.1")
    with any_store.session() as s:
        assert s.scalars(select(WebSession.token_hash)).one() != token
        assert accounts.lookup_session(s, token, web) is not None
        accounts.set_password(s, "jane", PW + " again")
    with any_store.session() as s:
        assert accounts.lookup_session(s, token, web) is None


def test_an_idle_session_expires(store: Store) -> None:
    from datetime import timedelta

    web = Web(session_idle_minutes=5)
    with store.session() as s:
        user = accounts.add_user(s, "jane", "legal", PW)
        token, info = accounts.new_session(s, user, "127.0.0.1")
    with store.session() as s:
        row = s.get(WebSession, info.session_id)
        assert row is not None
        row.last_seen_at -= timedelta(minutes=6)
    with store.session() as s:
        assert accounts.lookup_session(s, token, web) is None


def test_api_tokens_store_only_a_hash_and_can_be_revoked(store: Store) -> None:
    with store.session() as s:
        token, _ = accounts.issue_token(s, "dms", "legal")
    with store.session() as s:
        assert s.scalars(select(ApiToken.token_hash)).one() != token
        assert accounts.lookup_token(s, token) is not None
        assert accounts.lookup_token(s, token + "x") is None
        accounts.revoke_token(s, "dms")
    with store.session() as s:
        assert accounts.lookup_token(s, token) is None


def test_jobs_left_by_a_dead_portal_on_this_host_are_failed_others_kept(store: Store) -> None:
    import socket
    import subprocess
    import sys

    from auditor.config import Settings
    from auditor.store.models import ReportJob
    from auditor.web.jobs import JobRunner

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    host = socket.gethostname()
    with store.session() as s:
        for runner in (f"{host}:{dead}", f"{host}:1", "another-host:42"):
            s.add(ReportJob(suspect="sus", protected="prot", requested_by="legal",
                            runner=runner, status="running", progress=50))
    runner = JobRunner(store, Settings())
    try:
        runner.recover()
    finally:
        runner.shutdown()
    with store.session() as s:
        states = {j.runner: j.status for j in s.scalars(select(ReportJob))}
    assert states == {f"{host}:{dead}": "failed", f"{host}:1": "running",
                      "another-host:42": "running"}
