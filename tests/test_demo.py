"""The demo's pipeline, smaller: a real distillation through the protected API, the daemon
as a subprocess against loopback endpoints, analysis and a verified report."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from auditor.alerts import new_alerts
from auditor.bundle import verify_bundle
from auditor.demo.run import alert_lines, run_demo
from auditor.store import Store, sync_endpoints
from auditor.store.models import MonitorState
from tests.factories import settings_with


def test_demo_flags_the_distilled_student_and_not_the_independent_suspect(tmp_path: Path) -> None:
    messages: list[str] = []
    result = run_demo(tmp_path / "demo", cycles=1, interval=2.0, timeout=120,
                      say=messages.append)
    by_suspect = {v["suspect"]: v for v in result.verdicts}
    assert by_suspect["student"]["significant"]
    assert by_suspect["student"]["p_value"] < 0.01
    assert not by_suspect["indie-suspect"]["significant"]
    # the protected model watermarked what it served: the student inherited the bias; the
    # independent suspect shows none
    wm = {s: v["channels"]["watermark"] for s, v in by_suspect.items()}
    assert wm["student"]["p_value"] < 1e-4 and wm["student"]["green_rate"] > 0.3
    assert wm["indie-suspect"]["p_value"] > 1e-4 and wm["student"]["filter"]
    assert any("watermarks what it serves" in m for m in messages)
    assert result.harvested > 100 and min(result.cycles.values()) >= 1
    assert result.bundle is not None and verify_bundle(result.bundle).responses > 0
    # the misbehaving endpoint was handled, and the summary says so
    assert any(k.startswith("failed:") or k == "retried" for k in result.bad_news["control-e"])
    assert any("misbehaves" in m for m in messages)


def test_the_alert_line_shows_the_e_value_now_and_names_the_protected_model_once(
        store: Store) -> None:
    settings = settings_with({"protected": "protected", "student": "suspect"})
    with store.session() as s:
        rows = sync_endpoints(s, settings)
        s.add(MonitorState(suspect_id=rows["student"].id, protected_id=rows["protected"].id,
                           state={}, e_value=25.0))
        s.flush()
        (alert,) = new_alerts(s, settings)  # the first run crosses 1/alpha = 20
    with store.session() as s:  # a second demo run on the same store: the e-value grew
        s.scalars(select(MonitorState)).one().e_value = 480.0
    (line,) = alert_lines(store)
    assert "480" in line and "25" not in line.split("raised")[0]
    assert "protected protected" not in line and "student" in line
