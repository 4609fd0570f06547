"""The bundle: built from a store filled through the real paths, then checked and tampered."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from auditor.bundle import BundleResult, verify_bundle, write_bundle
from auditor.canonical import canonical_json, sha256_hex
from auditor.errors import AuditorError
from auditor.report import ReportRequest
from auditor.signing import load_private_key, sign
from auditor.store.models import LedgerHead, RegistryCommit, Report, Response
from auditor.timestamp import load_certificates, request_timestamp
from tests.report.world import World, build_world

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, local_tsa) -> Iterator[
        tuple[World, BundleResult]]:
    """One timestamped bundle (html, pdf, json) with one canary unsealed."""
    tmp = tmp_path_factory.mktemp("bundle")
    world = build_world(tmp, n_canaries=8, tsa_url=local_tsa.url)
    key = load_private_key(world.settings.signing.key_path)
    with world.store.session() as s:
        result = write_bundle(s, world.settings, ReportRequest("sus", unseal=("ft-canary-0001",)),
                              key, out_dir=tmp / "out", tsa_url=local_tsa.url,
                              tsa_roots=load_certificates(local_tsa.ca_pem.read_bytes()))
    yield world, result
    world.store.close()


def _copy(result: BundleResult, tmp: Path, name: str = "copy") -> Path:
    dest = tmp / name
    shutil.copytree(result.path, dest)
    return dest


def _resign(bundle: Path, key_path: str) -> None:
    """Re-seals a bundle after a deliberate change, as a forger holding the key would."""
    key = load_private_key(key_path)
    names = sorted(p.name for p in bundle.iterdir() if p.name not in ("SHA256SUMS",
                                                                      "SHA256SUMS.sig"))
    sums = "".join(f"{sha256_hex((bundle / n).read_bytes())}  {n}\n" for n in names).encode()
    (bundle / "SHA256SUMS").write_bytes(sums)
    (bundle / "SHA256SUMS.sig").write_bytes(sign(key, sums))


def test_untouched_bundle_verifies_as_directory_and_zip(built) -> None:
    _, result = built
    for path in (result.path, result.zip_path):
        check = verify_bundle(path)
        assert check.manifest_sha256 == result.manifest_sha256
        assert check.timestamp is not None and check.unsealed == 1


def test_bundle_holds_the_promised_files(built) -> None:
    _, result = built
    names = {p.name for p in result.path.iterdir()}
    assert {"report.html", "report.pdf", "report.json", "evidence.jsonl", "verdict.json",
            "manifest.json", "manifest.sig", "manifest.tsr", "tsa-ca.pem", "signer.pub",
            "canaries.json", "SHA256SUMS", "SHA256SUMS.sig", "VERIFY.txt"} <= names


def test_flipping_one_byte_in_any_file_fails_naming_that_file(built, tmp_path: Path) -> None:
    _, result = built
    names = sorted(p.name for p in result.path.iterdir() if p.stat().st_size)  # bytes to flip
    for name in names:
        for where in (0.5, 0.9):
            bundle = _copy(result, tmp_path, f"{name}-{where}")
            target = bundle / name
            data = bytearray(target.read_bytes())
            data[int(len(data) * where)] ^= 0x01
            target.write_bytes(bytes(data))
            with pytest.raises(AuditorError) as err:
                verify_bundle(bundle)
            assert f"{name}:" in str(err.value), (name, str(err.value))


def test_an_added_file_fails(built, tmp_path: Path) -> None:
    _, result = built
    bundle = _copy(result, tmp_path)
    (bundle / "extra.txt").write_text("smuggled in")
    with pytest.raises(AuditorError, match="extra.txt"):
        verify_bundle(bundle)


def test_a_removed_file_fails(built, tmp_path: Path) -> None:
    _, result = built
    bundle = _copy(result, tmp_path)
    (bundle / "verdict.json").unlink()
    with pytest.raises(AuditorError, match="verdict.json"):
        verify_bundle(bundle)


def test_a_forged_merkle_proof_fails_even_when_resigned(built, tmp_path: Path) -> None:
    world, result = built
    bundle = _copy(result, tmp_path)
    listing = json.loads((bundle / "canaries.json").read_text())
    opened = next(c for c in listing["canaries"] if c["unsealed"])
    opened["unsealed"]["canonical"] = opened["unsealed"]["canonical"].replace("four", "five")
    (bundle / "canaries.json").write_text(json.dumps(listing))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["canaries.json"]["sha256"] = sha256_hex(
        (bundle / "canaries.json").read_bytes())
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    key = load_private_key(world.settings.signing.key_path)
    (bundle / "manifest.sig").write_bytes(sign(key, (bundle / "manifest.json").read_bytes()))
    (bundle / "manifest.tsr").unlink()
    (bundle / "tsa-ca.pem").unlink()
    manifest["timestamp_authority"] = None
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    (bundle / "manifest.sig").write_bytes(sign(key, (bundle / "manifest.json").read_bytes()))
    _resign(bundle, world.settings.signing.key_path)
    with pytest.raises(AuditorError, match=r"canaries.json: canary 'ft-canary-0001'"):
        verify_bundle(bundle)


def test_an_altered_evidence_record_fails_even_when_resigned(built, tmp_path: Path) -> None:
    world, result = built
    bundle = _copy(result, tmp_path)
    lines = (bundle / "evidence.jsonl").read_text().splitlines()
    row = json.loads(lines[3])
    row["record"]["text"] = "something the model never said"
    lines[3] = json.dumps(row)
    (bundle / "evidence.jsonl").write_text("\n".join(lines) + "\n")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["evidence.jsonl"]["sha256"] = sha256_hex(
        (bundle / "evidence.jsonl").read_bytes())
    manifest["timestamp_authority"] = None
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    key = load_private_key(world.settings.signing.key_path)
    (bundle / "manifest.sig").write_bytes(sign(key, (bundle / "manifest.json").read_bytes()))
    (bundle / "manifest.tsr").unlink()
    (bundle / "tsa-ca.pem").unlink()
    _resign(bundle, world.settings.signing.key_path)
    with pytest.raises(AuditorError, match=r"evidence.jsonl: line 4 .*record_hash"):
        verify_bundle(bundle)


def test_an_altered_zip_member_fails_naming_it(built, tmp_path: Path) -> None:
    _, result = built
    altered = tmp_path / "altered.zip"
    with zipfile.ZipFile(result.zip_path) as src, zipfile.ZipFile(altered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("/verdict.json"):
                data = data.replace(b"true", b"false", 1)
            dst.writestr(info, data)
    with pytest.raises(AuditorError, match="verdict.json:"):
        verify_bundle(altered)


def test_timestamp_without_the_authoritys_root_is_refused(local_tsa) -> None:
    """The local authority sends only its signing certificate, not its root."""
    with pytest.raises(AuditorError, match="--tsa-ca"):
        request_timestamp(local_tsa.url, b"manifest bytes")


def test_timestamp_fails_against_another_authoritys_root(built, local_tsa) -> None:
    _, result = built
    other = load_certificates(local_tsa.other_ca_pem.read_bytes())
    with pytest.raises(AuditorError, match="manifest.tsr"):
        verify_bundle(result.path, tsa_roots=other)


def test_evidence_records_recompute_to_the_stored_ledger(built) -> None:
    world, result = built
    rows = [json.loads(line) for line in (result.path / "evidence.jsonl").read_text().splitlines()]
    with world.store.session() as s:
        stored = {r.seq: r for r in s.scalars(select(Response))}
        for row in rows:
            db = stored[row["seq"]]
            assert sha256_hex(canonical_json(row["record"])) == db.record_hash == row["record_hash"]
            assert (row["prev_chain"], row["chain"]) == (db.prev_chain, db.chain)
            assert row["attempt"]["cycle_kind"] == "import"


def test_evidence_holds_every_response_of_the_verdicts_endpoints(built) -> None:
    world, result = built
    rows = (result.path / "evidence.jsonl").read_text().splitlines()
    assert len(rows) == world.n_canaries * 2 * 5  # canaries x samples x endpoints


def test_manifest_records_ledger_head_registry_root_and_parameters(built) -> None:
    world, result = built
    manifest = json.loads((result.path / "manifest.json").read_text())
    with world.store.session() as s:
        head = s.get(LedgerHead, 1)
        root = s.scalars(select(RegistryCommit.root)).first()
        report = s.scalars(select(Report)).one()
    assert manifest["ledger_head"] == {"seq": head.seq, "chain": head.chain}
    assert manifest["registry"]["root"] == root and manifest["registry"]["before_collection"]
    assert manifest["config_hash"] == world.settings.config_hash()
    assert manifest["analysis"]["seeds"] == {"seed": 7}
    assert manifest["software"]["version"]
    assert "git_commit" in manifest["software"]
    assert manifest["signer"]["fingerprint"] == result.signer_fingerprint
    assert report.manifest_sha256 == result.manifest_sha256
    assert report.bundle_sha256 == sha256_hex(result.zip_path.read_bytes())


def test_report_uses_the_newest_verdict(built) -> None:
    _, result = built
    verdict = json.loads((result.path / "verdict.json").read_text())
    assert verdict["p_value"] == pytest.approx(3.2e-6) and verdict["significant"] is True


def test_window_before_the_newest_verdict_selects_an_older_one(built, tmp_path: Path) -> None:
    world, _ = built
    from tests.report.world import START, timedelta

    key = load_private_key(world.settings.signing.key_path)
    req = ReportRequest("sus", until=START + timedelta(days=3, hours=1))
    with world.store.session() as s:
        result = write_bundle(s, world.settings, req, key, out_dir=tmp_path, formats=("json",))
    verdict = json.loads((result.path / "verdict.json").read_text())
    assert verdict["p_value"] == pytest.approx(2e-3)


def test_no_verdict_in_window_asks_to_run_analyze(built, tmp_path: Path) -> None:
    world, _ = built
    from tests.report.world import START

    key = load_private_key(world.settings.signing.key_path)
    with world.store.session() as s, pytest.raises(AuditorError, match="auditor analyze"):
        write_bundle(s, world.settings, ReportRequest("sus", until=START), key, out_dir=tmp_path)


def test_unsealing_a_canary_the_verdict_did_not_use_is_refused(built, tmp_path: Path) -> None:
    world, _ = built
    key = load_private_key(world.settings.signing.key_path)
    with world.store.session() as s, pytest.raises(AuditorError, match="--unseal"):
        write_bundle(s, world.settings, ReportRequest("sus", unseal=("nope",)), key,
                     out_dir=tmp_path)


def test_cli_verify_exits_nonzero_naming_the_file(built, tmp_path: Path) -> None:
    _, result = built
    bundle = _copy(result, tmp_path)
    data = bytearray((bundle / "verdict.json").read_bytes())
    data[10] ^= 0x01
    (bundle / "verdict.json").write_bytes(bytes(data))
    done = subprocess.run([sys.executable, "-m", "auditor", "verify", str(bundle)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode != 0
    assert "verdict.json:" in " ".join((done.stderr + done.stdout).split())
