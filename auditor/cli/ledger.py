"""``auditor import`` and ``auditor verify --ledger``: evidence in, evidence checked."""

from __future__ import annotations

from pathlib import Path

import typer
from sqlalchemy import select

from auditor.cli._common import console, open_session, settings
from auditor.errors import AuditorError, Problem
from auditor.importer import import_jsonl
from auditor.store import ledger, sync_endpoints
from auditor.store.models import Endpoint


def import_(
    file: Path = typer.Argument(..., help="JSONL file: one response per line."),
    endpoint: str = typer.Option(..., "--endpoint", "-e", help="Endpoint the responses came from."),
) -> None:
    """Load responses collected elsewhere, validated and chained like probed ones."""
    s = settings()
    with open_session() as session:
        sync_endpoints(session, s)
        ep = session.scalars(select(Endpoint).where(Endpoint.name == endpoint)).first()
        if ep is None:
            s.endpoint(endpoint)  # raises with the known names
        assert ep is not None
        result = import_jsonl(session, ep, file)
    if result.cycle_id is None:
        console.print(f"nothing imported: all {result.skipped} response(s) already present")
        return
    console.print(f"imported {result.imported} response(s) into cycle {result.cycle_id}; "
                  f"{result.skipped} already present")


def verify(
    bundle: Path = typer.Argument(None, help="A report bundle directory or zip to check."),
    check_ledger: bool = typer.Option(False, "--ledger", help="Recompute the response hash chain."),
    tsa_ca: Path = typer.Option(None, "--tsa-ca", help="The timestamp authority's root "
                                "certificate (PEM), obtained independently of the bundle."),
    key: list[str] = typer.Option(None, "--key", help="Fingerprint of the auditor's signing "
                                  "key, obtained out of band; the bundle must be signed by it "
                                  "(repeatable)."),
    trusted_keys: Path = typer.Option(None, "--trusted-keys", help="File of trusted key "
                                      "fingerprints, one per line (# comments)."),
) -> None:
    """Check the ledger (--ledger) or a report bundle; names the first thing that fails."""
    if bundle is not None:
        from auditor.bundle import verify_bundle  # the report stage
        from auditor.signing import read_fingerprints
        from auditor.timestamp import read_roots

        keys = [*read_fingerprints(key or [], "--key"),
                *(read_fingerprints(_lines(trusted_keys), str(trusted_keys))
                  if trusted_keys else [])]
        console.print(verify_bundle(bundle, read_roots(tsa_ca), keys).summary())
        return
    if not check_ledger:
        raise AuditorError("nothing to verify", [Problem(
            "neither a bundle nor --ledger given",
            fix="`auditor verify BUNDLE` checks a report bundle, `auditor verify --ledger` "
            "the stored hash chain")])
    with open_session() as session:
        result = ledger.verify(session)
    if not result.ok:
        console.print(f"[bold red]FAILED[/]: {result.broken}")
        raise typer.Exit(1)
    console.print(f"[green]ledger ok[/]: {result.rows} responses, head {result.head}")


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditorError(f"trusted keys file {path}: {exc}",
                           [Problem("unreadable", str(path),
                                    fix="give a text file of key fingerprints, one per line")]
                           ) from None


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command("verify")(verify)
