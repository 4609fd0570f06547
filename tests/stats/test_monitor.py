from __future__ import annotations

import json

import numpy as np

from auditor.stats import monitor


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


def test_looks_are_taken_only_when_evidence_has_doubled() -> None:
    s = monitor.new_state()
    for n in (100, 150, 199, 200, 300, 400):
        s = monitor.update(s, 0.5, n)
    assert [look["n"] for look in s["looks"]] == [100, 200, 400]
    assert len(s["history"]) == 6


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
