"""The canary registry: YAML files under ``canaries/``, validated, versioned, committed.

A file holds one canary (a mapping with an ``id``), a list of canaries, or a mapping
with a ``canaries:`` list. Loading checks every file and reports every problem at once,
each with its file and line. Syncing writes a new canary version only when a canary's
content changed; committing stores a Merkle root over salted commitments.
"""

from __future__ import annotations

__all__ = [
    "attest_configured",
    "LoadedCanary",
    "Registry",
    "UnsealedCanary",
    "attest_commit",
    "commit_registry",
    "live_versions",
    "load_registry",
    "retire",
    "stored_canary",
    "sync_registry",
    "unseal",
]

import base64
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from auditor.canary import Canary, canonical_content, content_hash
from auditor.canonical import canonical_json
from auditor.config import Settings
from auditor.errors import AuditorError, Problem
from auditor.merkle import commitment, inclusion_proof, merkle_root, verify_inclusion
from auditor.signing import fingerprint, public_pem, sign
from auditor.store import live_versions
from auditor.store.models import CanaryVersion, RegistryCommit, utcnow
from auditor.timestamp import request_timestamp


@dataclass(frozen=True)
class LoadedCanary:
    canary: Canary
    file: str
    line: int


@dataclass
class Registry:
    canaries: list[LoadedCanary] = field(default_factory=list)

    def ids(self) -> list[str]:
        return [c.canary.id for c in self.canaries]

    def get(self, canary_id: str) -> Canary:
        for c in self.canaries:
            if c.canary.id == canary_id:
                return c.canary
        raise AuditorError(f"no canary with id {canary_id!r} in the registry")


class _Nodes:
    """YAML nodes with their line numbers, turned into plain Python values."""

    @staticmethod
    def line_of(node: yaml.Node, loc: tuple[Any, ...]) -> int:
        """Line (1-based) of the deepest node ``loc`` reaches inside ``node``."""
        current = node
        for part in loc:
            if isinstance(current, yaml.MappingNode):
                nxt = None
                for k, v in current.value:
                    if getattr(k, "value", None) == part:
                        nxt = v if not isinstance(v, yaml.ScalarNode) else k
                        break
                if nxt is None:
                    break
                current = nxt
            elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(current.value):
                    break
                current = current.value[part]
            else:
                break
        return current.start_mark.line + 1


def _construct(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _canary_nodes(doc: yaml.Node, file: str, problems: list[Problem]) -> list[yaml.Node]:
    if isinstance(doc, yaml.SequenceNode):
        return list(doc.value)
    if isinstance(doc, yaml.MappingNode):
        keys = {getattr(k, "value", None): v for k, v in doc.value}
        if "canaries" in keys:
            extra = set(keys) - {"canaries"}
            if extra:
                problems.append(
                    Problem(
                        f"unknown top-level key(s) {sorted(str(k) for k in extra)}",
                        file,
                        doc.start_mark.line + 1,
                        "a file holds `canaries:` (a list) and nothing else",
                    )
                )
            seq = keys["canaries"]
            if not isinstance(seq, yaml.SequenceNode):
                problems.append(
                    Problem(
                        "`canaries` must be a list",
                        file,
                        seq.start_mark.line + 1,
                        "write each canary as a `- id: ...` item",
                    )
                )
                return []
            return list(seq.value)
        return [doc]
    problems.append(
        Problem(
            "expected a canary mapping or a list of canaries",
            file,
            doc.start_mark.line + 1,
            "see canaries/README.md",
        )
    )
    return []


def _load_file(path: Path, shown: str, problems: list[Problem]) -> list[LoadedCanary]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(f"cannot read: {exc}", shown, fix="make it a UTF-8 text file"))
        return []
    try:
        docs = [d for d in yaml.compose_all(text, Loader=yaml.SafeLoader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(
            Problem(
                f"not valid YAML: {getattr(exc, 'problem', exc)}",
                shown,
                mark.line + 1 if mark else None,
                "fix the YAML syntax there",
            )
        )
        return []
    out: list[LoadedCanary] = []
    for doc in docs:
        for node in _canary_nodes(doc, shown, problems):
            line = node.start_mark.line + 1
            try:
                data = _construct(node)
            except yaml.YAMLError as exc:
                problems.append(Problem(f"cannot read canary: {exc}", shown, line))
                continue
            if not isinstance(data, dict):
                problems.append(
                    Problem("a canary must be a mapping with `id`, `kind`, `prompt`", shown, line)
                )
                continue
            try:
                canary = Canary.model_validate(data)
            except ValidationError as exc:
                cid = data.get("id", "?")
                for err in exc.errors():
                    loc = tuple(err["loc"])
                    where = ".".join(str(p) for p in loc) or "canary"
                    msg = err["msg"].removeprefix("Value error, ")
                    fix = {
                        "extra_forbidden": "remove the key or correct its spelling",
                        "missing": "add it",
                        "literal_error": "use one of the allowed values",
                    }.get(err["type"])
                    if err["type"] == "extra_forbidden":
                        msg = "unknown key"
                    problems.append(
                        Problem(
                            f"canary {cid!r}: {where}: {msg}", shown, _Nodes.line_of(node, loc), fix
                        )
                    )
                continue
            out.append(LoadedCanary(canary, shown, line))
    return out


def load_registry(directory: str | Path) -> Registry:
    """Loads and validates every ``*.yaml``/``*.yml`` file; raises with every problem found."""
    root = Path(directory)
    if not root.is_dir():
        raise AuditorError(
            f"canaries directory {root} does not exist",
            [
                Problem(
                    "not a directory",
                    str(root),
                    fix="create it or set canaries_dir / AUDITOR_CANARIES_DIR",
                )
            ],
        )
    problems: list[Problem] = []
    loaded: list[LoadedCanary] = []
    files = sorted(p for p in root.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())
    for path in files:
        loaded.extend(_load_file(path, str(path), problems))
    first: dict[str, LoadedCanary] = {}
    for item in loaded:
        cid = item.canary.id
        if cid in first:
            prev = first[cid]
            problems.append(
                Problem(
                    f"duplicate canary id {cid!r} (first at {prev.file}:{prev.line})",
                    item.file,
                    item.line,
                    "give each canary a unique id",
                )
            )
        else:
            first[cid] = item
    if problems:
        raise AuditorError(f"canary registry {root} has {len(problems)} problem(s)", problems)
    return Registry(sorted(first.values(), key=lambda c: c.canary.id))


@dataclass(frozen=True)
class SyncResult:
    created: list[str]
    retired: list[str]
    unchanged: int


def stored_canary(version: CanaryVersion) -> Canary:
    """A stored version as a Canary, through the same schema ``load_registry`` checks files
    with; a version an older auditor let through raises an AuditorError naming the fix."""
    try:
        return Canary.model_validate(version.content)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'canary'}: "
            f"{e['msg'].removeprefix('Value error, ')}" for e in exc.errors())
        raise AuditorError(
            f"canary {version.canary_id!r} version {version.version} in the store does not "
            f"load ({detail}); its attempts are skipped",
            [Problem("stored by an auditor that checked less", version.source_file,
                     fix=f"`auditor canaries retire {version.canary_id}`, then fix or remove "
                     "it in the canary files")]) from None


def retire(session: Session, canary_id: str) -> list[CanaryVersion]:
    """Retires the canary's live version(s); the next cycles no longer plan it. Caller
    commits. ``sync_registry`` stores it again while it is still in the canary files."""
    versions = list(session.scalars(
        select(CanaryVersion).where(CanaryVersion.canary_id == canary_id)))
    if not versions:
        raise AuditorError(f"no canary {canary_id!r} in the store",
                           [Problem("never synced", fix="check the id with "
                                    "`auditor canaries list`")])
    now = utcnow()
    live = [v for v in versions if v.retired_at is None]
    for v in live:
        v.retired_at = now
    session.flush()
    return versions


def sync_registry(session: Session, registry: Registry | Iterable[Canary]) -> SyncResult:
    """Stores a new version for every new or changed canary; retires removed ones.

    Unchanged canaries write nothing. Caller commits.
    """
    canaries = (
        [c.canary for c in registry.canaries] if isinstance(registry, Registry) else list(registry)
    )
    sources = (
        {c.canary.id: c.file for c in registry.canaries} if isinstance(registry, Registry) else {}
    )
    all_versions = list(session.scalars(select(CanaryVersion)))
    by_id: dict[str, list[CanaryVersion]] = {}
    for v in all_versions:
        by_id.setdefault(v.canary_id, []).append(v)
    now = utcnow()
    created, retired, unchanged = [], [], 0
    wanted = set()
    for canary in canaries:
        wanted.add(canary.id)
        digest = content_hash(canary)
        versions = by_id.get(canary.id, [])
        live = [v for v in versions if v.retired_at is None]
        if live and live[0].content_hash == digest:
            unchanged += 1
            continue
        for v in live:
            v.retired_at = now
        same = next((v for v in versions if v.content_hash == digest), None)
        if same is not None:  # reverted to an earlier version: revive it
            same.retired_at = None
        else:
            salt = secrets.token_hex(32)
            canonical = canonical_content(canary)
            session.add(
                CanaryVersion(
                    canary_id=canary.id,
                    version=max((v.version for v in versions), default=0) + 1,
                    kind=canary.kind,
                    content=canary.model_dump(mode="json"),
                    content_hash=digest,
                    salt=salt,
                    commitment=commitment(salt, canonical),
                    source_file=sources.get(canary.id),
                    created_at=now,
                )
            )
        created.append(canary.id)
    for cid, versions in by_id.items():
        if cid not in wanted:
            for v in versions:
                if v.retired_at is None:
                    v.retired_at = now
                    retired.append(cid)
    session.flush()
    return SyncResult(created, retired, unchanged)


def commit_registry(session: Session) -> RegistryCommit:
    """Stores the Merkle root over the live versions' commitments (leaf order: canary id)."""
    live = live_versions(session)
    root = merkle_root([v.commitment for v in live])
    latest = session.scalars(
        select(RegistryCommit).order_by(RegistryCommit.id.desc()).limit(1)
    ).first()
    if latest is not None and latest.root == root:
        return latest
    rc = RegistryCommit(root=root, leaves=[v.id for v in live], created_at=utcnow())
    session.add(rc)
    session.flush()
    return rc


REGISTRY_FORMAT = "canary-auditor-registry/1"


def attest_commit(
    rc: RegistryCommit,
    key: Ed25519PrivateKey | None,
    tsa_url: str | None = None,
    tsa_roots: list[x509.Certificate] | None = None,
    timeout: float = 30.0,
    watermark_key_ids: Sequence[str] = (),
) -> dict[str, Any] | None:
    """Publishes ``rc``: a statement of its root, size, time and the signing key's
    fingerprint (so a bundle signed later by another key shows), and the public ids of the
    owner's watermark keys when there are any (so the keys are dated with the root),
    signed with that key and, when a timestamp authority is configured, timestamped with
    RFC 3161 (so the root's date does not rest on our clock). The statement's exact bytes
    are its canonical JSON. An existing attestation is kept; caller commits."""
    if rc.attestation or (key is None and not tsa_url):
        return rc.attestation
    statement = {"format": REGISTRY_FORMAT, "root": rc.root, "size": len(rc.leaves),
                 "committed_at": rc.created_at.isoformat(),
                 "signer_fingerprint": fingerprint(key) if key is not None else None}
    if watermark_key_ids:
        statement["watermark_key_ids"] = sorted(watermark_key_ids)
    data = canonical_json(statement)
    att: dict[str, Any] = {"statement": statement}
    if key is not None:
        att["public_key"] = public_pem(key).decode("ascii")
        att["signature"] = sign(key, data).hex()
    if tsa_url:
        tsr, info, roots = request_timestamp(tsa_url, data, tsa_roots, timeout)
        att["timestamp"] = base64.b64encode(tsr).decode("ascii")
        att["timestamped_at"] = info.gen_time.isoformat()
        att["tsa_subject"] = info.tsa_subject
        att["tsa_ca"] = b"".join(r.public_bytes(serialization.Encoding.PEM)
                                 for r in roots).decode("ascii")
    rc.attestation = att
    return att


@dataclass(frozen=True)
class UnsealedCanary:
    """Everything a third party needs to check one canary against a committed root."""

    canary_id: str
    version: int
    canonical: str  # the canonical JSON text of the canary
    salt: str
    commitment: str
    index: int
    size: int
    proof: list[str]
    root: str

    def verify(self) -> bool:
        recomputed = commitment(self.salt, self.canonical.encode("utf-8"))
        return recomputed == self.commitment and verify_inclusion(
            self.commitment, self.index, self.size, self.proof, self.root
        )

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def unseal(session: Session, rc: RegistryCommit, canary_version_id: int) -> UnsealedCanary:
    """Opens one committed canary: its content, salt and inclusion proof against ``rc``."""
    ids: list[int] = list(rc.leaves)
    if canary_version_id not in ids:
        raise AuditorError(
            f"canary version {canary_version_id} is not in registry commit "
            f"{rc.root[:16]}; commit the registry after adding it"
        )
    versions = {
        v.id: v for v in session.scalars(select(CanaryVersion).where(CanaryVersion.id.in_(ids)))
    }
    commitments = [versions[i].commitment for i in ids]
    index = ids.index(canary_version_id)
    v = versions[canary_version_id]
    return UnsealedCanary(
        canary_id=v.canary_id,
        version=v.version,
        canonical=canonical_json(v.content).decode("utf-8"),
        salt=v.salt,
        commitment=v.commitment,
        index=index,
        size=len(ids),
        proof=inclusion_proof(commitments, index),
        root=rc.root,
    )


def attest_configured(rc: RegistryCommit, settings: Settings) -> dict[str, Any] | None:
    """:func:`attest_commit` with the configured signing key (when it exists), timestamp
    authority (when one is set) and watermark key ids."""
    from auditor.signing import load_private_key
    from auditor.timestamp import read_roots

    key_path = settings.path(settings.signing.key_path)
    key = load_private_key(key_path) if key_path.exists() else None
    ca = settings.path(settings.timestamp.ca_file) if settings.timestamp.ca_file else None
    roots = read_roots(ca)
    return attest_commit(rc, key, settings.timestamp.url, roots,
                         settings.timestamp.timeout_seconds,
                         [k.id for k in settings.watermark.keys])
