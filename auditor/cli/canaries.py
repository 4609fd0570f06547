"""``auditor canaries``: validate, list, sync, commit and unseal the registry."""

from __future__ import annotations

import json

import typer
from rich.table import Table
from sqlalchemy import select

from auditor.cli._common import console, open_session, settings
from auditor.errors import AuditorError
from auditor.registry import (
    attest_configured,
    commit_registry,
    live_versions,
    load_registry,
    retire,
    sync_registry,
    unseal,
)
from auditor.store.models import CanaryVersion, RegistryCommit

app = typer.Typer(help="The canary registry: YAML files under canaries/.", no_args_is_help=True)


@app.command()
def validate() -> None:
    """Check every canary file and report every problem with file:line. Writes nothing."""
    s = settings()
    reg = load_registry(s.canaries_path)
    kinds: dict[str, int] = {}
    for c in reg.canaries:
        kinds[c.canary.kind] = kinds.get(c.canary.kind, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    console.print(f"[green]ok[/]: {len(reg.canaries)} canaries in {s.canaries_path} ({summary})")


@app.command("list")
def list_(
    show_text: bool = typer.Option(False, "--show-text", help="Also print each prompt (secret!)."),
) -> None:
    """List canaries: id, kind, samples, tags and stored version. Never the text by default."""
    s = settings()
    reg = load_registry(s.canaries_path)
    with open_session() as session:
        latest = {v.canary_id: v for v in live_versions(session)}
    table = Table("id", "kind", "samples", "tags", "version", "file")
    if show_text:
        table.add_column("prompt")
    for item in reg.canaries:
        c = item.canary
        v = latest.get(c.id)
        row = [c.id, c.kind, str(c.samples), ",".join(c.tags),
               str(v.version) if v else "unsynced", f"{item.file}:{item.line}"]
        if show_text:
            row.append(json.dumps(c.chat(), ensure_ascii=False))
        table.add_row(*row)
    console.print(table)


@app.command()
def sync() -> None:
    """Store a new version of every new or changed canary; retire removed ones."""
    s = settings()
    reg = load_registry(s.canaries_path)
    with open_session() as session:
        result = sync_registry(session, reg)
    console.print(f"{len(result.created)} new version(s), {len(result.retired)} retired, "
                  f"{result.unchanged} unchanged")


@app.command("retire")
def retire_(
    canary_id: str = typer.Argument(..., help="The canary to stop using."),
) -> None:
    """Retire a canary's stored version and abandon its unfinished attempts.

    Cycles planned from now on leave it out. Remove it from the canary files too: while it
    is still there, the next sync stores it again.
    """
    from auditor.store.attempts import abandon

    with open_session() as session:
        versions = retire(session, canary_id)
        n = abandon(session, canary_version_ids=[v.id for v in versions])
    console.print(f"retired {canary_id} (versions {', '.join(str(v.version) for v in versions)})"
                  f"; {n} unfinished attempt(s) abandoned")


@app.command()
def commit() -> None:
    """Sync, then store and print the Merkle root over salted canary commitments."""
    s = settings()
    reg = load_registry(s.canaries_path)
    with open_session() as session:
        sync_registry(session, reg)
        rc = commit_registry(session)
        att = attest_configured(rc, s) or {}
        console.print(f"registry root {rc.root} ({len(rc.leaves)} canaries, "
                      f"commit {rc.id}, {rc.created_at.isoformat()})")
        fp = att.get("statement", {}).get("signer_fingerprint")
        console.print(f"signed by key fingerprint {fp}" if fp else
                      "not signed (no signing key yet: `auditor keys init`, then commit again)")
        if att.get("timestamped_at"):
            console.print(f"timestamped {att['timestamped_at']} by {att['tsa_subject']}")
        wm_ids = att.get("statement", {}).get("watermark_key_ids")
        if wm_ids:
            console.print(f"with watermark key ids {', '.join(wm_ids)}")


@app.command("unseal")
def unseal_(
    canary_id: str = typer.Argument(..., help="The canary to open."),
    root: str = typer.Option(None, help="Registry root to prove against (default: newest)."),
) -> None:
    """Print one canary's content, salt and Merkle inclusion proof as JSON."""
    with open_session() as session:
        q = select(RegistryCommit).order_by(RegistryCommit.id.desc())
        if root:
            q = select(RegistryCommit).where(RegistryCommit.root == root)
        rc = session.scalars(q.limit(1)).first()
        if rc is None:
            raise AuditorError("no registry commit found; run `auditor canaries commit`")
        ids = list(rc.leaves)
        v = session.scalars(select(CanaryVersion).where(
            CanaryVersion.canary_id == canary_id, CanaryVersion.id.in_(ids))).first()
        if v is None:
            raise AuditorError(f"canary {canary_id!r} is not in registry root {rc.root[:16]}")
        console.print_json(json.dumps(unseal(session, rc, v.id).as_dict()))
