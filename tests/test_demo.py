"""The demo's pipeline, smaller: a real distillation through the protected API, the daemon
as a subprocess against loopback endpoints, analysis and a verified report."""

from __future__ import annotations

from pathlib import Path

from auditor.bundle import verify_bundle
from auditor.demo.run import run_demo


def test_demo_flags_the_distilled_student_and_not_the_independent_suspect(tmp_path: Path) -> None:
    messages: list[str] = []
    result = run_demo(tmp_path / "demo", cycles=1, interval=2.0, timeout=120,
                      say=messages.append)
    by_suspect = {v["suspect"]: v for v in result.verdicts}
    assert by_suspect["student"]["significant"]
    assert by_suspect["student"]["p_value"] < 0.01
    assert not by_suspect["indie-suspect"]["significant"]
    assert result.harvested > 100 and min(result.cycles.values()) >= 1
    assert result.bundle is not None and verify_bundle(result.bundle).responses > 0
    # the misbehaving endpoint was handled, and the summary says so
    assert any(k.startswith("failed:") or k == "retried" for k in result.bad_news["control-e"])
    assert any("misbehaves" in m for m in messages)
