"""Forgeries an opposing expert would try, each of which `verify` must reject (issue 13)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select

from auditor.bundle import BundleResult, verify_bundle, write_bundle
from auditor.canary import content_hash
from auditor.canonical import canonical_json, sha256_hex
from auditor.errors import AuditorError
from auditor.report import ReportRequest
from auditor.signing import fingerprint, load_private_key, public_pem, sign
from auditor.store.ledger import chain_hash
from auditor.store.models import Response
from tests.report.world import START, add_verdict, build_world, make_canaries

REPO = Path(__file__).resolve().parents[2]
RENDERINGS = ("report.html", "report.pdf")
REGISTRY = ("registry.json", "registry.pub", "registry.sig", "registry.tsr",
            "registry-tsa-ca.pem")


def _zip_with(result: BundleResult, dest: Path, first: list[tuple[str, bytes]]) -> Path:
    """The genuine zip with ``first`` members written before the genuine ones."""
    with zipfile.ZipFile(result.zip_path) as src, zipfile.ZipFile(dest, "w") as dst:
        for name, data in first:
            dst.writestr(name, data)
        for info in src.infolist():
            dst.writestr(info, src.read(info))
    return dest


# ---------------------------------------------------------------- 1. zip members


@pytest.mark.parametrize("member", ["evidence.jsonl", "report.pdf"])
def test_a_forged_member_before_the_genuine_one_fails(gapped, tmp_path: Path,
                                                      member: str) -> None:
    _, result = gapped
    name = result.path.name
    forged = _zip_with(result, tmp_path / "dup.zip", [(f"{name}/{member}", b"forged\n")])
    with pytest.raises(AuditorError, match=rf"{member}: .*more than once"):
        verify_bundle(forged)


def test_a_top_level_member_outside_the_folder_fails(gapped, tmp_path: Path) -> None:
    _, result = gapped
    forged = _zip_with(result, tmp_path / "top.zip", [("report.pdf", b"%PDF-forged")])
    with pytest.raises(AuditorError, match=r"report.pdf: .*outside the bundle's folder"):
        verify_bundle(forged)


def test_a_member_in_a_second_folder_fails(gapped, tmp_path: Path) -> None:
    _, result = gapped
    forged = _zip_with(result, tmp_path / "two.zip", [("other/verdict.json", b"{}")])
    with pytest.raises(AuditorError, match=r"other/verdict.json"):
        verify_bundle(forged)


def test_a_symlink_member_fails(gapped, tmp_path: Path) -> None:
    _, result = gapped
    info = zipfile.ZipInfo(f"{result.path.name}/link")
    info.external_attr = (0o120777 << 16)
    dest = tmp_path / "link.zip"
    with zipfile.ZipFile(result.zip_path) as src, zipfile.ZipFile(dest, "w") as dst:
        dst.writestr(info, "/etc/passwd")
        for i in src.infolist():
            dst.writestr(i, src.read(i))
    with pytest.raises(AuditorError, match=r"link: .*link"):
        verify_bundle(dest)


def test_a_symlink_in_a_bundle_directory_fails(gapped, tmp_path: Path) -> None:
    _, result = gapped
    bundle = tmp_path / "copy"
    shutil.copytree(result.path, bundle)
    (bundle / "verdict.json").unlink()
    (bundle / "verdict.json").symlink_to(result.path / "verdict.json")
    with pytest.raises(AuditorError, match=r"verdict.json: .*link"):
        verify_bundle(bundle)


# ---------------------------------------------------------------- 3. sealed canaries


def test_sealed_canaries_carry_only_their_salted_commitment(gapped) -> None:
    _, result = gapped
    listing = json.loads((result.path / "canaries.json").read_text())
    sealed = [c for c in listing["canaries"] if not c["unsealed"]]
    assert sealed and all("content_hash" not in c for c in sealed)
    unsalted = {content_hash(c) for c in make_canaries(8)}
    for p in result.path.iterdir():
        text = p.read_bytes().decode("utf-8", errors="replace")
        for h in unsalted:
            assert h not in text, f"an unsalted canary hash is in {p.name}"


# ---------------------------------------------------------------- 5. gaps in the ledger


def test_the_bundle_states_the_hashes_of_responses_left_out(gapped) -> None:
    world, result = gapped
    included = {json.loads(line)["seq"]
                for line in (result.path / "evidence.jsonl").read_text().splitlines()}
    gaps = dict(line.split() for line in
                (result.path / "ledger-hashes.txt").read_text().splitlines())
    with world.store.session() as s:
        stored = {r.seq: r.record_hash for r in s.scalars(select(Response))}
    span = range(min(included), max(stored) + 1)
    assert len(included) < len(span)  # the verdict left responses out
    assert {int(k): v for k, v in gaps.items()} == {
        q: stored[q] for q in span if q not in included}


def test_a_deleted_ledger_row_between_included_ones_is_noticed(tmp_path: Path) -> None:
    from datetime import timedelta

    world = build_world(tmp_path, n_canaries=6)
    add_verdict(world.store, 4, START + timedelta(days=5))  # leaves canaries 4, 5 out
    with world.store.session() as s:
        from auditor.store.models import CanaryVersion

        victim = s.scalars(select(Response).join(CanaryVersion).where(
            CanaryVersion.canary_id == "ft-canary-0004").order_by(Response.seq)).first()
        assert victim is not None and victim.seq > 1  # an included response comes before it
        s.execute(delete(Response).where(Response.id == victim.id))
    key = load_private_key(world.settings.signing.key_path)
    with world.store.session() as s:
        result = write_bundle(s, world.settings, ReportRequest("sus"), key,
                              out_dir=tmp_path / "out", formats=("json",))
    world.store.close()
    with pytest.raises(AuditorError, match=r"ledger-hashes.txt|evidence.jsonl"):
        verify_bundle(result.path)


# ---------------------------------------------------------------- 2. whose key


def forge_with_new_key(bundle: Path, drop: tuple[str, ...] = ()) -> Ed25519PrivateKey:
    """Changes the last evidence answer, recomputes its record hash and the chain to the
    ledger head, and re-signs everything with a new key, as a forger would; ``drop``:
    files the forger leaves out (renderings, the registry's published commitment)."""
    new = Ed25519PrivateKey.generate()
    lines = (bundle / "evidence.jsonl").read_bytes().splitlines()
    row = json.loads(lines[-1])
    row["record"]["text"] = "something the model never said"
    row["record_hash"] = sha256_hex(canonical_json(row["record"]))
    row["chain"] = chain_hash(row["prev_chain"], row["record_hash"])
    lines[-1] = canonical_json(row)
    (bundle / "evidence.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    chain = row["chain"]
    gaps = bundle / "ledger-hashes.txt"
    if gaps.exists():
        for line in gaps.read_text().splitlines():
            seq, h = line.split()
            if int(seq) > row["seq"]:
                chain = chain_hash(chain, h)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["ledger_head"]["chain"] = chain
    manifest["signer"]["fingerprint"] = fingerprint(new)
    manifest["timestamp_authority"] = None
    (bundle / "signer.pub").write_bytes(public_pem(new))
    for name in ("manifest.tsr", "tsa-ca.pem"):
        (bundle / name).unlink(missing_ok=True)
    for name in drop:
        (bundle / name).unlink()
        manifest["files"].pop(name, None)
    manifest["renderings"] = [r for r in manifest["renderings"] if r not in drop]
    if "registry.json" in drop:
        manifest["registry"].update(signer_fingerprint=None, timestamped_at=None)
    reseal(bundle, new, manifest)
    return new


def reseal(bundle: Path, key: Ed25519PrivateKey, manifest: dict | None = None) -> None:
    """Re-lists the files' hashes in ``manifest`` (default: the bundle's) and SHA256SUMS,
    and signs both with ``key``, as a forger holding a key would after a change."""
    manifest = manifest or json.loads((bundle / "manifest.json").read_text())
    for name in list(manifest["files"]):
        data = (bundle / name).read_bytes()
        manifest["files"][name] = {"sha256": sha256_hex(data), "bytes": len(data)}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (bundle / "manifest.sig").write_bytes(sign(key, (bundle / "manifest.json").read_bytes()))
    names = sorted(p.name for p in bundle.iterdir()
                   if p.name not in ("SHA256SUMS", "SHA256SUMS.sig"))
    sums = "".join(f"{sha256_hex((bundle / n).read_bytes())}  {n}\n" for n in names).encode()
    (bundle / "SHA256SUMS").write_bytes(sums)
    (bundle / "SHA256SUMS.sig").write_bytes(sign(key, sums))


def test_a_resigned_forgery_fails_on_the_hashes_its_pdf_states(gapped, tmp_path: Path) -> None:
    _, result = gapped
    bundle = tmp_path / "forged"
    shutil.copytree(result.path, bundle)
    # the HTML names the manifest's hash, the registry statement the genuine key
    forge_with_new_key(bundle, drop=("report.html", *REGISTRY))
    with pytest.raises(AuditorError, match=r"report.pdf: .*(fingerprint|manifest|hash)"):
        verify_bundle(bundle)


def test_a_pdf_stating_a_different_hash_fails(gapped, tmp_path: Path) -> None:
    """The PDF's text layer is checked: every 64-hex value it states must be the bundle's."""
    from auditor.bundle import check_stated_hashes

    _, result = gapped
    check_stated_hashes(result.path, "report.pdf", "the manifest a1b2 " + result.manifest_sha256,
                        {result.manifest_sha256})
    with pytest.raises(AuditorError, match="report.pdf: .*" + "ab" * 8):
        check_stated_hashes(result.path, "report.pdf", "hash " + "ab" * 32,
                            {result.manifest_sha256})


def test_a_resigned_forgery_shows_a_key_later_than_the_registrys(gapped,
                                                                  tmp_path: Path) -> None:
    _, result = gapped
    bundle = tmp_path / "forged"
    shutil.copytree(result.path, bundle)
    forge_with_new_key(bundle, drop=RENDERINGS)
    with pytest.raises(AuditorError, match=r"signer.pub: .*registry root was published under "
                       "key " + result.signer_fingerprint):
        verify_bundle(bundle)


def test_verify_with_the_trusted_key_rejects_a_new_key(gapped, tmp_path: Path) -> None:
    _, result = gapped
    bundle = tmp_path / "forged"
    shutil.copytree(result.path, bundle)
    forge_with_new_key(bundle, drop=RENDERINGS + REGISTRY)
    verify_bundle(bundle)  # consistent in itself: only the key tells
    with pytest.raises(AuditorError, match=r"signer.pub: .*not a trusted key"):
        verify_bundle(bundle, trusted_keys={result.signer_fingerprint})
    assert verify_bundle(result.path, trusted_keys={result.signer_fingerprint}).trusted


def test_cli_verify_key_and_trusted_keys_file(gapped, tmp_path: Path) -> None:
    _, result = gapped
    bundle = tmp_path / "forged"
    shutil.copytree(result.path, bundle)
    forge_with_new_key(bundle, drop=RENDERINGS + REGISTRY)
    keys = tmp_path / "trusted-keys.txt"
    keys.write_text(f"# the auditor's key, read over the phone\n{result.signer_fingerprint}\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "auditor", "verify", *args],
                              capture_output=True, text=True, cwd=REPO, timeout=300)

    bad = run(str(bundle), "--key", result.signer_fingerprint)
    assert bad.returncode != 0 and "not a trusted key" in " ".join(bad.stderr.split())
    assert "Traceback" not in bad.stderr
    assert run(str(bundle), "--trusted-keys", str(keys)).returncode != 0
    good = run(str(result.path), "--trusted-keys", str(keys))
    assert good.returncode == 0, good.stderr
    assert "trusted" in good.stdout


def test_verify_txt_asks_for_the_fingerprint_out_of_band(gapped) -> None:
    _, result = gapped
    text = " ".join((result.path / "VERIFY.txt").read_text().split())
    assert "out of band" in text and result.signer_fingerprint in text


# ---------------------------------------------------------------- 6. the registry's date


def test_the_registry_commitment_is_signed_and_timestamped_in_the_bundle(gapped,
                                                                         local_tsa) -> None:
    world, result = gapped
    statement = json.loads((result.path / "registry.json").read_text())
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert statement["root"] == manifest["registry"]["root"]
    assert statement["signer_fingerprint"] == result.signer_fingerprint
    check = verify_bundle(result.path)
    assert check.registry_signer == result.signer_fingerprint
    assert check.registry_timestamp is not None
    assert check.registry_timestamp.gen_time.isoformat() == manifest["registry"][
        "timestamped_at"]
    done = subprocess.run(["openssl", "ts", "-verify", "-data", "registry.json", "-in",
                           "registry.tsr", "-CAfile", str(local_tsa.ca_pem)],
                          cwd=result.path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_registry_timestamp_from_another_authority_fails(gapped, local_tsa) -> None:
    from auditor.timestamp import load_certificates

    _, result = gapped
    other = load_certificates(local_tsa.other_ca_pem.read_bytes())
    with pytest.raises(AuditorError, match="(manifest|registry).tsr"):
        verify_bundle(result.path, tsa_roots=other)


def test_an_altered_registry_statement_fails(gapped, tmp_path: Path) -> None:
    world, result = gapped
    bundle = tmp_path / "copy"
    shutil.copytree(result.path, bundle)
    statement = json.loads((bundle / "registry.json").read_text())
    statement["committed_at"] = "2020-01-01T00:00:00+00:00"
    (bundle / "registry.json").write_bytes(canonical_json(statement))
    for name in ("manifest.tsr", "tsa-ca.pem"):  # the manifest changes: its timestamp goes
        (bundle / name).unlink()
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["timestamp_authority"] = None
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    reseal(bundle, load_private_key(world.settings.signing.key_path))
    with pytest.raises(AuditorError, match="registry.sig: does not verify"):
        verify_bundle(bundle)


def test_canaries_commit_publishes_the_key_and_a_timestamp(tmp_path: Path, local_tsa) -> None:
    from tests.report.test_report_cli import _auditor

    world = build_world(tmp_path, n_canaries=2)
    world.store.close()
    (tmp_path / "canaries").mkdir()
    (tmp_path / "canaries" / "c.yaml").write_text(
        "id: new-canary\nkind: free_text\nprompt: a brand new prompt\n")
    config = tmp_path / "auditor.toml"
    config.write_text(f'database_url = "{world.settings.database_url}"\n'
                      f'canaries_dir = "{tmp_path / "canaries"}"\n'
                      f'[signing]\nkey_path = "{world.settings.signing.key_path}"\n'
                      f'[timestamp]\nurl = "{local_tsa.url}"\nca_file = "{local_tsa.ca_pem}"\n')
    done = _auditor(config, "canaries", "commit")
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    fp = fingerprint(load_private_key(world.settings.signing.key_path))
    assert f"signed by key fingerprint {fp}" in out and "timestamped" in out
