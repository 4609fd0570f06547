"""``auditor demo``: the whole story on one machine, offline."""

from __future__ import annotations

from pathlib import Path

import typer

from auditor.cli._common import console
from auditor.registry import commit_registry, load_registry, sync_registry
from auditor.store import ledger, open_store

REPO = Path(__file__).resolve().parents[2]


def demo(
    workdir: Path = typer.Option(Path("var/demo"), help="Where the demo keeps its database."),
) -> None:
    """Run the offline demo on a SQLite file (no API key, no network)."""
    workdir.mkdir(parents=True, exist_ok=True)
    st = open_store(f"sqlite:///{(workdir / 'auditor.db').resolve()}")
    try:
        with st.session() as s:
            reg = load_registry(REPO / "canaries")
            sync_registry(s, reg)
            rc = commit_registry(s)
            check = ledger.verify(s)
        console.print(f"registry: {len(reg.canaries)} canaries, root {rc.root}")
        console.print(f"ledger: {check.rows} responses, {'ok' if check.ok else check.broken}")
    finally:
        st.close()


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
