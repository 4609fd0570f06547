"""Report bundles: the evidence files, a signed manifest, an optional trusted timestamp.

A bundle is a directory (and a zip of it) holding::

    evidence.jsonl   every response the verdict used: canonical ledger record, its hash,
                     chain links, attempt and cycle metadata (one canonical JSON per line)
    ledger-hashes.txt  ``SEQ RECORD_HASH`` of every ledger entry from the first response
                     used to the ledger head that evidence.jsonl leaves out (hashes only),
                     so the chain can be recomputed across the gaps up to the head
    verdict.json     the stored verdict, as analysis wrote it
    canaries.json    the canaries used: id, version, salted commitment; unsealed ones with
                     canonical content, salt and Merkle inclusion proof
    report.json      the report's content, machine-readable           (--format json)
    timeline.svg     the timeline figure
    VERIFY.txt       how to check all of this without our software
    registry.json    the registry commitment as published: root, size, time and signing
                     key fingerprint (canonical JSON; when the commit was attested)
    registry.pub, registry.sig   the key that signed registry.json, and its signature
    registry.tsr     RFC 3161 timestamp of registry.json, with registry-tsa-ca.pem
    signer.pub       the Ed25519 public key that signed the bundle
    manifest.json    SHA-256 of each file above, ledger head, registry root, software
                     version and git commit, config hash, analysis parameters and seeds
    manifest.sig     Ed25519 signature of manifest.json (raw 64 bytes)
    manifest.tsr     RFC 3161 timestamp of manifest.json                (when configured)
    tsa-ca.pem       the timestamp authority's root certificate         (when timestamped)
    report.html      the report; it prints the manifest's SHA-256      (--format html)
    report.pdf       the same, paginated                               (--format pdf)
    SHA256SUMS       SHA-256 of every file but itself and its signature (sha256sum -c)
    SHA256SUMS.sig   Ed25519 signature of SHA256SUMS

The renderings carry the manifest's hash, so the manifest cannot list theirs: they, the
signature and the timestamp are sealed by SHA256SUMS, which is signed with the same key.
"""

from __future__ import annotations

__all__ = ["BundleCheck", "BundleResult", "check_stated_hashes", "verify_bundle",
           "write_bundle"]

import base64
import json
import re
import shutil
import zipfile
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from auditor.byhand import verify_script
from auditor.canonical import canonical_json, sha256_hex
from auditor.config import Settings
from auditor.errors import AuditorError, Problem
from auditor.registry import UnsealedCanary
from auditor.report import (
    ReportContext,
    ReportRequest,
    build_context,
    render_html,
    render_pdf,
    template_environment,
)
from auditor.signing import fingerprint, load_public_key, public_pem, sign, verify_signature
from auditor.store.ledger import chain_hash
from auditor.store.models import Report, Response
from auditor.timestamp import (
    TimestampError,
    TimestampInfo,
    embedded_roots,
    load_certificates,
    request_timestamp,
    verify_timestamp,
)

FORMAT = "canary-auditor-bundle/2"
FORMATS = ("html", "pdf", "json")
SUMS, SUMS_SIG = "SHA256SUMS", "SHA256SUMS.sig"
GAPS = "ledger-hashes.txt"
REG, REG_PUB, REG_SIG, REG_TSR, REG_CA = ("registry.json", "registry.pub", "registry.sig",
                                          "registry.tsr", "registry-tsa-ca.pem")
MANIFEST, MANIFEST_SIG, TSR, TSA_CA = "manifest.json", "manifest.sig", "manifest.tsr", "tsa-ca.pem"
RENDERINGS = ("report.html", "report.pdf")
_SEALED_BY_SUMS = {*RENDERINGS, MANIFEST, MANIFEST_SIG, TSR, TSA_CA}


@dataclass(frozen=True)
class BundleResult:
    path: Path
    zip_path: Path
    manifest_sha256: str
    signer_fingerprint: str
    timestamp: TimestampInfo | None
    files: dict[str, str]
    responses: int
    report_id: int | None


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode()


def _sums_text(files: dict[str, bytes]) -> bytes:
    return "".join(f"{sha256_hex(data)}  {name}\n" for name, data in sorted(files.items())
                   ).encode("ascii")


def _registry_files(att: dict[str, Any] | None) -> dict[str, bytes]:
    """The registry commitment's published statement, signature and timestamp."""
    if not att:
        return {}
    out = {REG: canonical_json(att["statement"])}
    if att.get("signature"):
        out[REG_PUB] = att["public_key"].encode("ascii")
        out[REG_SIG] = bytes.fromhex(att["signature"])
    if att.get("timestamp"):
        out[REG_TSR] = base64.b64decode(att["timestamp"])
        out[REG_CA] = att["tsa_ca"].encode("ascii")
    return out


def _left_out(session: Session, ctx: ReportContext) -> bytes:
    """``SEQ RECORD_HASH`` lines of the ledger entries between the first response used and
    the ledger head that the evidence leaves out: with them, the chain recomputes from the
    first included entry to the head, so a removed entry shows."""
    included = {r["seq"] for r in ctx.evidence}
    head = ctx.data["ledger_head"]["seq"]
    if not included:
        return b""
    rows = session.execute(select(Response.seq, Response.record_hash)
                           .where(Response.seq > min(included), Response.seq <= head)
                           .order_by(Response.seq)).tuples()
    return "".join(f"{seq} {h}\n" for seq, h in rows if seq not in included).encode("ascii")


def write_bundle(
    session: Session,
    settings: Settings,
    req: ReportRequest,
    key: Ed25519PrivateKey,
    out_dir: str | Path | None = None,
    formats: tuple[str, ...] = FORMATS,
    tsa_url: str | None = None,
    tsa_roots: list[x509.Certificate] | None = None,
    now: datetime | None = None,
    context: ReportContext | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> BundleResult:
    """Builds, signs and (optionally) timestamps a bundle; records it in ``reports``.

    ``progress(stage, percent)``, when given, is told as each stage begins (the portal
    shows it)."""
    def step(stage: str, percent: int) -> None:
        if progress is not None:
            progress(stage, percent)

    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise AuditorError(f"unknown report format(s) {bad}",
                           [Problem("--format takes a comma-separated list",
                                    fix="use html, pdf and/or json")])
    now = (now or datetime.now(UTC)).astimezone(UTC)
    step("selecting the verdict and its evidence", 5)
    ctx = context or build_context(session, settings, req, now=now)
    step("writing evidence and manifest", 35)
    out = Path(out_dir) if out_dir is not None else settings.reports_path
    name = f"{req.suspect}-{now.strftime('%Y%m%dT%H%M%SZ')}"
    final = out / name
    if final.exists() or final.with_suffix(".zip").exists():
        raise AuditorError(f"bundle {final} already exists",
                           [Problem("refusing to overwrite evidence", str(final),
                                    fix="move it away or choose another --out")])
    fp = fingerprint(key)
    files: dict[str, bytes] = {}
    files["evidence.jsonl"] = b"".join(canonical_json(r) + b"\n" for r in ctx.evidence)
    files[GAPS] = _left_out(session, ctx)
    files["verdict.json"] = _json_bytes(ctx.verdict)
    files["canaries.json"] = _json_bytes({
        "registry_root": ctx.data["registry"]["root"], "canaries": ctx.canaries})
    files["timeline.svg"] = ctx.timeline_svg.encode("utf-8")
    if "json" in formats:
        files["report.json"] = _json_bytes(ctx.data)
    files.update(_registry_files(ctx.extra.get("registry_attestation")))
    files["signer.pub"] = public_pem(key)
    files["VERIFY.txt"] = template_environment().get_template("VERIFY.txt.j2").render(
        r=ctx.data, fingerprint=fp, name=name, timestamped=bool(tsa_url),
        steps=verify_script(bool(tsa_url), name, fp, files)).encode("utf-8")
    seqs = [r["seq"] for r in ctx.evidence]
    manifest = {
        "format": FORMAT,
        "bundle": name,
        "created_at": ctx.data["created_at"],
        "operator": ctx.data["operator"],
        "files": {n: {"sha256": sha256_hex(b), "bytes": len(b)} for n, b in sorted(files.items())},
        "renderings": [f"report.{f}" for f in ("html", "pdf") if f in formats],
        "selection": {**ctx.data["request"], "window": ctx.data["window"]},
        "evidence": {"responses": len(ctx.evidence), "first_seq": min(seqs, default=None),
                     "last_seq": max(seqs, default=None),
                     "canaries": ctx.data["n_canaries_evidence"],
                     "redacted": ctx.data["redactions"]["answers"]},
        "ledger_head": ctx.data["ledger_head"],
        "registry": ctx.data["registry"],
        "software": ctx.data["software"],
        "config_hash": ctx.data["config_hash"],
        "analysis": {"verdict_id": ctx.verdict_id, "method": ctx.verdict["method"],
                     "params": ctx.verdict["params"], "seeds": ctx.data["seeds"],
                     "alpha": ctx.data["alpha"], "code_version": ctx.verdict["code_version"],
                     "verdict_created_at": ctx.verdict["created_at"]},
        "signer": {"algorithm": "Ed25519", "fingerprint": fp},
        "timestamp_authority": tsa_url,
    }
    files[MANIFEST] = _json_bytes(manifest)
    manifest_sha = sha256_hex(files[MANIFEST])
    files[MANIFEST_SIG] = sign(key, files[MANIFEST])
    ts_info: TimestampInfo | None = None
    if tsa_url:
        step("timestamping the manifest", 45)
        tsr, ts_info, roots = request_timestamp(tsa_url, files[MANIFEST], tsa_roots,
                                                settings.timestamp.timeout_seconds)
        files[TSR] = tsr
        files[TSA_CA] = b"".join(r.public_bytes(serialization.Encoding.PEM) for r in roots)
    bundle_info = {
        "name": name, "manifest_sha256": manifest_sha, "fingerprint": fp,
        "timestamp": ts_info.as_dict() if ts_info else None, "tsa_url": tsa_url,
        "files": manifest["files"], "renderings": manifest["renderings"],
    }
    if "html" in formats or "pdf" in formats:
        step("rendering the report", 55)
        html = render_html(ctx, bundle_info)
        if "html" in formats:
            files["report.html"] = html.encode("utf-8")
        if "pdf" in formats:
            files["report.pdf"] = render_pdf(html)
    step("signing and writing the bundle", 90)
    files[SUMS] = _sums_text(files)
    files[SUMS_SIG] = sign(key, files[SUMS])

    out.mkdir(parents=True, exist_ok=True)
    partial = out / f".{name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    for fname, data in files.items():
        (partial / fname).write_bytes(data)
    zip_tmp = out / f".{name}.zip.partial"
    stamp = now.timetuple()[:6]
    with zipfile.ZipFile(zip_tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for fname in sorted(files):
            info = zipfile.ZipInfo(f"{name}/{fname}", date_time=stamp)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[fname])
    partial.rename(final)
    zip_path = final.with_suffix(".zip")
    zip_tmp.rename(zip_path)
    row = Report(suspect_id=ctx.suspect_id, protected_id=ctx.protected_id,
                 verdict_id=ctx.verdict_id, bundle_path=str(final),
                 bundle_sha256=sha256_hex(zip_path.read_bytes()), manifest_sha256=manifest_sha,
                 signer_fingerprint=fp, created_at=now)
    session.add(row)
    session.flush()
    return BundleResult(final, zip_path, manifest_sha, fp, ts_info,
                        {n: sha256_hex(b) for n, b in files.items()}, len(ctx.evidence), row.id)


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class BundleCheck:
    path: Path
    files: int
    responses: int
    unsealed: int
    manifest_sha256: str
    signer_fingerprint: str
    timestamp: TimestampInfo | None
    redacted: int = 0
    trusted: bool = False
    registry_signer: str | None = None
    registry_timestamp: TimestampInfo | None = None

    def summary(self) -> str:
        ts = (f"; timestamped {self.timestamp.gen_time.isoformat()} by "
              f"{self.timestamp.tsa_subject} (root {self.timestamp.root_fingerprint[:16]}…)"
              if self.timestamp else "; no timestamp")
        key = ("a trusted key" if self.trusted else
               "a key you must compare with one obtained out of band (or pass --key)")
        red = (f", {self.redacted} answers redacted (their record hashes kept)"
               if self.redacted else "")
        reg = ((f"; registry root published under key {self.registry_signer}"
                if self.registry_signer else "; registry root not signed") +
               (f", timestamped {self.registry_timestamp.gen_time.isoformat()} by "
                f"{self.registry_timestamp.tsa_subject}" if self.registry_timestamp
                else ", its date on the auditor's clock only"))
        return (f"bundle ok: {self.files} files, {self.responses} responses{red}, "
                f"{self.unsealed} unsealed canaries; manifest {self.manifest_sha256}; "
                f"signed by {self.signer_fingerprint} ({key}){ts}{reg}")


def _fail(bundle: Path, file: str, message: str, fix: str | None = None) -> AuditorError:
    return AuditorError(f"bundle {bundle}: {file}: {message}",
                        [Problem(message, file=file, fix=fix)])


def _read_bundle(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        files: dict[str, bytes] = {}
        for p in sorted(path.iterdir()):
            if p.is_symlink():
                raise _fail(path, p.name, "is a link (bundles hold plain files only)",
                            "remove it")
            if not p.is_file():
                raise _fail(path, p.name, "unexpected entry (bundles hold files only)",
                            "remove it")
            files[p.name] = p.read_bytes()
        return files
    if not path.exists():
        raise AuditorError(f"bundle {path} does not exist",
                           [Problem("not found", str(path), fix="give a bundle dir or zip")])
    try:
        with zipfile.ZipFile(path) as zf:
            return _zip_members(path, zf)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise AuditorError(f"bundle {path} is neither a directory nor a readable zip: {exc}",
                           [Problem("unreadable", str(path))]) from None
    except Exception as exc:  # CRC errors on altered members
        if isinstance(exc, AuditorError):
            raise
        raise AuditorError(f"bundle {path}: zip is damaged: {exc}",
                           [Problem("damaged zip", str(path))]) from None


def _zip_members(path: Path, zf: zipfile.ZipFile) -> dict[str, bytes]:
    """The members of a bundle zip: plain files, each once, all in one folder.

    Anything else (a name twice, a file outside the folder or in a second one, an
    absolute or ``..`` path, a link, a nested folder) is refused, since an unzip tool
    would extract it beside or instead of the signed files.
    """
    out: dict[str, bytes] = {}
    infos = zf.infolist()
    folder = next((i.filename.split("/")[0] for i in infos
                   if i.filename.endswith("/" + SUMS)), None)
    for info in infos:
        name = info.filename
        parts = name.rstrip("/").split("/")
        if name.startswith("/") or "\\" in name or ".." in parts or "" in parts[:-1]:
            raise _fail(path, name, "unsafe path in the zip (absolute, `..` or backslash)")
        folder = folder or parts[0]
        if info.is_dir():
            if parts != [folder]:
                raise _fail(path, name, "a folder the bundle does not have")
            continue
        if len(parts) != 2 or parts[0] != folder:
            where = "outside the bundle's folder" if len(parts) == 1 else (
                f"in a folder other than {folder}/" if parts[0] != folder else "nested")
            raise _fail(path, name, f"is {where} in the zip (a bundle zip holds one folder)")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise _fail(path, parts[1], "is a link in the zip (bundles hold plain files only)")
        if parts[1] in out:
            raise _fail(path, parts[1], "appears more than once in the zip (an unzip tool "
                        "would extract one of them unchecked)")
        out[parts[1]] = zf.read(info)
    return out


_SUM_LINE = re.compile(r"^([0-9a-f]{64})  ([A-Za-z0-9._-]+)$")


def _parse_sums(data: bytes) -> dict[str, str] | None:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    out = {}
    for line in text.splitlines():
        m = _SUM_LINE.match(line)
        if not m:
            return None
        out[m.group(2)] = m.group(1)
    return out


def verify_bundle(
    path: str | Path, tsa_roots: list[x509.Certificate] | None = None,
    trusted_keys: Collection[str] | None = None,
) -> BundleCheck:
    """Checks every hash, both signatures, the timestamp, each unsealed canary's proof, the
    chain across the entries left out, and every hash the renderings state.

    Raises AuditorError naming the first file that fails; returns a summary otherwise.
    ``tsa_roots``: the timestamp authority's root certificates, obtained independently;
    without them the bundle's own ``tsa-ca.pem`` is used. ``trusted_keys``: fingerprints
    of the auditor's signing keys, obtained out of band; the bundle's key must be one.
    """
    bundle = Path(path)
    files = _read_bundle(bundle)
    for required in (SUMS, SUMS_SIG, "signer.pub", MANIFEST, MANIFEST_SIG):
        if required not in files:
            raise _fail(bundle, required, "missing", "the bundle is incomplete")
    pub = load_public_key(files["signer.pub"], "signer.pub")
    sums_ok = verify_signature(pub, files[SUMS_SIG], files[SUMS])
    manifest_ok = verify_signature(pub, files[MANIFEST_SIG], files[MANIFEST])
    if not sums_ok and not manifest_ok:
        raise _fail(bundle, "signer.pub", "neither SHA256SUMS.sig nor manifest.sig verifies "
                    "with this key (the key was altered or replaced)")
    sums = _parse_sums(files[SUMS])
    if not sums_ok:
        intact = sums is not None and set(sums) == set(files) - {SUMS, SUMS_SIG} and all(
            sha256_hex(files[n]) == h for n, h in sums.items())
        if intact:
            raise _fail(bundle, SUMS_SIG, "the signature does not verify over SHA256SUMS "
                        "(the signature was altered)")
        raise _fail(bundle, SUMS, "does not match its signature SHA256SUMS.sig "
                    "(the list of hashes was altered)")
    if sums is None:
        raise _fail(bundle, SUMS, "is signed but not in `sha256sum` format")
    for name in sorted(files):
        if name in (SUMS, SUMS_SIG):
            continue
        if name not in sums:
            raise _fail(bundle, name, "is not listed in SHA256SUMS (added after signing)",
                        "remove it")
        if sha256_hex(files[name]) != sums[name]:
            raise _fail(bundle, name, "its SHA-256 does not match SHA256SUMS (altered)")
    for name in sums:
        if name not in files:
            raise _fail(bundle, name, "listed in SHA256SUMS but missing")
    if not manifest_ok:
        raise _fail(bundle, MANIFEST_SIG, "does not verify over manifest.json")
    try:
        manifest = json.loads(files[MANIFEST])
    except ValueError as exc:
        raise _fail(bundle, MANIFEST, f"not JSON: {exc}") from None
    fp = fingerprint(pub)
    if manifest.get("signer", {}).get("fingerprint") != fp:
        raise _fail(bundle, "signer.pub", "its fingerprint differs from the one in manifest.json")
    trusted = {k.strip().lower() for k in trusted_keys or ()}
    if trusted and fp not in trusted:
        raise _fail(bundle, "signer.pub", f"the bundle is signed by key {fp}, which is not a "
                    "trusted key (the bundle may have been re-signed by someone else)",
                    "compare with the fingerprint the auditor gave you out of band")
    listed: dict[str, Any] = manifest.get("files", {})
    for name, entry in listed.items():
        if name not in files:
            raise _fail(bundle, name, "listed in manifest.json but missing")
        if sha256_hex(files[name]) != entry.get("sha256"):
            raise _fail(bundle, name, "its SHA-256 does not match manifest.json")
    for name in files:
        if name not in listed and name not in _SEALED_BY_SUMS | {SUMS, SUMS_SIG}:
            raise _fail(bundle, name, "not listed in manifest.json")
    manifest_sha = sha256_hex(files[MANIFEST])

    ts_info = None
    if manifest.get("timestamp_authority") and TSR not in files:
        raise _fail(bundle, TSR, "missing, though manifest.json names a timestamp authority")
    if TSR in files:
        roots = list(tsa_roots or [])
        try:
            if not roots and TSA_CA in files:
                roots = load_certificates(files[TSA_CA])
            if not roots:
                roots = embedded_roots(files[TSR])
            ts_info = verify_timestamp(files[TSR], files[MANIFEST], roots)
        except TimestampError as exc:
            raise _fail(bundle, TSR, f"timestamp does not check out: {exc}",
                        "obtain the authority's root certificate and pass it with --tsa-ca"
                        ) from None
        except Exception as exc:
            raise _fail(bundle, TSR, f"timestamp unreadable: {exc}") from None

    reg_key, reg_ts = _check_registry(bundle, files, manifest, fp, trusted, tsa_roots)
    unsealed = _check_canaries(bundle, files, manifest)
    responses, redacted = _check_evidence(bundle, files, manifest, unsealed)
    for name in manifest.get("renderings", []):
        if name not in files:
            raise _fail(bundle, name, "missing, though manifest.json lists it as a rendering")
    if "report.html" in files:
        m = re.search(rb'<meta name="manifest-sha256" content="([0-9a-f]{64})"',
                      files["report.html"])
        if not m or m.group(1).decode() != manifest_sha:
            raise _fail(bundle, "report.html", "does not name this bundle's manifest hash")
    stated = _bundle_hashes(files, manifest_sha, fp, ts_info)
    for name in RENDERINGS:
        if name in files:
            check_stated_hashes(bundle, name, _rendering_text(bundle, name, files[name]),
                                stated, required={manifest_sha: "manifest hash",
                                                  fp: "signing key fingerprint"})
    return BundleCheck(bundle, len(files), responses, len(unsealed), manifest_sha, fp, ts_info,
                       redacted, bool(trusted), reg_key, reg_ts)


_HEX64 = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


def _bundle_hashes(files: dict[str, bytes], manifest_sha: str, fp: str,
                   ts_info: TimestampInfo | None) -> set[str]:
    """Every 64-hex value the checked files hold, this manifest's hash, the key's
    fingerprint and the timestamp root's: what a rendering may state."""
    found = {manifest_sha, fp}
    if ts_info is not None:
        found.add(ts_info.root_fingerprint)
    for name, data in files.items():
        if name not in RENDERINGS:
            found.update(m.lower() for m in _HEX64.findall(data.decode("utf-8", "replace")))
    return found


def _rendering_text(bundle: Path, name: str, data: bytes) -> str:
    """The text a reader sees: the PDF's text layer, or the HTML as written."""
    if name != "report.pdf":
        return data.decode("utf-8", "replace")
    import io

    from pypdf import PdfReader

    try:
        return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    except Exception as exc:  # pypdf raises many types on damaged files
        raise _fail(bundle, name, f"its text cannot be read ({exc})") from None


def check_stated_hashes(bundle: Path, name: str, text: str, known: set[str],
                        required: dict[str, str] | None = None) -> None:
    """Every 64-hex value ``text`` states must be one the verified bundle holds, and each
    ``required`` value (hash -> what it is) must be stated, intact."""
    for value in _HEX64.findall(text):
        if value.lower() not in known:
            raise _fail(bundle, name, f"states the hash {value}, which is none of this "
                        "bundle's (the report belongs to another bundle or was altered)")
    for value, what in (required or {}).items():
        if value not in text:
            raise _fail(bundle, name, f"does not state this bundle's {what} {value} (the "
                        "report belongs to another bundle or was altered)")


def _check_registry(bundle: Path, files: dict[str, bytes], manifest: dict[str, Any], fp: str,
                    trusted: set[str], tsa_roots: list[x509.Certificate] | None
                    ) -> tuple[str | None, TimestampInfo | None]:
    """The registry commitment as published: it states the manifest's root, its signature
    verifies under the key it names, that key is the bundle's (or both are trusted), and its
    timestamp verifies. Returns (that key's fingerprint, the timestamp)."""
    reg = manifest.get("registry", {})
    if REG not in files:
        for name, claim in ((REG, "signer_fingerprint"), (REG_TSR, "timestamped_at")):
            if reg.get(claim):
                raise _fail(bundle, name, f"missing, though manifest.json states the registry "
                            f"commitment's {claim}")
        return None, None
    try:
        statement = json.loads(files[REG])
    except ValueError as exc:
        raise _fail(bundle, REG, f"not JSON: {exc}") from None
    if statement.get("root") != reg.get("root") or statement.get("size") != reg.get("size"):
        raise _fail(bundle, REG, "states another registry root or size than manifest.json")
    key_fp = statement.get("signer_fingerprint")
    if key_fp != reg.get("signer_fingerprint"):
        raise _fail(bundle, REG, "names another signing key than manifest.json")
    if key_fp:
        for name in (REG_PUB, REG_SIG):
            if name not in files:
                raise _fail(bundle, name, "missing, though registry.json names a signing key")
        pub = load_public_key(files[REG_PUB], REG_PUB)
        if fingerprint(pub) != key_fp:
            raise _fail(bundle, REG_PUB, "is not the key registry.json names")
        if not verify_signature(pub, files[REG_SIG], files[REG]):
            raise _fail(bundle, REG_SIG, "does not verify over registry.json")
        if key_fp != fp and not {key_fp, fp} <= trusted:
            raise _fail(bundle, "signer.pub", f"the bundle is signed by key {fp}, but the "
                        f"registry root was published under key {key_fp}: a later key",
                        "if the auditor rotated its key, obtain both fingerprints out of band "
                        "and pass each with --key")
    if REG_TSR not in files:
        if reg.get("timestamped_at"):
            raise _fail(bundle, REG_TSR, "missing, though manifest.json states a timestamp")
        return key_fp, None
    try:
        roots = list(tsa_roots or []) or load_certificates(files.get(REG_CA, b""))
        return key_fp, verify_timestamp(files[REG_TSR], files[REG], roots)
    except TimestampError as exc:
        raise _fail(bundle, REG_TSR, f"timestamp does not check out: {exc}",
                    "obtain the authority's root certificate and pass it with --tsa-ca"
                    ) from None


def _check_canaries(bundle: Path, files: dict[str, bytes], manifest: dict[str, Any]
                    ) -> dict[tuple[str, int], str]:
    """Each unsealed canary: salt + content give its commitment, and the proof its root."""
    if "canaries.json" not in files:
        return {}
    try:
        listing = json.loads(files["canaries.json"])
    except ValueError as exc:
        raise _fail(bundle, "canaries.json", f"not JSON: {exc}") from None
    root = manifest.get("registry", {}).get("root")
    commitments: dict[tuple[str, int], str] = {}
    for c in listing.get("canaries", []):
        u = c.get("unsealed")
        if not u:
            continue
        try:
            uc = UnsealedCanary(**u)
        except TypeError as exc:
            raise _fail(bundle, "canaries.json", f"canary {c.get('canary_id')!r}: "
                        f"malformed unsealing ({exc})") from None
        if uc.root != root:
            raise _fail(bundle, "canaries.json", f"canary {uc.canary_id!r} is proved against "
                        f"root {uc.root[:16]}…, not the manifest's registry root")
        if uc.commitment != c.get("commitment") or not uc.verify():
            raise _fail(bundle, "canaries.json", f"canary {uc.canary_id!r}: its salt, content "
                        "and Merkle proof do not reproduce the committed root")
        commitments[(uc.canary_id, uc.version)] = uc.commitment
    return commitments


def _check_evidence(bundle: Path, files: dict[str, bytes], manifest: dict[str, Any],
                    unsealed: dict[tuple[str, int], str]) -> tuple[int, int]:
    """Recomputes every record hash the evidence states, and the chain from the first
    response through the hashes of the entries left out (``ledger-hashes.txt``) to the
    ledger head the manifest names. Returns (responses, redacted answers)."""
    if "evidence.jsonl" not in files:
        raise _fail(bundle, "evidence.jsonl", "missing")
    chain: dict[int, tuple[str, str | None, str | None]] = {}  # seq -> record hash, prev, link
    count, redacted, last_seq = 0, 0, 0
    for number, line in enumerate(files["evidence.jsonl"].splitlines(), start=1):
        try:
            row = json.loads(line)
            record, seq = row["record"], int(row["seq"])
            record_hash, prev, link = row["record_hash"], row["prev_chain"], row["chain"]
        except (ValueError, KeyError, TypeError) as exc:
            raise _fail(bundle, "evidence.jsonl", f"line {number} is malformed ({exc})") from None
        where = f"line {number} (ledger position {seq})"
        if seq <= last_seq:
            raise _fail(bundle, "evidence.jsonl", f"{where} is out of ledger order")
        if row.get("redaction"):
            redacted += 1  # its full record is withheld; record_hash still links the chain
        elif sha256_hex(canonical_json(record)) != record_hash:
            raise _fail(bundle, "evidence.jsonl", f"{where}: the record does not hash to its "
                        "record_hash")
        if chain_hash(prev, record_hash) != link:
            raise _fail(bundle, "evidence.jsonl", f"{where}: chain != sha256(prev_chain || "
                        "record_hash)")
        key = (record.get("canary_id"), record.get("canary_version"))
        if key in unsealed and unsealed[key] != record.get("canary_commitment"):
            raise _fail(bundle, "evidence.jsonl", f"{where}: canary_commitment differs from "
                        "the unsealed canary's commitment")
        chain[seq] = (record_hash, prev, link)
        last_seq, count = seq, count + 1
    expected = manifest.get("evidence", {}).get("responses")
    if expected is not None and expected != count:
        raise _fail(bundle, "evidence.jsonl", f"holds {count} responses, the manifest says "
                    f"{expected}")
    if redacted != manifest.get("evidence", {}).get("redacted", 0):
        raise _fail(bundle, "evidence.jsonl", f"{redacted} answers are marked redacted, the "
                    "manifest says " + str(manifest.get("evidence", {}).get("redacted", 0)))
    head = manifest.get("ledger_head", {})
    if isinstance(head.get("seq"), int) and last_seq > head["seq"]:
        raise _fail(bundle, "evidence.jsonl", "cites a ledger position beyond the head")
    if manifest.get("format") != "canary-auditor-bundle/1":
        _check_continuity(bundle, files, chain, head)
    return count, redacted


def _check_continuity(bundle: Path, files: dict[str, bytes],
                      chain: dict[int, tuple[str, str | None, str | None]],
                      head: dict[str, Any]) -> None:
    """Folds the chain over every ledger position from the first response to the head."""
    if GAPS not in files:
        raise _fail(bundle, GAPS, "missing: without it nothing shows that no response was "
                    "removed")
    for number, line in enumerate(files[GAPS].decode("ascii", "replace").splitlines(), 1):
        m = re.fullmatch(r"([0-9]+) ([0-9a-f]{64})", line)
        if not m:
            raise _fail(bundle, GAPS, f"line {number} is not `SEQ RECORD_HASH`")
        seq = int(m.group(1))
        if seq in chain:
            raise _fail(bundle, GAPS, f"line {number}: ledger position {seq} is stated twice")
        chain[seq] = (m.group(2), None, None)
    if not chain:
        return
    first, last = min(chain), max(chain)
    if last != head.get("seq"):
        raise _fail(bundle, GAPS, f"ends at ledger position {last}, not at the head "
                    f"{head.get('seq')} the manifest names")
    link = chain[first][1]
    for seq in range(first, last + 1):
        if seq not in chain:
            raise _fail(bundle, GAPS, f"ledger position {seq} is missing between the "
                        "responses used (an entry was removed)")
        record_hash, prev, stated = chain[seq]
        if prev is not None and prev != link:
            raise _fail(bundle, "evidence.jsonl", f"ledger position {seq}: prev_chain is not "
                        "the chain recomputed across the entries before it (an entry was "
                        f"removed or altered; see {GAPS})")
        assert link is not None
        link = chain_hash(link, record_hash)
        if stated is not None and stated != link:
            raise _fail(bundle, "evidence.jsonl", f"ledger position {seq}: chain differs from "
                        "the recomputed one")
    if link != head.get("chain"):
        raise _fail(bundle, GAPS, "the chain recomputed to the head differs from the ledger "
                    "head in manifest.json (an entry was removed or altered)")
