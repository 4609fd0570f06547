"""Watermark keys: made, stored (an environment variable or a 0600 file), identified.

A key is 32 random bytes written as 64 hex digits. It is never stored in the database,
a log or a bundle; what may be shown and committed is its public id, an HMAC fingerprint
from which the key cannot be recovered.
"""

from __future__ import annotations

__all__ = ["KEY_ID_LABEL", "generate_key", "key_id", "load_key", "parse_key", "write_key_file"]

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from auditor.errors import AuditorError, Problem

KEY_ID_LABEL = b"auditor-watermark-key-id"
KEY_BYTES = 32


def generate_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def key_id(key: bytes) -> str:
    """The key's public id: the first 16 hex digits of HMAC-SHA256(key, label)."""
    return hmac.new(key, KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def parse_key(text: str, where: str) -> bytes:
    """The key written as hex digits (surrounding whitespace ignored)."""
    value = text.strip()
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) < 16:
        raise AuditorError(f"{where} does not hold a watermark key", [Problem(
            "expected at least 32 hex digits (a key made by `auditor watermark keygen`)",
            file=where, fix="run `auditor watermark keygen` and point to its output")])
    return key


def write_key_file(path: Path, key: bytes, force: bool = False) -> None:
    """Writes the key as hex to ``path``, created with mode 0600; an existing file is kept
    unless ``force``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise AuditorError(f"{path} already exists", [Problem(
            "refusing to overwrite a watermark key (the text it marked needs it to be "
            "detected)", file=str(path), fix="choose another path, or pass --force")]) from None
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)  # an existing file overwritten with --force
        fh.write(key.hex() + "\n")


def load_key(env: str | None = None, file: Path | None = None) -> bytes:
    """The key from the environment variable ``env`` or from ``file`` (which must not be
    readable by group or others)."""
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise AuditorError(f"environment variable {env} is not set", [Problem(
                f"the watermark key is read from ${env}", fix=f"export {env}=... (the line "
                "`auditor watermark keygen --env " + env + "` prints)")])
        return parse_key(value, f"${env}")
    if file is None:
        raise AuditorError("no watermark key given", [Problem(
            "pass --env NAME or --file PATH", fix="see `auditor watermark id --help`")])
    mode = stat.S_IMODE(file.stat().st_mode)
    if mode & 0o077:
        raise AuditorError(f"{file} is readable by others (mode {mode:04o})", [Problem(
            "a watermark key file must be private", file=str(file),
            fix=f"chmod 600 {file}")])
    return parse_key(file.read_text(encoding="utf-8"), str(file))
