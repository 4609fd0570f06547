"""The ``auditor`` command line: a thin shell over the stages.

Each command group lives in its own module here and is registered below.
"""

from __future__ import annotations

__all__ = ["app", "main"]

import sys

import typer

from auditor.cli import analyze, canaries, db, demo, ledger, probe, report
from auditor.cli import daemon as daemon_cli
from auditor.cli._common import console_err, state
from auditor.errors import AuditorError

app = typer.Typer(
    name="auditor",
    help="Canary auditor: probes model endpoints with secret canaries, keeps the evidence in a "
    "hash-chained store, and tests suspects for distillation of a protected model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    config: str = typer.Option(
        None, "--config", "-c", help="Config file (default: $AUDITOR_CONFIG or ./auditor.toml).",
        show_default=False,
    ),
) -> None:
    state.config_path = config


app.add_typer(db.app, name="db")
app.add_typer(canaries.app, name="canaries")
ledger.register(app)
analyze.register(app)
probe.register(app)
report.register(app)
demo.register(app)
daemon_cli.register(app)


def main() -> None:
    try:
        app(standalone_mode=False)
    except AuditorError as exc:
        console_err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        sys.exit(2)
    except typer.Abort:
        console_err.print("aborted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
