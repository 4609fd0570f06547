"""``auditor report`` and ``auditor keys init``: the evidentiary bundle and its signing key."""

from __future__ import annotations

__all__ = ["keys_app", "parse_when", "register", "report"]

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import typer

from auditor.cli._common import console, open_session, settings
from auditor.errors import AuditorError, Problem

keys_app = typer.Typer(help="The Ed25519 key that signs report bundles.", no_args_is_help=True)


def parse_when(value: str | None, option: str, end_of_day: bool = False) -> datetime | None:
    """``2026-11-01`` (a whole day, UTC) or an ISO time with or without zone (UTC)."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = datetime.fromisoformat(value).date()
            t = datetime.combine(day, time(0, 0), tzinfo=UTC)
            return t + timedelta(days=1, microseconds=-1) if end_of_day else t
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise AuditorError(f"{option} {value!r} is not a date",
                           [Problem("unreadable date", fix="write 2026-11-01 or "
                                    "2026-11-01T12:00:00Z")]) from None
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (value or "").split(",") if x.strip())


def report(
    suspect: str = typer.Option(..., "--suspect", help="Suspect endpoint name."),
    protected: str = typer.Option(None, "--protected", help="Protected endpoint name "
                                  "(default: the newest verdict's)."),
    since: str = typer.Option(None, "--since", help="Start of the window (date or ISO time, UTC)."),
    until: str = typer.Option(None, "--until", help="End of the window (date or ISO time, UTC)."),
    formats: str = typer.Option("html,pdf,json", "--format", help="Renderings: html,pdf,json."),
    out: Annotated[Path | None, typer.Option(
        "--out", help="Directory for the bundle (default: reports_dir).")] = None,
    unseal: str = typer.Option(None, "--unseal", help="Canary ids to open, comma-separated: "
                               "their prompts, salts and Merkle proofs go in the bundle."),
    tsa_ca: Annotated[Path | None, typer.Option(
        "--tsa-ca", help="Root certificate(s) of the timestamp authority, PEM (needed unless "
        "the authority sends its root).")] = None,
    top: int = typer.Option(5, "--top", min=1, max=50, help="Canaries shown side by side."),
) -> None:
    """Write a signed evidentiary bundle (HTML, PDF, evidence, manifest) and a zip of it."""
    from auditor.bundle import write_bundle
    from auditor.report import ReportRequest
    from auditor.signing import load_private_key
    from auditor.timestamp import read_roots

    s = settings()
    key = load_private_key(s.path(s.signing.key_path))
    ca = tsa_ca or (s.path(s.timestamp.ca_file) if s.timestamp.ca_file else None)
    roots = read_roots(ca)
    req = ReportRequest(suspect=suspect, protected=protected,
                        since=parse_when(since, "--since"),
                        until=parse_when(until, "--until", end_of_day=True),
                        unseal=_split(unseal), top=top)
    with open_session() as session:
        result = write_bundle(session, s, req, key, out_dir=out,
                              formats=_split(formats) or ("html", "pdf", "json"),
                              tsa_url=s.timestamp.url, tsa_roots=roots)
    console.print(f"bundle   {result.path}")
    console.print(f"zip      {result.zip_path}")
    console.print(f"manifest sha256 {result.manifest_sha256}")
    console.print(f"signed by key fingerprint {result.signer_fingerprint}")
    if result.timestamp:
        console.print(f"timestamp {result.timestamp.gen_time.isoformat()} "
                      f"({result.timestamp.tsa_subject})")
    console.print(f"{result.responses} responses in evidence.jsonl")


@keys_app.command("init")
def keys_init(
    force: bool = typer.Option(False, "--force", help="Replace an existing key (bundles signed "
                               "with the old one keep verifying with their own signer.pub)."),
) -> None:
    """Create the Ed25519 signing key at signing.key_path (mode 0600); print its fingerprint."""
    from auditor.signing import fingerprint, init_key

    s = settings()
    path = s.path(s.signing.key_path)
    key = init_key(path, force=force)
    console.print(f"signing key {path} (mode 0600)")
    console.print(f"fingerprint {fingerprint(key)}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.add_typer(keys_app, name="keys")
