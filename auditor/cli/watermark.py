"""``auditor watermark``: make watermark keys, show their public ids, disclose one."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from auditor.cli._common import console_err, settings
from auditor.errors import AuditorError, Problem
from auditor.watermark.keys import generate_key, key_id, load_key, write_key_file

app = typer.Typer(help="The owner's watermark: keys and their public ids.",
                  no_args_is_help=True)

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@app.command()
def keygen(
    out: Path = typer.Option(None, "--out", "-o", help="Write the key to this file (mode 0600).",
                             show_default=False),
    env: str = typer.Option("AUDITOR_WATERMARK_KEY", "--env",
                            help="Without --out: the variable named in the printed export line."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing key file."),
) -> None:
    """Make a new random watermark key. With --out it goes to a private file; without, an
    `export VAR=...` line is printed on stdout (for `eval` or a secret store). The key id,
    which may be published, is printed on stderr."""
    key = generate_key()
    if out is not None:
        write_key_file(out, key, force=force)
        console_err.print(f"wrote watermark key {key_id(key)} to {out} (mode 0600)",
                          highlight=False)
        return
    if not _ENV_NAME.match(env):
        raise AuditorError(f"--env {env!r} is not a variable name", [Problem(
            "letters, digits and underscores, not starting with a digit",
            fix="for example --env AUDITOR_WATERMARK_KEY")])
    typer.echo(f"export {env}={key.hex()}")
    console_err.print(f"watermark key {key_id(key)} (keep the line above secret)",
                      highlight=False)


@app.command("id")
def id_(
    env: str = typer.Option(None, "--env", help="Read the key from this variable.",
                            show_default=False),
    file: Path = typer.Option(None, "--file", help="Read the key from this file.",
                              show_default=False),
) -> None:
    """Print a key's public id. Without --env or --file, check every key of the config's
    [[watermark.keys]]: each one that can be read must have the id the config states."""
    if env is not None or file is not None:
        if env is not None and file is not None:
            raise AuditorError("give --env or --file, not both")
        typer.echo(key_id(load_key(env=env, file=file)))
        return
    s = settings()
    if not s.watermark.keys:
        raise AuditorError("no watermark keys configured", [Problem(
            "[[watermark.keys]] is empty", file=s.source,
            fix="pass --env or --file, or add the keys (see auditor.example.toml)")])
    wrong: list[str] = []
    for k in s.watermark.keys:
        source = f"${k.env}" if k.env else str(s.path(k.file or ""))
        try:
            found = key_id(load_key(env=k.env, file=s.path(k.file) if k.file else None))
        except (AuditorError, OSError) as exc:
            check = f"not readable here: {str(exc).splitlines()[0]}"
        else:
            check = "ok" if found == k.id else f"WRONG: the key there has id {found}"
            if found != k.id:
                wrong.append(k.id)
        until = k.valid_until.isoformat() if k.valid_until else "open"
        typer.echo(f"{k.id}  {source}  {k.valid_from.isoformat()} .. {until}  {check}")
    if wrong:
        raise AuditorError(f"the key behind {', '.join(wrong)} has another id", [Problem(
            "the configured source holds a different key", file=s.source,
            fix="point env/file at the right key, or correct the id")])


@app.command()
def disclose(
    key_id_: str = typer.Argument(..., metavar="KEY_ID", help="The configured key's public id."),
    out: Path = typer.Option(..., "--out", "-o", help="A new folder for the package."),
    to: str = typer.Option(..., "--to", help="Who receives it (the court's expert)."),
) -> None:
    """Disclose one watermark key to a court's expert: a package of its own (the key in a
    0600 file, the scheme, the tokenizer, a stdlib script that recomputes green lists and
    the key id, SHA256SUMS signed with the signing key). Never part of a report bundle."""
    from auditor.watermark.disclose import write_disclosure

    path = write_disclosure(settings(), key_id_, out, to)
    console_err.print(f"wrote the disclosure of watermark key {key_id_} for {to} to {path}; "
                      "it holds the secret key: hand it over as the court orders",
                      highlight=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="watermark")
