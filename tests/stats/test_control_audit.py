"""The control audit (issue 14, item 2): every control scored as a suspect against the
others; controls significant at a stringent level are reported and may be left out of
the null (``provenance_test(screen_alpha=...)``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from auditor.stats.provenance import audit_controls, max_excluded, provenance_test
from auditor.stats.similarity import SimilarityTensor
from tests.stats.conftest import simulated_tensor

CONTROLS = [f"C{i}" for i in range(8)]


def _with_derived_control(
    rng: np.random.Generator, n_controls: int, n_canaries: int, derived: float
) -> SimilarityTensor:
    """A world in which control C0 is derived from P (``derived`` as in
    ``simulated_tensor``) and the suspect S is one more independent model."""
    t = simulated_tensor(rng, n_controls, n_canaries, derived=derived)
    names = list(t.models)
    names[1], names[2] = "C0", "S"  # the derived model becomes control C0, C0 the suspect
    return replace(t, models=tuple(names))


def _tail_ok(ps: np.ndarray) -> bool:
    return all(
        np.mean(ps <= u) <= u + 2.5 * np.sqrt(u * (1 - u) / ps.size) for u in (0.01, 0.05, 0.1)
    )


def test_independent_controls_audit_pvalues_keep_their_level() -> None:
    rng = np.random.default_rng(41)
    ps = []
    for _ in range(60):
        audit, _ = audit_controls(simulated_tensor(rng, 8, 40), "P", CONTROLS, screen_alpha=0.0)
        ps += list(audit.values())
    assert len(ps) == 60 * 8
    assert _tail_ok(np.array(ps))


def test_a_derived_control_is_found_and_excluded_with_its_pvalue() -> None:
    rng = np.random.default_rng(42)
    found = 0
    for _ in range(30):
        t = _with_derived_control(rng, 8, 150, derived=0.95)
        audit, excluded = audit_controls(t, "P", CONTROLS + ["S"], screen_alpha=0.01)
        assert set(audit) == set(CONTROLS + ["S"])
        assert all(excluded[c] == pytest.approx(audit[c]) for c in excluded if len(excluded) == 1)
        found += "C0" in excluded
        assert all(p <= 0.01 for p in excluded.values())
    assert found >= 22


def test_screened_pvalue_keeps_its_level_when_every_control_is_independent() -> None:
    rng = np.random.default_rng(43)
    ps = np.array([
        provenance_test(simulated_tensor(rng, 8, 40), "P", "S", CONTROLS, n_boot=0,
                        screen_alpha=0.01).p_value
        for _ in range(400)
    ])
    assert _tail_ok(ps)


def test_screened_pvalue_keeps_its_level_when_one_control_is_derived() -> None:
    rng = np.random.default_rng(44)
    ps = np.array([
        provenance_test(_with_derived_control(rng, 8, 40, 0.9), "P", "S", CONTROLS, n_boot=0,
                        screen_alpha=0.01).p_value
        for _ in range(400)
    ])
    assert _tail_ok(ps)


def test_excluding_a_derived_control_restores_power_it_took() -> None:
    """A student, and a control derived from P as strongly: with the control in the null
    the student hides behind it; screened out, the student is found."""
    rng = np.random.default_rng(45)
    with_it, screened = [], []
    for _ in range(40):
        t = _with_derived_control(rng, 8, 150, derived=0.95)
        # S (an independent model so far) becomes a student too, as close to P as C0 is
        s, c0 = t.index("S"), t.index("C0")
        sims = t.sims.copy()
        sims[:, :, s, :], sims[:, :, :, s] = sims[:, :, c0, :], sims[:, :, :, c0]
        t = replace(t, sims=sims)
        with_it.append(provenance_test(t, "P", "S", CONTROLS, n_boot=0).p_value)
        r = provenance_test(t, "P", "S", CONTROLS, n_boot=0, screen_alpha=0.01)
        screened.append(r.p_value)
        out = r.params["excluded_controls"]
        assert isinstance(out, dict)
        assert r.controls == tuple(c for c in CONTROLS if c not in out)
    assert np.mean(np.array(screened) <= 0.05) >= np.mean(np.array(with_it) <= 0.05) + 0.3


def test_the_audit_never_excludes_more_than_a_quarter_of_the_pool() -> None:
    assert [max_excluded(m) for m in (3, 4, 8, 9, 15, 25)] == [0, 1, 2, 2, 3, 6]
    rng = np.random.default_rng(46)
    t = simulated_tensor(rng, 8, 40, canary_noise=0.5)
    # every control but C7 an exact copy of P: each is "significant" against the others
    sims = t.sims.copy()
    p = t.index("P")
    for c in CONTROLS[:7]:
        i = t.index(c)
        sims[:, :, i, p] = sims[:, :, p, i] = 1.0 - 1e-3 * rng.random(sims.shape[1])
    audit, excluded = audit_controls(replace(t, sims=sims), "P", CONTROLS, screen_alpha=0.5)
    assert len(excluded) <= max_excluded(8)
    assert len(audit) == 8


def test_without_screening_the_result_lists_no_exclusion() -> None:
    rng = np.random.default_rng(47)
    r = provenance_test(simulated_tensor(rng, 8, 20), "P", "S", CONTROLS, n_boot=0)
    assert r.params["excluded_controls"] == {} and r.params["screen_alpha"] is None
    assert r.controls == tuple(CONTROLS)
