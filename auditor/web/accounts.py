"""Portal accounts: argon2id passwords, throttled sign-in, server-side sessions, API tokens.

Sessions and API tokens are random 256-bit values; the store keeps only their SHA-256, so
a copy of the database hands nobody a live session or token.
"""

from __future__ import annotations

__all__ = ["ROLES", "SignInRefused", "add_user", "authenticate", "can", "check_password",
           "hash_password", "issue_token", "list_users", "lookup_session", "lookup_token",
           "new_session", "revoke_session", "set_disabled", "set_password"]

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from auditor.canonical import sha256_hex
from auditor.config import Web
from auditor.errors import AuditorError, Problem
from auditor.store.models import ApiToken, SignInAttempt, User, WebSession, utcnow

ROLES = ("legal", "analyst", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
MIN_PASSWORD = 12
_HASHER = PasswordHasher(type=Type.ID)  # argon2id, the library's RFC 9106 defaults
# a hash to verify against when the account does not exist, so timing does not tell
_DUMMY = _HASHER.hash(secrets.token_hex(16))


def can(role: str, needed: str) -> bool:
    """Roles nest: analyst has legal's rights, admin has analyst's."""
    return _RANK.get(role, -1) >= _RANK[needed]


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AuditorError("password too short", [Problem(
            f"the password has {len(password)} characters", fix=f"use at least {MIN_PASSWORD} "
            "(a passphrase of several words is easiest to remember)")])
    return _HASHER.hash(password)


def check_password(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise AuditorError(f"unknown role {role!r}", [Problem(
            "roles are legal, analyst and admin", fix="--role legal|analyst|admin")])


def _user(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise AuditorError(f"no portal user {username!r}", [Problem(
            "unknown user", fix="`auditor users list` shows the accounts")])
    return user


def add_user(session: Session, username: str, role: str, password: str | None) -> User:
    if not USERNAME.match(username):
        raise AuditorError(f"user name {username!r} is not allowed", [Problem(
            "letters, digits and . _ @ + - only, starting with a letter or digit",
            fix="e.g. jane.doe@firm.example")])
    _check_role(role)
    if session.scalars(select(User).where(User.username == username)).first():
        raise AuditorError(f"portal user {username!r} already exists", [Problem(
            "duplicate user", fix="choose another name, or `auditor users passwd`")])
    user = User(username=username, role=role, disabled=False,
                password_hash=hash_password(password) if password is not None else None,
                password_changed_at=utcnow() if password is not None else None)
    session.add(user)
    session.flush()
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def _revoke_all(session: Session, user: User) -> None:
    session.execute(update(WebSession).where(WebSession.user_id == user.id,
                                             WebSession.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))


def set_disabled(session: Session, username: str, disabled: bool = True) -> User:
    """Disables (or enables) an account; disabling ends its sessions at once."""
    user = _user(session, username)
    user.disabled = disabled
    if disabled:
        _revoke_all(session, user)
    return user


def set_password(session: Session, username: str, password: str) -> User:
    """Sets a new password and ends every session of the account."""
    user = _user(session, username)
    user.password_hash = hash_password(password)
    user.password_changed_at = utcnow()
    _revoke_all(session, user)
    return user


def set_role(session: Session, username: str, role: str) -> User:
    _check_role(role)
    user = _user(session, username)
    user.role = role
    return user


class SignInRefused(Exception):
    """Wrong name or password (one message for both), or too many failures lately."""

    def __init__(self, throttled: bool) -> None:
        self.throttled = throttled
        super().__init__("too many failed sign-ins; wait and try again" if throttled
                         else "unknown user name or wrong password")


def _failures(session: Session, since: datetime, **where: str) -> int:
    q = select(func.count()).select_from(SignInAttempt).where(
        SignInAttempt.ok.is_(False), SignInAttempt.at >= since)
    for col, value in where.items():
        q = q.where(getattr(SignInAttempt, col) == value)
    return int(session.scalar(q) or 0)


def authenticate(session: Session, web: Web, username: str, password: str,
                 address: str) -> User:
    """The user, or SignInRefused (commit the session anyway: the failure is recorded in
    it). Once an account or an address has failed too often in
    the window, every try is refused without checking the password (and counted)."""
    now = utcnow()
    since = now - timedelta(minutes=web.signin_window_minutes)
    name = username.strip()[:128]
    throttled = (_failures(session, since, username=name) >= web.signin_max_failures
                 or _failures(session, since, address=address)
                 >= web.signin_max_failures_per_address)
    user = None
    if not throttled:
        user = session.scalars(select(User).where(User.username == name)).first()
        ok = check_password(user.password_hash if user else None, password)
        if not ok or user is None or user.disabled:
            user = None
    session.add(SignInAttempt(username=name, address=address[:64], ok=user is not None, at=now))
    session.flush()
    if user is None:
        raise SignInRefused(throttled)
    return user


@dataclass(frozen=True)
class SessionInfo:
    session_id: int
    user_id: int
    username: str
    role: str
    csrf: str


def new_session(session: Session, user: User, address: str | None) -> tuple[str, SessionInfo]:
    """A fresh session (a new token at every sign-in: no fixation); returns the token."""
    token = secrets.token_urlsafe(32)
    row = WebSession(token_hash=sha256_hex(token), user_id=user.id,
                     csrf_token=secrets.token_urlsafe(32), address=(address or "")[:64])
    session.add(row)
    session.flush()
    return token, SessionInfo(row.id, user.id, user.username, user.role, row.csrf_token)


def lookup_session(session: Session, token: str | None, web: Web) -> SessionInfo | None:
    """The live session of ``token``: not revoked, not idle longer than the timeout, not
    older than the maximum, its user enabled. Touches its last-seen time."""
    if not token or len(token) > 100:
        return None
    row = session.scalars(select(WebSession).where(
        WebSession.token_hash == sha256_hex(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    now = utcnow()
    user = session.get(User, row.user_id)
    if (user is None or user.disabled
            or now - row.last_seen_at > timedelta(minutes=web.session_idle_minutes)
            or now - row.created_at > timedelta(hours=web.session_max_hours)):
        if row.revoked_at is None:
            row.revoked_at = now
        return None
    if now - row.last_seen_at > timedelta(seconds=30):  # spare the database a write per click
        row.last_seen_at = now
    return SessionInfo(row.id, user.id, user.username, user.role, row.csrf_token)


def revoke_session(session: Session, session_id: int) -> None:
    row = session.get(WebSession, session_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()


def issue_token(session: Session, name: str, role: str,
                created_by: int | None = None) -> tuple[str, ApiToken]:
    """A new API bearer token (shown once; only its hash is kept)."""
    if role not in ("legal", "analyst"):
        raise AuditorError(f"API tokens are read-only: role {role!r} is not allowed",
                           [Problem("token roles are legal and analyst", fix="--role legal")])
    if session.scalars(select(ApiToken).where(ApiToken.name == name)).first():
        raise AuditorError(f"API token {name!r} already exists", [Problem(
            "duplicate token name", fix="choose another name or revoke the old token")])
    token = "aud_" + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_hash=sha256_hex(token), role=role, created_by=created_by)
    session.add(row)
    session.flush()
    return token, row


def revoke_token(session: Session, name: str) -> ApiToken:
    row = session.scalars(select(ApiToken).where(ApiToken.name == name)).first()
    if row is None:
        raise AuditorError(f"no API token {name!r}", [Problem("unknown token",
                                                              fix="see the admin page")])
    row.revoked_at = row.revoked_at or utcnow()
    return row


def lookup_token(session: Session, token: str | None) -> ApiToken | None:
    if not token or not token.startswith("aud_") or len(token) > 100:
        return None
    row = session.scalars(select(ApiToken).where(
        ApiToken.token_hash == sha256_hex(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
        row.last_used_at = now
    return row
