"""``auditor demo``: the whole story on one machine, offline, in under two minutes."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from auditor.cli._common import console


def demo(
    workdir: Path = typer.Option(Path("var/demo"), help="Where the demo keeps its database, "
                                 "config, canaries and reports (reused on the next run)."),
    cycles: int = typer.Option(3, min=1, help="Probe cycles per endpoint before the analysis."),
    interval: float = typer.Option(4.0, min=1.0, help="Seconds between an endpoint's cycles."),
) -> None:
    """Run the offline demo: a protected model, controls, a student distilled through the
    protected API and an independent suspect, all local; the daemon probes them, the
    analysis flags the student, and a signed report bundle is written and verified."""
    from auditor.demo.run import run_demo

    result = run_demo(workdir, cycles=cycles, interval=interval,
                      say=lambda m: console.print(f"[dim]·[/] {m}"))
    console.print(result.table)
    channels = Table("suspect", "free text p", "watermark p", "green tokens (scored, rate)",
                     title="Two of the channels behind each verdict")
    for v in result.verdicts:
        ch = v["channels"] if isinstance(v["channels"], dict) else {}
        ft, wm = ch.get("free_text", {}), ch.get("watermark", {})
        green = (f"{wm['green']} of {wm['scored']} = {wm['green_rate']:.2f} "
                 f"(independent: {wm['gamma']:g})" if wm.get("scored") else "-")
        channels.add_row(str(v["suspect"]), _p(ft.get("p_value")), _p(wm.get("p_value")), green)
    console.print(channels)
    if result.bad_news:
        t = Table("endpoint", "what went wrong (attempts)", title="Bad news, handled")
        for name, counts in sorted(result.bad_news.items()):
            t.add_row(name, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        console.print(t)
        console.print("Failed attempts are recorded with their class; the cycles went on and "
                      "the next cycle asks again.")
    for alert in result.alerts:
        console.print(f"[bold red]alert[/] {alert}")
    flagged = [v["suspect"] for v in result.verdicts if v["significant"]]
    console.print(f"flagged: {', '.join(flagged) or 'nobody'}")
    if result.bundle is not None:
        console.print(f"report bundle: {result.bundle}")
        console.print(f"zip:           {result.zip_path}")
        console.print(f"verify:        auditor verify {result.bundle}")
        console.print(f"               {result.verified}")
    console.print(f"demo finished in {result.seconds:.0f} s")


def _p(x: object) -> str:
    return f"{x:.2g}" if isinstance(x, float) else "-"


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
