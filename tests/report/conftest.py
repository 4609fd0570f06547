"""Fixtures of the report tests: a local RFC 3161 authority made with ``openssl ts``."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from auditor.bundle import BundleResult, write_bundle
from auditor.report import ReportRequest
from auditor.signing import load_private_key
from auditor.timestamp import load_certificates
from tests.report.world import START, World, add_verdict, build_world

# ---------------------------------------------------------------- a local TSA


@dataclass
class LocalTSA:
    url: str
    ca_pem: Path
    other_ca_pem: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    now = datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


_TS_CONF = """[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
serial = {serial}
crypto_device = builtin
signer_digest = sha256
default_policy = 1.3.6.1.4.1.57264.2.1
other_policies = 1.3.6.1.4.1.57264.2.2
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@pytest.fixture(scope="session")
def local_tsa() -> Iterator[LocalTSA]:
    """An RFC 3161 authority on loopback: requests are piped through `openssl ts -reply`."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    d = Path(tempfile.mkdtemp(prefix="tsa-"))
    ca_key, ca = _ca("Auditor Test Root CA")
    _, other = _ca("Some Other Root CA")
    now = datetime.now(UTC)
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (x509.CertificateBuilder().subject_name(_name("Auditor Test TSA"))
           .issuer_name(ca.subject).public_key(tsa_key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                          critical=True)
           .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "other.pem").write_bytes(other.public_bytes(pem))
    (d / "tsa.pem").write_bytes(tsa.public_bytes(pem))
    (d / "tsa.key").write_bytes(tsa_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (d / "serial").write_text("01\n")
    (d / "ts.cnf").write_text(_TS_CONF.format(serial=d / "serial"))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock, tempfile.TemporaryDirectory(dir=d) as work:
                q, r = Path(work) / "q.tsq", Path(work) / "r.tsr"
                q.write_bytes(body)
                done = subprocess.run(
                    [openssl, "ts", "-reply", "-config", str(d / "ts.cnf"), "-queryfile", str(q),
                     "-inkey", str(d / "tsa.key"), "-signer", str(d / "tsa.pem"),
                     "-out", str(r)], capture_output=True, timeout=30)
                reply = r.read_bytes() if done.returncode == 0 and r.exists() else b""
            self.send_response(200 if reply else 500)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalTSA(f"http://127.0.0.1:{server.server_port}/tsa", d / "ca.pem",
                       d / "other.pem")
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- a bundle with gaps


@pytest.fixture(scope="session")
def gapped(tmp_path_factory: pytest.TempPathFactory, local_tsa) -> Iterator[
        tuple[World, BundleResult]]:
    """A timestamped bundle (html, pdf, json) whose newest verdict uses 6 of 8 canaries,
    so the ledger holds responses between the included ones; its registry commit is signed
    and timestamped."""
    from datetime import timedelta

    tmp = tmp_path_factory.mktemp("gapped")
    roots = load_certificates(local_tsa.ca_pem.read_bytes())
    world = build_world(tmp, n_canaries=8, tsa_url=local_tsa.url, tsa_roots=roots)
    add_verdict(world.store, 6, START + timedelta(days=5))
    key = load_private_key(world.settings.signing.key_path)
    with world.store.session() as s:
        result = write_bundle(s, world.settings, ReportRequest("sus", unseal=("ft-canary-0001",)),
                              key, out_dir=tmp / "out", tsa_url=local_tsa.url, tsa_roots=roots)
    yield world, result
    world.store.close()
