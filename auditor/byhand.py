"""Checking a bundle by hand: the commands VERIFY.txt and the report print.

Each step is a shell command (bash) run inside the unpacked bundle folder, with only
``sha256sum``, ``openssl`` (3.x) and ``python3`` (standard library). Every step exits
non-zero when its check fails. Python steps are heredocs printed flush left, so they run
exactly as printed; their code holds no blank lines and no lines starting with ``#``, so
VERIFY.txt can mark each step with a ``# Step N`` comment block that bash ignores.
"""

from __future__ import annotations

__all__ = ["verify_script", "verify_steps"]

import textwrap
from collections.abc import Collection

_ZIP = """python3 - '{name}' <<'EOF'
import os, stat, sys, zipfile
name = sys.argv[1]
path = os.path.join("..", name + ".zip")
if not os.path.exists(path):
    sys.exit(f"{{path}} not found: unpack the zip next to itself (this step checks the zip)")
infos = zipfile.ZipFile(path).infolist()
names = [i.filename for i in infos]
twice = sorted({{n for n in names if names.count(n) > 1}})
assert not twice, f"members appear more than once: {{twice}}"
outside = [n for n in names if n.count("/") != 1 or not n.startswith(name + "/")]
assert not outside, f"members outside the folder {{name}}/ (or nested): {{outside}}"
links = [i.filename for i in infos if stat.S_ISLNK(i.external_attr >> 16)]
assert not links, f"members that are links: {{links}}"
sums = zipfile.ZipFile(path).read(name + "/SHA256SUMS").decode("ascii").splitlines()
expected = sorted([name + "/" + line[66:] for line in sums]
                  + [name + "/SHA256SUMS", name + "/SHA256SUMS.sig"])
differ = sorted(set(names) ^ set(expected))
assert not differ, f"the zip's members differ from SHA256SUMS: {{differ}}"
print(f"the zip holds exactly the {{len(names)}} files of SHA256SUMS, each once, in {{name}}/")
EOF"""

_UNLISTED = ("diff <(LC_ALL=C ls -A | grep -vxF -e SHA256SUMS -e SHA256SUMS.sig) "
             "<(sed 's/^[0-9a-f]\\{64\\}  //' SHA256SUMS | LC_ALL=C sort) "
             "&& echo \"no file here is missing from SHA256SUMS, none listed is absent\"")

_SIGNATURES = ("openssl pkeyutl -verify -pubin -inkey signer.pub -rawin -in SHA256SUMS "
               "-sigfile SHA256SUMS.sig &&\n"
               "openssl pkeyutl -verify -pubin -inkey signer.pub -rawin -in manifest.json "
               "-sigfile manifest.sig")

_KEY = """FINGERPRINT=${{FINGERPRINT:-{fingerprint}}}
openssl pkey -pubin -in signer.pub -outform DER | sha256sum | grep -x "$FINGERPRINT  -" ||
{{ echo "signer.pub is NOT the key $FINGERPRINT"; false; }}"""

_CHAIN = """python3 - <<'EOF'
import hashlib, json
def sha(data):
    return hashlib.sha256(data).hexdigest()
links, redacted = {}, 0
for n, line in enumerate(open("evidence.jsonl", encoding="utf-8"), 1):
    row = json.loads(line)
    if row.get("redaction"):
        redacted += 1
    else:
        record = json.dumps(row["record"], sort_keys=True, separators=(",", ":"),
                            ensure_ascii=False).encode("utf-8")
        assert sha(record) == row["record_hash"], f"evidence.jsonl line {n}: record != record_hash"
    links[row["seq"]] = (row["record_hash"], row["prev_chain"], row["chain"])
for line in open("ledger-hashes.txt", encoding="ascii"):
    seq, record_hash = line.split()
    assert int(seq) not in links, f"ledger position {seq} is stated twice"
    links[int(seq)] = (record_hash, None, None)
head = json.load(open("manifest.json", encoding="utf-8"))["ledger_head"]
first = min(links)
assert max(links) == head["seq"], "the entries do not end at the ledger head"
chain = links[first][1]
for seq in range(first, head["seq"] + 1):
    assert seq in links, f"ledger position {seq} is missing: an entry was removed"
    record_hash, prev, stated = links[seq]
    assert prev in (None, chain), f"ledger position {seq}: prev_chain breaks the chain"
    chain = sha((chain + record_hash).encode("ascii"))
    assert stated in (None, chain), f"ledger position {seq}: chain is not sha256(prev || hash)"
assert chain == head["chain"], "the recomputed chain differs from the head in manifest.json"
print(f"positions {first} to {head['seq']} chain to the head {chain};"
      f" {redacted} redacted answer(s) linked by their record hash")
EOF"""

_MERKLE = """python3 - <<'EOF'
import hashlib, json
def h(data):
    return hashlib.sha256(data).digest()
root = json.load(open("manifest.json", encoding="utf-8"))["registry"]["root"]
listing = json.load(open("canaries.json", encoding="utf-8"))
assert listing["registry_root"] == root, "canaries.json names another registry root"
opened = [c for c in listing["canaries"] if c.get("unsealed")]
for c in opened:
    u, cid = c["unsealed"], c["canary_id"]
    salted = bytes.fromhex(u["salt"]) + u["canonical"].encode("utf-8")
    commitment = hashlib.sha256(salted).hexdigest()
    assert commitment == u["commitment"] == c["commitment"], f"{cid}: wrong commitment"
    fn, sn, r = u["index"], u["size"] - 1, h(b"\\x00" + bytes.fromhex(commitment))
    assert 0 <= fn <= sn, f"{cid}: leaf index out of range"
    for sibling in map(bytes.fromhex, u["proof"]):
        assert sn > 0, f"{cid}: proof too long"
        if fn & 1 or fn == sn:
            r = h(b"\\x01" + sibling + r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = h(b"\\x01" + r + sibling)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0 and r.hex() == root == u["root"], f"{cid}: proof does not reach the root"
    print(f"{cid}: leaf {u['index']} of {u['size']} (counting from 0) reaches root {root}")
print(f"{len(opened)} opened canary(ies) check out against the registry root")
EOF"""


_REGISTRY = """python3 - <<'EOF'
import json
statement = json.load(open("registry.json", encoding="utf-8"))
registry = json.load(open("manifest.json", encoding="utf-8"))["registry"]
assert statement["root"] == registry["root"], "registry.json states another root"
assert statement["size"] == registry["size"], "registry.json states another size"
print(f"registry root {statement['root']} of {statement['size']} canaries, committed"
      f" {statement['committed_at']} under key {statement['signer_fingerprint']}")
EOF"""


def _registry_step(fingerprint: str, files: Collection[str]) -> tuple[str, str]:
    what = ("The registry root the canaries are proved against was published under the "
            "auditor's key: registry.pub must have the fingerprint you obtained out of band, "
            "as in step 5 (if the auditor has since changed keys, the one it had then)")
    cmds = []
    if "registry.sig" in files:
        cmds += [f"FINGERPRINT=${{FINGERPRINT:-{fingerprint}}}",
                 "openssl pkeyutl -verify -pubin -inkey registry.pub -rawin -in registry.json "
                 "-sigfile registry.sig &&",
                 "openssl pkey -pubin -in registry.pub -outform DER | sha256sum | "
                 "grep -x \"$FINGERPRINT  -\" &&"]
    if "registry.tsr" in files:
        what += ", and an independent authority timestamped it (its date is not the auditor's "
        what += "word; use the authority's own root certificate for full independence)"
        cmds.append("openssl ts -verify -data registry.json -in registry.tsr "
                    "-CAfile registry-tsa-ca.pem &&")
    return what + ".", "\n".join([*cmds, _REGISTRY])


def verify_steps(timestamped: bool, bundle: str = "BUNDLE",
                 fingerprint: str = "FINGERPRINT_FROM_THE_AUDITOR",
                 files: Collection[str] = ()) -> list[tuple[str, str]]:
    """(what it proves, shell command) pairs, run inside the unpacked bundle folder; the
    last pair is the same check with the auditor installed. ``files``: the bundle's files
    (steps for the registry's published commitment appear when it holds one)."""
    steps = [
        ("The zip holds exactly the files listed in SHA256SUMS, each once, in one folder, "
         "and no links (run this in the folder unpacked next to the zip).",
         _ZIP.format(name=bundle)),
        ("Every file matches the list of hashes (prints OK per file).",
         "sha256sum -c SHA256SUMS"),
        ("No file is here that SHA256SUMS does not list, and none it lists is absent.",
         _UNLISTED),
        ("The list of hashes and the manifest were signed by the key in signer.pub "
         "(each prints \"Signature Verified Successfully\").", _SIGNATURES),
        ("The key is the auditor's. A forger can re-sign a bundle with a key of their "
         "own, so set FINGERPRINT to the fingerprint you obtained from the auditor out of "
         "band (in person, by phone, or from a registry commitment you already hold), not "
         f"from this bundle. Unset, it is the one this bundle states, {fingerprint}, which "
         "proves nothing by itself. Prints the fingerprint when it matches.",
         _KEY.format(fingerprint=fingerprint)),
        ("The manifest is the one this report names: its hash equals the one on page 1.",
         "sha256sum manifest.json"),
    ]
    if timestamped:
        steps.append((
            "An independent authority saw the manifest at the stated time. Use the "
            "authority's root certificate obtained from the authority itself in place of "
            "tsa-ca.pem for full independence.",
            "openssl ts -verify -data manifest.json -in manifest.tsr -CAfile tsa-ca.pem"))
    steps.append((
        "Each response's record hashes to its record_hash, and the chain runs unbroken "
        "from the first response used to the ledger head in the manifest, through the "
        "record hashes of the entries the report leaves out (ledger-hashes.txt): no entry "
        "was removed, altered or reordered. A redacted answer (one that quoted a sealed "
        "prompt) is linked by its record hash only.", _CHAIN))
    if "registry.json" in files:
        steps.append(_registry_step(fingerprint, files))
    steps.append((
        "Each opened canary's salt and content give its commitment, and its Merkle proof "
        "(RFC 6962 hashing) leads from that commitment to the registry root in the "
        "manifest.", _MERKLE))
    steps.append(("Or all of the above, plus every hash the report states, with the "
                  "auditor (exits non-zero and names the first file that fails).",
                  f"auditor verify ../{bundle}.zip --key {fingerprint}"))
    return steps


def verify_script(timestamped: bool, bundle: str, fingerprint: str,
                  files: Collection[str] = ()) -> str:
    """The steps as VERIFY.txt prints them: a ``# Step N`` comment, then the command."""
    *steps, (last_what, last_cmd) = verify_steps(timestamped, bundle, fingerprint, files)
    blocks = []
    for n, (what, cmd) in enumerate(steps, start=1):
        comment = textwrap.fill(f"Step {n}. {what}", 86, initial_indent="# ",
                                subsequent_indent="# ", break_on_hyphens=False,
                                break_long_words=False)
        blocks.append(f"{comment}\n{cmd}\n")
    blocks.append(textwrap.fill(last_what, 88) + f"\n\n{last_cmd}\n")
    return "\n".join(blocks)
