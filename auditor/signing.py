"""The report signing key: Ed25519, one PEM file readable by its owner only.

``auditor keys init`` creates the key at ``settings.signing.key_path`` (mode 0600). A
bundle carries the public half as ``signer.pub`` (PEM SubjectPublicKeyInfo); its
fingerprint is the SHA-256 of that key's DER encoding, which anyone can recompute with
``openssl pkey -pubin -in signer.pub -outform DER | sha256sum``. Signatures are the raw
64 bytes of Ed25519 over a file's exact bytes, checkable with
``openssl pkeyutl -verify -pubin -inkey signer.pub -rawin -in FILE -sigfile FILE.sig``.
"""

from __future__ import annotations

__all__ = [
    "fingerprint",
    "init_key",
    "load_private_key",
    "load_public_key",
    "public_pem",
    "read_fingerprints",
    "sign",
    "verify_signature",
]

import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from auditor.canonical import sha256_hex
from auditor.errors import AuditorError, Problem


def init_key(path: str | Path, *, force: bool = False) -> Ed25519PrivateKey:
    """Creates a new signing key at ``path`` with mode 0600; refuses to overwrite one."""
    p = Path(path)
    if p.exists() and not force:
        raise AuditorError(
            f"signing key {p} already exists",
            [Problem("refusing to replace it: bundles signed with it name its fingerprint",
                     str(p), fix="keep it, or pass --force to replace it deliberately")],
        )
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, p)
    return key


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The signing key at ``path``; AuditorError naming the file and the fix otherwise."""
    p = Path(path)
    if not p.exists():
        raise AuditorError(
            f"signing key {p} does not exist",
            [Problem("reports are signed with it", str(p),
                     fix="run `auditor keys init` (or set signing.key_path)")],
        )
    mode = stat.S_IMODE(p.stat().st_mode)
    if mode & 0o077:
        raise AuditorError(
            f"signing key {p} is readable by others (mode {mode:04o})",
            [Problem("a signing key must be private to its owner", str(p),
                     fix=f"chmod 600 {p}")],
        )
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise AuditorError(
            f"signing key {p} cannot be read: {exc}",
            [Problem("not an unencrypted PEM private key", str(p),
                     fix="create one with `auditor keys init --force`")],
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditorError(
            f"signing key {p} is not an Ed25519 key",
            [Problem("reports are signed with Ed25519", str(p),
                     fix="create one with `auditor keys init --force`")],
        )
    return key


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(pem: bytes, name: str = "signer.pub") -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise AuditorError(f"{name}: not a PEM public key ({exc})",
                           [Problem("altered or not a key", name)]) from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditorError(f"{name}: not an Ed25519 public key",
                           [Problem("altered or not a key", name)])
    return key


def fingerprint(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """SHA-256 hex of the public key's DER SubjectPublicKeyInfo."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return sha256_hex(der)


def read_fingerprints(lines: list[str], source: str) -> list[str]:
    """Key fingerprints (64 hex digits) from lines; blank lines and ``#`` comments skipped.
    AuditorError naming the source and line for anything else."""
    out = []
    for number, line in enumerate(lines, start=1):
        value = line.split("#", 1)[0].strip().lower()
        if not value:
            continue
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise AuditorError(
                f"{source}: line {number}: {value[:80]!r} is not a key fingerprint",
                [Problem("a fingerprint is 64 hex digits, the SHA-256 of the DER public key",
                         source, number,
                         "copy it from `auditor keys init` or VERIFY.txt's step on the key")])
        out.append(value)
    return out


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def verify_signature(key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
