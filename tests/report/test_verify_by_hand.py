"""VERIFY.txt, run exactly as printed in a clean shell with sha256sum, openssl and python3
(stdlib) only: every step passes on a good bundle, and some step fails on each forgery."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from auditor.bundle import BundleResult
from auditor.signing import load_private_key
from tests.report.test_bundle_forgeries import forge_with_new_key, reseal

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not all(Path(f"/usr/bin/{t}").exists() for t in ("sha256sum", "openssl", "python3")),
    reason="needs /usr/bin/sha256sum, openssl and python3")


def steps(verify_txt: str) -> list[str]:
    """Each step of VERIFY.txt: from its `# Step N` line to the next blank line."""
    blocks = [b.split("\n\n")[0] for b in re.split(r"\n(?=# Step \d+)", verify_txt)[1:]]
    assert blocks, "VERIFY.txt has no steps"
    return blocks


def run_steps(bundle: Path, env: dict[str, str] | None = None) -> list[tuple[str, int, str]]:
    """(step, exit status, output) of every step, each in `env -i PATH=/usr/bin:/bin bash`."""
    extra = [f"{k}={v}" for k, v in (env or {}).items()]
    out = []
    for block in steps((bundle / "VERIFY.txt").read_text(encoding="utf-8")):
        done = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", *extra, "bash", "-c", block],
                              cwd=bundle, capture_output=True, text=True, timeout=120)
        out.append((block, done.returncode, done.stdout + done.stderr))
    return out


def _copy(result: BundleResult, tmp: Path) -> Path:
    """The bundle folder and its zip side by side, as the other side receives them."""
    dest = tmp / result.path.name
    shutil.copytree(result.path, dest)
    shutil.copy(result.zip_path, tmp / result.zip_path.name)
    return dest


def _rezip(bundle: Path) -> None:
    """The zip again from the (altered) folder, as a forger would ship it."""
    zpath = bundle.with_suffix(".zip")
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(bundle.iterdir()):
            zf.writestr(f"{bundle.name}/{p.name}", p.read_bytes())


def _resign_same_key(bundle: Path, key_path: str) -> None:
    reseal(bundle, load_private_key(key_path))


def test_every_step_passes_on_a_good_bundle(gapped, tmp_path: Path) -> None:
    _, result = gapped
    bundle = _copy(result, tmp_path)
    ran = run_steps(bundle)
    assert len(ran) == 10  # timestamped, with the registry's published commitment
    failed = [(s, o) for s, rc, o in ran if rc != 0]
    assert not failed, failed
    text = "\n".join(o for _, _, o in ran)
    assert result.manifest_sha256 in text and result.signer_fingerprint in text


def _flip_byte(bundle: Path, key_path: str) -> None:
    data = bytearray((bundle / "verdict.json").read_bytes())
    data[len(data) // 2] ^= 1
    (bundle / "verdict.json").write_bytes(bytes(data))


def _extra_file(bundle: Path, key_path: str) -> None:
    (bundle / "notes.txt").write_text("smuggled in")


def _duplicate_zip_member(bundle: Path, key_path: str) -> None:
    zpath = bundle.with_suffix(".zip")
    genuine = zpath.read_bytes()
    zpath.unlink()
    with zipfile.ZipFile(zpath, "w") as dst:
        dst.writestr(f"{bundle.name}/evidence.jsonl", b"forged\n")
        import io

        with zipfile.ZipFile(io.BytesIO(genuine)) as src:
            for info in src.infolist():
                dst.writestr(info, src.read(info))


def _altered_answer_resigned(bundle: Path, key_path: str) -> None:
    lines = (bundle / "evidence.jsonl").read_text().splitlines()
    row = json.loads(lines[2])
    row["record"]["text"] = "something the model never said"
    lines[2] = json.dumps(row)
    (bundle / "evidence.jsonl").write_text("\n".join(lines) + "\n")
    _resign_same_key(bundle, key_path)
    _rezip(bundle)


def _removed_gap_hash_resigned(bundle: Path, key_path: str) -> None:
    lines = (bundle / "ledger-hashes.txt").read_text().splitlines()
    del lines[len(lines) // 2]
    (bundle / "ledger-hashes.txt").write_text("\n".join(lines) + "\n")
    _resign_same_key(bundle, key_path)
    _rezip(bundle)


def _forged_merkle_proof_resigned(bundle: Path, key_path: str) -> None:
    listing = json.loads((bundle / "canaries.json").read_text())
    opened = next(c for c in listing["canaries"] if c["unsealed"])
    opened["unsealed"]["canonical"] = opened["unsealed"]["canonical"].replace("four", "five")
    (bundle / "canaries.json").write_text(json.dumps(listing))
    _resign_same_key(bundle, key_path)
    _rezip(bundle)


def _new_key(bundle: Path, key_path: str) -> None:
    forge_with_new_key(bundle)
    _rezip(bundle)


def _altered_registry_resigned(bundle: Path, key_path: str) -> None:
    statement = json.loads((bundle / "registry.json").read_text())
    statement["committed_at"] = "2020-01-01T00:00:00+00:00"
    (bundle / "registry.json").write_text(json.dumps(statement))
    _resign_same_key(bundle, key_path)
    _rezip(bundle)


# each forgery, and the step (by a piece of its command) that must catch it
FORGERIES: dict[str, tuple[Callable[[Path, str], None], str]] = {
    "one byte flipped": (_flip_byte, "sha256sum -c SHA256SUMS"),
    "extra file": (_extra_file, "LC_ALL=C ls -A"),
    "duplicated zip member": (_duplicate_zip_member, "import os, stat, sys, zipfile"),
    "altered answer, re-signed": (_altered_answer_resigned, 'open("evidence.jsonl"'),
    "omitted response's hash removed, re-signed": (_removed_gap_hash_resigned,
                                                   'open("ledger-hashes.txt"'),
    "forged Merkle proof, re-signed": (_forged_merkle_proof_resigned, 'open("canaries.json"'),
    "re-signed with a new key": (_new_key, "openssl pkey -pubin -in signer.pub"),
    "registry statement altered, re-signed": (_altered_registry_resigned, "registry.sig"),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_the_step_for_each_forgery_fails(gapped, tmp_path: Path, forgery: str) -> None:
    world, result = gapped
    bundle = _copy(result, tmp_path)
    forge, catcher = FORGERIES[forgery]
    forge(bundle, world.settings.signing.key_path)
    # the verifier holds the fingerprint obtained out of band, as VERIFY.txt asks
    ran = run_steps(bundle, {"FINGERPRINT": result.signer_fingerprint})
    caught = [rc for block, rc, _ in ran if catcher in block]
    assert caught and all(rc != 0 for rc in caught), ran
    # and the README's command, on what was forged
    target = bundle.with_suffix(".zip") if "zip" in forgery else bundle
    done = subprocess.run([sys.executable, "-m", "auditor", "verify", str(target),
                           "--key", result.signer_fingerprint],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stdout


def test_the_readme_command_passes_on_a_good_bundle(gapped, tmp_path: Path) -> None:
    _, result = gapped
    bundle = _copy(result, tmp_path)
    for target in (bundle, bundle.with_suffix(".zip")):
        done = subprocess.run([sys.executable, "-m", "auditor", "verify", str(target),
                               "--key", result.signer_fingerprint],
                              capture_output=True, text=True, cwd=REPO, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "bundle ok" in done.stdout and "a trusted key" in " ".join(done.stdout.split())
