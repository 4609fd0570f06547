"""Trusted time: RFC 3161 timestamps of a manifest from a timestamp authority (TSA).

The request carries the SHA-256 of the manifest's bytes, a nonce, and asks for the TSA's
certificate. The reply (``manifest.tsr``, DER) is checked on receipt and again by
``auditor verify``: status granted, message imprint equal to the manifest's hash, and the
CMS signature chaining to a root certificate of the authority (``tsa-ca.pem`` in the
bundle, or one given by whoever verifies). The same check with OpenSSL is
``openssl ts -verify -data manifest.json -in manifest.tsr -CAfile tsa-ca.pem``.
"""

from __future__ import annotations

__all__ = [
    "read_roots",
    "TimestampError",
    "TimestampInfo",
    "embedded_roots",
    "load_certificates",
    "request_timestamp",
    "verify_timestamp",
]

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from auditor.canonical import sha256_hex
from auditor.errors import AuditorError, Problem

_SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")


class TimestampError(ValueError):
    """A timestamp reply that does not check out; the message says why."""


@dataclass(frozen=True)
class TimestampInfo:
    gen_time: datetime
    serial: int
    policy: str
    tsa_subject: str
    root_subject: str
    root_fingerprint: str  # SHA-256 of the root certificate's DER

    def as_dict(self) -> dict[str, object]:
        return {
            "gen_time": self.gen_time.astimezone(UTC).isoformat(),
            "serial": str(self.serial),
            "policy": self.policy,
            "tsa_subject": self.tsa_subject,
            "root_subject": self.root_subject,
            "root_fingerprint": self.root_fingerprint,
        }


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise TimestampError(f"not PEM certificates: {exc}") from None


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except Exception:  # InvalidSignature, unsupported key types
        return False
    return True


def embedded_roots(tsr: bytes) -> list[x509.Certificate]:
    """Self-signed certificates the reply itself carries (some authorities send the chain)."""
    resp = decode_timestamp_response(tsr)
    certs = [x509.load_der_x509_certificate(c) for c in resp.signed_data.certificates]
    return [c for c in certs if _self_signed(c)]


def _der_fingerprint(cert: x509.Certificate) -> str:
    return sha256_hex(cert.public_bytes(serialization.Encoding.DER))


def verify_timestamp(
    tsr: bytes, data: bytes, roots: list[x509.Certificate], nonce: int | None = None
) -> TimestampInfo:
    """Checks ``tsr`` is a granted timestamp of ``data`` signed under one of ``roots``."""
    try:
        resp = decode_timestamp_response(tsr)
    except Exception as exc:  # the Rust parser raises its own types
        raise TimestampError(f"not a DER timestamp reply ({exc})") from None
    if PKIStatus(resp.status) not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        raise TimestampError(f"the authority did not grant it (status {resp.status})")
    imprint = resp.tst_info.message_imprint
    if imprint.hash_algorithm != _SHA256_OID:
        raise TimestampError(f"unexpected hash algorithm {imprint.hash_algorithm.dotted_string}")
    if imprint.message != hashlib.sha256(data).digest():
        raise TimestampError("it timestamps a different hash than this manifest's")
    for root in roots:
        if not _self_signed(root):
            raise TimestampError(f"root {root.subject.rfc4514_string()} is not a valid "
                                 "self-signed certificate")
    if not roots:
        raise TimestampError("no root certificate of the authority to check its signature "
                             "against")
    builder = VerifierBuilder()
    for root in roots:
        builder = builder.add_root_certificate(root)
    if nonce is not None:
        builder = builder.nonce(nonce)
    try:
        builder.build().verify(resp, imprint.message)
    except VerificationError as exc:
        raise TimestampError(f"signature check failed: {exc}") from None
    certs = [x509.load_der_x509_certificate(c) for c in resp.signed_data.certificates]
    si = next(iter(resp.signed_data.signer_infos))
    leaf = next((c for c in certs if c.serial_number == si.serial_number
                 and c.issuer == si.issuer), None)
    root = next((r for r in roots if leaf is not None and r.subject == leaf.issuer), roots[0])
    return TimestampInfo(
        gen_time=resp.tst_info.gen_time.astimezone(UTC),
        serial=resp.tst_info.serial_number,
        policy=resp.tst_info.policy.dotted_string,
        tsa_subject=leaf.subject.rfc4514_string() if leaf is not None else "",
        root_subject=root.subject.rfc4514_string(),
        root_fingerprint=_der_fingerprint(root),
    )


def request_timestamp(
    url: str, data: bytes, roots: list[x509.Certificate] | None = None, timeout: float = 30.0
) -> tuple[bytes, TimestampInfo, list[x509.Certificate]]:
    """Asks the authority at ``url`` to timestamp ``data``; returns the checked reply.

    ``roots`` are the authority's root certificates; when none are given, a self-signed
    root carried in the reply is used. Returns (reply DER, what it says, roots used).
    """
    req = (TimestampRequestBuilder().data(data).hash_algorithm(HashAlgorithm.SHA256)
           .nonce(nonce=True).cert_request(cert_request=True).build())
    try:
        reply = httpx.post(url, content=req.as_bytes(), timeout=timeout,
                           headers={"Content-Type": "application/timestamp-query"})
    except httpx.HTTPError as exc:
        raise AuditorError(f"timestamp authority {url} unreachable: {exc}",
                           [Problem("no trusted timestamp was obtained",
                                    fix="check timestamp.url, or unset it to skip timestamping")]
                           ) from None
    if reply.status_code != 200:
        raise AuditorError(f"timestamp authority {url} answered HTTP {reply.status_code}",
                           [Problem(reply.text[:200], fix="check timestamp.url")])
    tsr = reply.content
    use = list(roots or [])
    if not use:
        try:
            use = embedded_roots(tsr)
        except Exception:
            use = []
    if not use:
        raise AuditorError(
            f"timestamp authority {url} sent no root certificate to check its reply against",
            [Problem("the reply cannot be verified without the authority's root",
                     fix="pass --tsa-ca FILE with the authority's root certificate (PEM)")])
    try:
        info = verify_timestamp(tsr, data, use, nonce=req.nonce)
    except TimestampError as exc:
        raise AuditorError(f"timestamp from {url} does not check out: {exc}",
                           [Problem("refusing to put an unverifiable timestamp in the bundle",
                                    fix="check timestamp.url and --tsa-ca")]) from None
    return tsr, info, use


def read_roots(path: Path | None) -> list[x509.Certificate] | None:
    """The timestamp authority's root certificates from a PEM file, or None."""
    if path is None:
        return None
    try:
        return list(load_certificates(path.read_bytes()))
    except (OSError, TimestampError) as exc:
        raise AuditorError(f"timestamp authority root {path}: {exc}",
                           [Problem("unreadable", str(path),
                                    fix="give the authority's root certificate as PEM")]
                           ) from None
