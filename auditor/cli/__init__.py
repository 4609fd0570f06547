"""The ``auditor`` command line: a thin shell over the stages.

Each command group lives in its own module here and is registered below.
"""

from __future__ import annotations

__all__ = ["app", "main"]

import sys

import typer
from rich.markup import escape

from auditor.cli import (
    abandon,
    analyze,
    canaries,
    db,
    demo,
    ledger,
    probe,
    report,
    users,
    watermark,
    web,
)
from auditor.cli import daemon as daemon_cli
from auditor.cli._common import console, console_err, state
from auditor.errors import AuditorError

app = typer.Typer(
    name="auditor",
    help="Canary auditor: probes model endpoints with secret canaries, keeps the evidence in a "
    "hash-chained store, and tests suspects for distillation of a protected model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from auditor.version import software

        info = software()
        commit = info["git_commit"] or "unknown (not a git checkout)"
        dirty = " (uncommitted changes)" if info["git_dirty"] else ""
        console.print(f"canary-auditor {info['version']}, git commit {commit}{dirty}",
                      highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    config: str = typer.Option(
        None, "--config", "-c", help="Config file (default: $AUDITOR_CONFIG or ./auditor.toml).",
        show_default=False,
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and git commit, then exit."),
) -> None:
    state.config_path = config


app.add_typer(db.app, name="db")
app.add_typer(canaries.app, name="canaries")
app.add_typer(users.app, name="users")
ledger.register(app)
analyze.register(app)
probe.register(app)
report.register(app)
demo.register(app)
daemon_cli.register(app)
abandon.register(app)
watermark.register(app)
web.register(app)


def main() -> None:
    """Runs the CLI. Typer itself prints usage errors (usage and problem, exit 2) and turns
    ``typer.Exit(code)`` into the exit status; an AuditorError is printed without a
    traceback (exit 2)."""
    try:
        app()
    except AuditorError as exc:
        console_err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                          soft_wrap=True)
        sys.exit(2)
    except OSError as exc:  # a path given on the command line or in the config
        where = f" {exc.filename}" if exc.filename else ""
        console_err.print(f"[bold red]error:[/] cannot use{escape(where)}: "
                          f"{escape(exc.strerror or str(exc))} (fix: check the path and "
                          "its permissions)", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as exc:  # a bug of ours: one line on screen, the traceback in a file
        import tempfile
        import traceback

        with tempfile.NamedTemporaryFile("w", prefix="auditor-crash-", suffix=".txt",
                                         delete=False) as fh:
            traceback.print_exc(file=fh)
        console_err.print(f"[bold red]internal error:[/] {escape(type(exc).__name__)}: "
                          f"{escape(str(exc))}\nThis is a bug in the auditor, not in your "
                          f"input; please report it with the traceback in {fh.name}",
                          highlight=False)
        sys.exit(70)
