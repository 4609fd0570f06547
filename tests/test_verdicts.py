"""The verdict table of `auditor analyze` in an ordinary 80-column terminal."""

from __future__ import annotations

from rich.console import Console

from auditor.store.models import Verdict
from auditor.verdicts import verdict_table


def _verdict(suspect: int, p: float, segment: str | None, significant: bool) -> Verdict:
    return Verdict(suspect_id=suspect, protected_id=1, segment=segment, p_value=p,
                   q_value=None if segment else p, e_value=None if segment else 2100.0,
                   effect=5.9, effect_low=5.0, effect_high=7.1, n_canaries=58,
                   significant=significant)


def test_at_80_columns_every_number_and_name_is_shown_whole() -> None:
    """A long segment label once squeezed the p column to "7…" at 80 columns."""
    names = {1: "protected", 2: "student", 3: "indie-suspect"}
    verdicts = [_verdict(2, 7.6e-18, None, True),
                _verdict(2, 3.8e-05, "recent: half-life 30 d", True),
                _verdict(3, 0.86, None, False),
                _verdict(3, 0.95, "recent: half-life 30 d", False)]
    console = Console(width=80, record=True, color_system=None)
    console.print(verdict_table(verdicts, names, 0.05))
    out = console.export_text()
    for shown in ("7.6e-18", "3.8e-05", "2.1e+03", "5.9 (5.0..7.1)", "indie-suspect",
                  "DERIVED", "insufficient"):
        assert shown in out, shown
    assert "…" not in out.split("p: model-level")[0]
