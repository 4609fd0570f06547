"""The report names every control the audit found significantly close to the protected
model, with its own p-value, and says whether it stayed in the null."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from auditor.bundle import write_bundle
from auditor.report import ReportRequest
from auditor.signing import load_private_key
from auditor.store.models import Verdict
from tests.report.world import CONTROLS, build_world


@pytest.mark.parametrize("excluded", [False, True])
def test_the_report_names_a_flagged_control_with_its_pvalue(tmp_path: Path,
                                                            excluded: bool) -> None:
    world = build_world(tmp_path, n_canaries=4)
    try:
        with world.store.session() as s:
            for v in s.scalars(select(Verdict)):
                v.params = {**v.params, "control_audit_alpha": 0.01,
                            "exclude_flagged_controls": excluded,
                            "flagged_controls": {CONTROLS[1]: 0.0012},
                            "excluded_controls": {CONTROLS[1]: 0.0012} if excluded else {}}
            s.commit()
        with world.store.session() as s:
            result = write_bundle(s, world.settings, ReportRequest("sus"),
                                  load_private_key(world.settings.signing.key_path),
                                  out_dir=tmp_path / "out", formats=("html",))
        html = " ".join((result.path / "report.html").read_text(encoding="utf-8").split())
        assert "Controls that look derived" in html
        assert f"{CONTROLS[1]} (p&nbsp;=&nbsp;0.001" in html
        assert ("Left out of the null: " + CONTROLS[1]) in html if excluded else (
            "It was kept among the controls" in html)
        assert "tested exactly as the suspect is" in html
    finally:
        world.store.close()


def test_the_report_says_nothing_of_flagged_controls_when_there_are_none(
    tmp_path: Path,
) -> None:
    world = build_world(tmp_path, n_canaries=4)
    try:
        with world.store.session() as s:
            result = write_bundle(s, world.settings, ReportRequest("sus"),
                                  load_private_key(world.settings.signing.key_path),
                                  out_dir=tmp_path / "out", formats=("html",))
        html = (result.path / "report.html").read_text(encoding="utf-8")
        assert "Controls that look derived" not in html
    finally:
        world.store.close()
