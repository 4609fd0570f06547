"""The report's method section says what the continuous monitor is and when it alarms."""

from __future__ import annotations

import re
from pathlib import Path

from auditor.bundle import write_bundle
from auditor.report import ReportRequest
from auditor.signing import load_private_key
from tests.report.world import build_world


def test_the_method_section_explains_the_monitor_and_its_alarm(tmp_path: Path) -> None:
    world = build_world(tmp_path, n_canaries=4)
    try:
        with world.store.session() as s:
            result = write_bundle(s, world.settings, ReportRequest("sus"),
                                  load_private_key(world.settings.signing.key_path),
                                  out_dir=tmp_path / "out", formats=("html",))
    finally:
        world.store.close()
    html = (result.path / "report.html").read_text(encoding="utf-8")
    method = html[html.index("Methodology"):]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", method))
    assert "Continuous monitoring" in text
    assert "= 20" in text  # the alarm threshold 1/alpha at alpha = 0.05
    assert "never decreases" in text and "not evidence of independence" in text
    assert "score stood at 180" in text  # this suspect's stored e-value
