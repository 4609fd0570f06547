"""The report's method section says what the continuous monitor is and when it alarms."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select

from auditor.bundle import write_bundle
from auditor.report import ReportRequest
from auditor.signing import load_private_key
from auditor.stats import monitor
from auditor.store.models import MonitorState, Verdict
from tests.report.world import build_world


def _method_text(tmp_path: Path, half_n: float | None = None) -> str:
    """The method section of the suspect's report; with ``half_n``, the pair's monitor
    was started with that horizon."""
    world = build_world(tmp_path, n_canaries=4)
    try:
        with world.store.session() as s:
            if half_n is not None:
                v = s.scalars(select(Verdict)).first()
                assert v is not None
                s.add(MonitorState(suspect_id=v.suspect_id, protected_id=v.protected_id,
                                   state=monitor.new_state(half_n=half_n), e_value=0.0))
                s.flush()
            result = write_bundle(s, world.settings, ReportRequest("sus"),
                                  load_private_key(world.settings.signing.key_path),
                                  out_dir=tmp_path / "out", formats=("html",))
    finally:
        world.store.close()
    html = (result.path / "report.html").read_text(encoding="utf-8")
    method = html[html.index("Methodology"):]
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", method))


def test_the_method_section_explains_the_monitor_and_its_alarm(tmp_path: Path) -> None:
    text = _method_text(tmp_path)
    assert "Continuous monitoring" in text
    # no monitor kept for the pair: the configured horizon (the default, 96 answers)
    assert "first 96 answers and nearly all of it to the first 192" in text
    assert "= 20" in text  # the alarm threshold 1/alpha at alpha = 0.05
    assert "never decreases" in text and "not evidence of independence" in text
    assert "score stood at 180" in text  # this suspect's stored e-value


def test_the_method_section_states_the_horizon_of_the_pairs_own_monitor(tmp_path: Path) -> None:
    """A monitor keeps the parameters it started with; the report says those, not today's
    defaults."""
    text = _method_text(tmp_path, half_n=150)
    assert "first 150 answers and nearly all of it to the first 300" in text
