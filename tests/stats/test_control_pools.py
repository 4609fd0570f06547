"""The larger control pools of the benchmark (benchmarks/cases, issue 14 item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.bench_data import CasesFile, bench_available, bench_dir, load_cases

CASES = Path(__file__).resolve().parents[2] / "benchmarks" / "cases"


def _pools() -> dict[int, CasesFile]:
    return {k: load_cases(CASES / f"pool{k}.json") for k in (15, 25)}


def test_pools_are_nested_and_never_use_a_protected_model_or_a_student_as_a_control() -> None:
    pools = _pools()
    p15, p25 = pools[15], pools[25]
    assert len(set(p15.controls)) == 15 and len(set(p25.controls)) == 25
    assert set(p15.controls) < set(p25.controls)
    for cf in (p15, p25):
        protected = set(cf.protected_models())
        students = {c.suspect for c in cf.cases if c.label == 1}
        assert not (set(cf.controls) & (protected | students))
        # a model is either a labelled case's suspect or a control, never both
        assert not ({c.suspect for c in cf.cases} & set(cf.controls))
        assert len(students) == 6


@pytest.mark.skipif(not bench_available(), reason="provenance-bench data not found")
def test_every_model_of_the_pools_has_outputs_and_the_dev_controls_are_inside() -> None:
    dev = load_cases()
    for cf in _pools().values():
        assert set(dev.controls) <= set(cf.controls)
        for m in cf.models():
            assert (bench_dir() / "outputs" / f"{m}.jsonl.gz").is_file(), m
