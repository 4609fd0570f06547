"""The report's note under the identity channel: the population p-value's floor in
words, and the old rank wording for verdicts stored before it."""

from __future__ import annotations

from auditor.report import _identity_floor, fmt_p
from auditor.stats.identity import POPULATION, lone_claimer_bound


def test_the_note_gives_the_population_floor_and_the_rank_p() -> None:
    ch = {"p_value": lone_claimer_bound(8, 0), "rank_p_value": 1 / 9, "control_rates": [0.0] * 8}
    note = _identity_floor(ch)
    assert note is not None
    assert f"gives p = {fmt_p(1 / 9)}" in note
    assert f"population of at least {POPULATION} independent models" in note
    assert f"Its smallest value with 8 controls, when the suspect alone claims, is " \
           f"{fmt_p(lone_claimer_bound(8, 0))}" in note


def test_a_verdict_from_before_keeps_the_rank_wording() -> None:
    note = _identity_floor({"p_value": 0.25, "control_rates": [0.0, 0.0, 0.0]})
    assert note is not None and "is 1/(3+1) = " in note
