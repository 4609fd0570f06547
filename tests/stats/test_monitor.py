from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as scipy_stats

from auditor.stats import monitor
from auditor.stats.nullmodel import prediction_pvalue
from benchmarks.monitoring import make_world, run_world


def _run(ps: list[float], ns: list[int], alpha: float = 0.05) -> bool:
    s = monitor.new_state()
    for p, n in zip(ps, ns, strict=True):
        s = monitor.update(s, p, n)
        if monitor.alarm(s, alpha):  # looked at after every cycle
            return True
    return False


def test_false_alarms_stay_below_alpha_when_every_look_sees_the_same_suspect() -> None:
    """Model-level nulls give strongly dependent p-values across cycles: a suspect that
    happens to resemble P gets a small-ish p every time. The alarm rate must hold anyway."""
    rng = np.random.default_rng(0)
    alpha, streams, cycles = 0.05, 4000, 200
    alarms = 0
    for _ in range(streams):
        base = rng.uniform()  # the suspect's fixed position in the null population
        noise = rng.normal(0, 0.02, size=cycles)
        ps = np.clip(base + noise, 0, 1).tolist()
        # per-look marginal validity: each p is (nearly) uniform across streams
        alarms += _run(ps, [100 * (t + 1) for t in range(cycles)], alpha)
    assert alarms / streams <= alpha


def test_false_alarms_stay_below_alpha_with_independent_uniform_p_values() -> None:
    rng = np.random.default_rng(1)
    alarms = sum(_run(rng.uniform(size=100).tolist(), [2 ** t for t in range(100)])
                 for _ in range(2000))
    assert alarms / 2000 <= 0.05


def test_a_product_martingale_would_have_alarmed_on_the_dependent_null() -> None:
    """Why the monitor sums instead of multiplies: a persistent p of 0.1 compounds."""
    wealth = 1.0
    for _ in range(30):
        wealth *= 0.5 * 0.1 ** (0.5 - 1)  # the kappa = 0.5 calibrator at p = 0.1
    assert wealth >= 20
    assert not _run([0.1] * 30, [2 ** t for t in range(30)])


def test_a_strong_persistent_signal_raises_the_alarm() -> None:
    assert _run([1e-4] * 5, [100, 200, 400, 800, 1600])


def test_every_analysis_that_adds_evidence_is_a_look_weighted_by_what_it_added() -> None:
    s = monitor.new_state()
    for n in (100, 150, 150, 120, 200, 300):
        s = monitor.update(s, 0.0, n)
    assert [look["n"] for look in s["looks"]] == [100, 150, 200, 300]
    assert len(s["history"]) == 6
    # the weights telescope: re-analysing the same (or less) evidence adds nothing, and
    # the e-value is the information of the largest n times g(0), however looks fall
    assert monitor.e_value(s) == pytest.approx(monitor.information(300) * monitor.calibrate(0.0))
    once = monitor.update(monitor.new_state(), 0.0, 300)
    assert monitor.e_value(once) == pytest.approx(monitor.e_value(s))


def test_a_state_of_the_previous_monitor_restarts_and_keeps_its_history() -> None:
    old = {"version": 1, "growth": 2.0, "looks": [{"j": 1, "n": 8, "p_value": 0.5}],
           "e_value": 0.3, "history": [{"at": "2026-11-01T00:00:00+00:00", "n": 8,
                                        "p_value": 0.5, "e_value": 0.3, "look": True}]}
    s = monitor.update(old, 0.5, 16, at="2026-11-02T00:00:00+00:00")
    assert s["version"] == monitor.VERSION and s["restarted_from"]["e_value"] == 0.3
    assert [h["n"] for h in s["history"]] == [8, 16] and s["history"][0]["version"] == 1
    assert [look["n"] for look in s["looks"]] == [16]


def test_e_value_never_decreases_and_state_round_trips_through_json() -> None:
    s = monitor.new_state()
    values = []
    for p, n in ((0.01, 10), (0.9, 20), (0.5, 40)):
        s = json.loads(json.dumps(monitor.update(s, p, n, at="2026-11-01T00:00:00+00:00")))
        values.append(monitor.e_value(s))
    assert values == sorted(values) and values[0] > 0


def test_calibrator_integrates_to_at_most_one() -> None:
    # midpoint rule on a log grid: integral_0^1 f(p) dp
    edges = np.concatenate([[0.0], np.logspace(-300, 0, 200001)])
    mids = (edges[1:] + edges[:-1]) / 2
    widths = np.diff(edges)
    total = sum(monitor.calibrate(float(m)) * float(w) for m, w in zip(mids, widths, strict=True))
    assert total <= 1.0 + 1e-3


def _fixed_model_world(rng: np.random.Generator, cycles: int) -> list[float]:
    """p after each cycle of one world whose models are drawn once and kept: each model's
    closeness to P is a fixed draw, each new canary adds a difficulty shared by all models
    and per-model noise; p is the analysis' prediction p-value of the running means."""
    m = int(rng.integers(5, 9))
    mu = rng.normal(0.0, 1.0, m + 1)  # index 0: the suspect, one more independent model
    shared = rng.normal(0.0, 1.0, (2 * cycles, 1))
    per_canary = mu + shared + rng.normal(0.0, 3.0, (2 * cycles, m + 1))
    means = (np.cumsum(per_canary, axis=0) / np.arange(1, 2 * cycles + 1)[:, None])[1::2]
    c = means[:, 1:]
    t = (means[:, 0] - c.mean(axis=1)) / (c.std(axis=1, ddof=1) * np.sqrt(1 + 1 / m))
    ps = scipy_stats.t.sf(t, m - 1)
    assert ps[-1] == pytest.approx(prediction_pvalue(float(means[-1, 0]), c[-1])[0])
    return ps.tolist()


def test_false_alarms_stay_below_alpha_when_the_suspect_is_one_fixed_independent_model() -> None:
    """The realistic null: in each world the suspect is one independent model kept for
    every cycle among fixed controls, so its p-values are dependent across cycles."""
    rng = np.random.default_rng(7)
    alpha, cycles, worlds = 0.05, 128, 600
    naive = alarms = 0
    for _ in range(worlds):
        ps = _fixed_model_world(rng, cycles)
        naive += min(ps) <= alpha
        alarms += _run(ps, [4 * (t + 1) for t in range(cycles)], alpha)
    assert naive / worlds > 1.5 * alpha  # looking at the fixed-sample p every cycle fails
    assert alarms / worlds <= alpha


def test_a_perfect_clone_of_the_demo_personas_alarms_within_32_cycles() -> None:
    """Two new free-text canaries of two samples a cycle, through the product's own
    similarity pass, provenance test and monitor (the benchmark's world, seed fixed)."""
    out = run_world(make_world("clone", seed=3), cycles=32)
    assert out["first_alarm"] is not None


def test_a_large_first_analysis_does_not_decide_the_alarm_alone() -> None:
    """A registry probed in one cycle can bring ten times the horizon at the first look;
    a monitor started there keeps most of its weight for the looks after it."""
    one_shot = monitor.update(monitor.new_state(half_n=96), 1e-8, 1000)
    assert monitor.alarm(one_shot, 0.05)  # with the fixed horizon, look 1 decided it
    s = monitor.start(96, 1000)
    assert s["half_n"] == 2000
    s = monitor.update(s, 1e-8, 1000)
    assert not monitor.alarm(s, 0.05) and monitor.e_value(s) < 10
    s = monitor.update(s, 1e-8, 2000)
    assert monitor.alarm(s, 0.05)
    # a small first look keeps the configured horizon
    assert monitor.start(96, 4)["half_n"] == 96
