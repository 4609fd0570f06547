"""Disclosing one watermark key to a court's expert: its own package, never a report bundle.

The package lets the other side recompute every green list the report relies on, with
nothing but Python's standard library: the key (a 0600 file), the scheme's parameters,
the protected model's tokenizer.json and its hash, a stand-alone script that recomputes
a token's colour and the key's public id (to compare with the id committed with the
registry root before the suspect's release), SHA256SUMS and, when the signing key
exists, its Ed25519 signature.
"""

from __future__ import annotations

__all__ = ["DISCLOSURE_FORMAT", "RECOMPUTE_PY", "write_disclosure"]

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from auditor.config import Settings
from auditor.errors import AuditorError, Problem
from auditor.watermark.keys import key_id, load_key

DISCLOSURE_FORMAT = "canary-auditor-watermark-disclosure/1"

RECOMPUTE_PY = '''\
"""Recomputes the owner's watermark from the disclosed key (standard library only).

    python3 recompute.py KEYFILE id                  # the key's public id
    python3 recompute.py KEYFILE green H GAMMA W1,..,Wh TOKEN   # 1 if TOKEN is green after W
"""
import hashlib, hmac, struct, sys

PAD = 0xFFFFFFFF  # a window position before the first token of a sequence
GOLDEN, M1, M2, MASK = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, (1 << 64) - 1


def seed(key, h, window):
    msg = b"auditor-watermark-v1" + struct.pack(">B%dI" % h, h, *window)
    return int.from_bytes(hmac.new(key, msg, hashlib.sha256).digest()[:8], "big")


def green(key, h, gamma, window, token):
    z = (seed(key, h, window) + (token + 1) * GOLDEN) & MASK
    z = ((z ^ (z >> 30)) * M1) & MASK
    z = ((z ^ (z >> 27)) * M2) & MASK
    return (z ^ (z >> 31)) < min(int(gamma * 2**64), MASK)


if __name__ == "__main__":
    key = bytes.fromhex(open(sys.argv[1]).read().strip())
    if sys.argv[2] == "id":
        print(hmac.new(key, b"auditor-watermark-key-id", hashlib.sha256).hexdigest()[:16])
    else:
        h, gamma = int(sys.argv[3]), float(sys.argv[4])
        window = [int(x) for x in sys.argv[5].split(",")]
        print(int(green(key, h, gamma, window, int(sys.argv[6]))))
'''


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_disclosure(settings: Settings, kid: str, out: Path, recipient: str,
                     now: datetime | None = None) -> Path:
    """Writes the disclosure package of key ``kid`` into the new folder ``out``."""
    wm = settings.watermark
    entry = next((k for k in wm.keys if k.id == kid), None)
    if entry is None:
        known = ", ".join(k.id for k in wm.keys) or "none configured"
        raise AuditorError(f"no watermark key {kid} in [[watermark.keys]]", [Problem(
            f"known ids: {known}", file=settings.source,
            fix="pass one of the configured ids (`auditor watermark id` lists them)")])
    key = load_key(env=entry.env, file=settings.path(entry.file) if entry.file else None)
    if key_id(key) != kid:
        raise AuditorError(f"the key configured as {kid} has id {key_id(key)}", [Problem(
            "the configured source holds a different key", file=settings.source,
            fix="point env/file at the right key, or correct the id")])
    if out.exists():
        raise AuditorError(f"{out} already exists", [Problem(
            "a disclosure is written into a new folder", file=str(out),
            fix="choose a new folder")])
    out.mkdir(parents=True, mode=0o700)
    key_file = out / f"watermark-key-{kid}.hex"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    tokenizer = None
    if wm.tokenizer:
        src = settings.path(wm.tokenizer)
        if src.is_file():
            shutil.copyfile(src, out / "tokenizer.json")
            tokenizer = {"file": "tokenizer.json", "sha256": _sha256(out / "tokenizer.json")}
    (out / "recompute.py").write_text(RECOMPUTE_PY, encoding="utf-8")
    scheme = {
        "format": DISCLOSURE_FORMAT,
        "key_id": kid,
        "key_file": key_file.name,
        "disclosed_to": recipient,
        "disclosed_at": (now or datetime.now(UTC)).isoformat(),
        "valid_from": entry.valid_from.isoformat(),
        "valid_until": entry.valid_until.isoformat() if entry.valid_until else None,
        "gamma": wm.gamma, "delta": wm.delta, "h": wm.h, "vocab_size": wm.vocab_size,
        "tokenizer": tokenizer,
        "seed": "first 8 bytes, big-endian, of HMAC-SHA256(key, 'auditor-watermark-v1' || h "
                "as one byte || the h previous token ids as 4-byte big-endian words; "
                "0xFFFFFFFF before the first token)",
        "green": "token t is green after a window when SplitMix64's output function of "
                 "(seed + (t + 1) * 0x9E3779B97F4A7C15) mod 2^64 is below gamma * 2^64",
        "key_id_rule": "first 16 hex digits of HMAC-SHA256(key, 'auditor-watermark-key-id')",
    }
    (out / "scheme.json").write_text(json.dumps(scheme, indent=2) + "\n", encoding="utf-8")
    (out / "README.txt").write_text(
        f"Disclosure of watermark key {kid} to {recipient}.\n\n"
        "1. sha256sum -c SHA256SUMS   (and, with signer.pub: openssl pkeyutl -verify "
        "-pubin -inkey signer.pub -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig)\n"
        f"2. python3 recompute.py {key_file.name} id   -> must print {kid}, the id "
        "committed with the registry root (registry.json of a report bundle)\n"
        f"3. python3 recompute.py {key_file.name} green H GAMMA W1,..,Wh TOKEN -> 1 when "
        "TOKEN is green after the window; token ids come from tokenizer.json\n\n"
        "The key is secret: keep this folder as the court orders, and delete it after.\n",
        encoding="utf-8")
    names = sorted(p.name for p in out.iterdir())
    sums = "".join(f"{_sha256(out / n)}  {n}\n" for n in names)
    (out / "SHA256SUMS").write_text(sums, encoding="utf-8")
    signing = settings.path(settings.signing.key_path)
    if signing.is_file():
        from auditor.signing import load_private_key, public_pem, sign

        priv = load_private_key(signing)
        (out / "SHA256SUMS.sig").write_bytes(sign(priv, sums.encode()))
        (out / "signer.pub").write_bytes(public_pem(priv))
    return out
