from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from auditor.stats.provenance import provenance_test, text_provenance

CONTROLS = [f"C{i}" for i in range(8)]


def test_pvalue_is_uniform_when_the_suspect_is_one_more_independent_model(sim_tensor) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    ps = [
        provenance_test(
            sim_tensor(rng, 8, 40), "P", "S", CONTROLS, n_boot=0, symmetric=True
        ).p_value
        for _ in range(400)
    ]
    assert stats.kstest(ps, "uniform").pvalue > 0.01


def test_default_pvalue_keeps_false_positives_at_alpha_for_an_independent_suspect(
    sim_tensor,
) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(17)
    ps = np.array(
        [
            provenance_test(sim_tensor(rng, 8, 40), "P", "S", CONTROLS, n_boot=0).p_value
            for _ in range(400)
        ]
    )
    for u in (0.01, 0.05, 0.1):
        assert np.mean(ps <= u) <= u + 2.5 * np.sqrt(u * (1 - u) / ps.size)


def test_single_representation_pvalue_is_uniform(sim_tensor) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(27)
    ps = [
        provenance_test(
            sim_tensor(rng, 8, 40, reps=("word",)), "P", "S", CONTROLS, n_boot=0
        ).p_value
        for _ in range(400)
    ]
    assert stats.kstest(ps, "uniform").pvalue > 0.01


def test_power_grows_with_the_number_of_canaries(sim_tensor) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(8)
    power = []
    for n in (5, 20, 80):
        ps = [
            provenance_test(
                sim_tensor(rng, 8, n, derived=0.95, canary_noise=4.0), "P", "S", CONTROLS, n_boot=0
            ).p_value
            for _ in range(150)
        ]
        power.append(np.mean(np.array(ps) < 0.05))
    assert power[0] < power[1] < power[2]
    assert power[2] > 0.5 and power[2] - power[0] > 0.2


def test_result_carries_effect_interval_contributions_and_parameters(sim_tensor) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(9)
    r = provenance_test(
        sim_tensor(rng, 6, 30, derived=0.9), "P", "S", CONTROLS[:6], seed=3, n_boot=50
    )
    assert r.effect_ci[0] <= r.effect <= r.effect_ci[1] or r.effect_ci[0] < r.effect_ci[1]
    assert r.n_canaries == 30 and r.n_samples == 30
    assert r.controls == tuple(CONTROLS[:6])
    contrib = [c.contribution for c in r.contributions]
    assert contrib == sorted(contrib, reverse=True)
    assert r.params["seed"] == 3
    assert set(r.channel_p_values) == {"word", "layout", "style"}


def test_too_few_controls_is_an_error(sim_tensor) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(10)
    with pytest.raises(ValueError, match="at least"):
        provenance_test(sim_tensor(rng, 2, 10), "P", "S", ["C0", "C1"])


def _synthetic_model(rng: np.random.Generator, vocab: list[str]) -> dict[str, float]:
    w = rng.dirichlet(np.full(len(vocab), 0.3))
    return dict(zip(vocab, w, strict=True))


def _write(rng: np.random.Generator, model: dict[str, float], canary: int, n: int = 60) -> str:
    words = list(model)
    p = np.array(list(model.values()))
    topic = [f"topic{canary}_{i}" for i in range(3)]
    out = rng.choice(words + topic, size=n, p=np.concatenate([p * 0.8, [0.2 / 3] * 3]))
    sep = "\n- " if model[words[0]] > 0.01 else " "
    return sep.join(" ".join(out[i : i + 10]) for i in range(0, n, 10))


def test_text_provenance_detects_a_student_of_synthetic_text() -> None:
    rng = np.random.default_rng(11)
    vocab = [f"w{i}" for i in range(300)]
    teacher = _synthetic_model(rng, vocab)
    controls = {f"C{i}": _synthetic_model(rng, vocab) for i in range(8)}
    student = {k: 0.85 * teacher[k] + 0.15 * v for k, v in _synthetic_model(rng, vocab).items()}
    canaries = [f"q{i}" for i in range(40)]

    def answers(model: dict[str, float]) -> dict[str, list[str]]:
        return {c: [_write(rng, model, i) for _ in range(2)] for i, c in enumerate(canaries)}

    ctrl = {k: answers(v) for k, v in controls.items()}
    r = text_provenance(answers(teacher), answers(student), ctrl, n_boot=20)
    assert r.p_value < 0.01
    r0 = text_provenance(answers(teacher), answers(_synthetic_model(rng, vocab)), ctrl, n_boot=0)
    assert r0.p_value > r.p_value
    assert r.n_samples == 80


def _with_style(
    rng: np.random.Generator,
    tensor,  # type: ignore[no-untyped-def]
    derived: float = 0.0,
    n_features: int = 6,
    model_effect: float = 1.0,
):  # type: ignore[no-untyped-def]
    """Adds raw style rates: canary effect + each model's own reaction to each canary + noise.

    S's reaction is ``derived * P's + sqrt(1 - derived**2) * its own``; with derived == 0 it
    is one more independent model (exchangeable with the controls).
    """
    from dataclasses import replace

    q, m = tensor.counts.shape
    canary = rng.normal(size=(q, 1, n_features)) * 2.0
    react = rng.normal(size=(q, m, n_features)) * model_effect
    react[:, 1] = derived * react[:, 0] + np.sqrt(1 - derived**2) * react[:, 1]
    level = rng.normal(size=(1, m, n_features)) * 0.5
    style = canary + react + level + rng.normal(size=(q, m, n_features))
    return replace(tensor, style=style)


def test_residual_channel_joins_the_composite_when_style_rates_are_present(sim_tensor) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(12)
    st = _with_style(rng, sim_tensor(rng, 6, 30))
    r = provenance_test(st, "P", "S", CONTROLS[:6], n_boot=20)
    assert set(r.channel_p_values) == {"word", "layout", "style", "style_residual"}
    assert r.params["residual"] is True
    off = provenance_test(st, "P", "S", CONTROLS[:6], n_boot=0, residual=False)
    assert "style_residual" not in off.channel_p_values


def test_pvalue_with_residual_channel_keeps_false_positives_at_alpha(sim_tensor) -> None:  # type: ignore[no-untyped-def]
    """Deliberately conservative (leave-one-out composite): FPR <= alpha, not uniformity."""
    rng = np.random.default_rng(21)
    ps = np.array(
        [
            provenance_test(
                _with_style(rng, sim_tensor(rng, 8, 40)), "P", "S", CONTROLS, n_boot=0
            ).p_value
            for _ in range(300)
        ]
    )
    for u in (0.01, 0.05, 0.1):
        assert np.mean(ps <= u) <= u + 2.5 * np.sqrt(u * (1 - u) / ps.size)


def test_residual_channel_pvalue_is_uniform_for_an_independent_suspect(sim_tensor) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(22)
    ps = [
        provenance_test(
            _with_style(rng, sim_tensor(rng, 8, 40)), "P", "S", CONTROLS, n_boot=0
        ).channel_p_values["style_residual"]
        for _ in range(300)
    ]
    assert stats.kstest(ps, "uniform").pvalue > 0.01


def test_residual_channel_power_grows_with_the_number_of_canaries(sim_tensor) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(23)
    power = []
    for n in (10, 40, 160):
        ps = [
            provenance_test(
                _with_style(rng, sim_tensor(rng, 8, n), derived=0.3), "P", "S", CONTROLS, n_boot=0
            ).channel_p_values["style_residual"]
            for _ in range(100)
        ]
        power.append(np.mean(np.array(ps) < 0.05))
    assert power[0] < power[1] < power[2]
    assert power[2] > 0.5


def test_real_benchmark_protocol_at_a_small_budget_is_calibrated() -> None:
    """The provenance-bench protocol (cases + every control as a pseudo-suspect), 50
    canaries, one seed: false positives stay near alpha and positives rank above negatives."""
    from benchmarks.bench_data import auroc, bench_available, load_cases
    from benchmarks.stats_experiments import run_budget

    if not bench_available():
        pytest.skip("../shared/provenance-bench not present (set PROVENANCE_BENCH)")
    rows = run_budget(load_cases(), 50, 0, ("word", "layout", "style"))
    y = np.array([r[2] for r in rows])
    p = np.array([r[3] for r in rows])
    assert 0 < y.sum() < y.size
    assert np.mean(p[y == 0] < 0.05) <= 0.10
    assert auroc(-np.log10(p), y) > 0.8


def test_opening_representation_is_available_to_the_test() -> None:
    rng = np.random.default_rng(5)
    canaries = [f"q{i}" for i in range(30)]
    stock = {"T": "Sure! Here are", "S": "Sure! Here are"}
    stock.update({f"C{i}": f"Answer {i} is" for i in range(6)})

    def answers(name: str) -> dict[str, list[str]]:
        def body() -> str:
            words = rng.choice(["a", "b", "c", "d,", "e.", "F", "7"], int(rng.integers(5, 40)))
            return "\n".join(" ".join(words[i : i + 6]) for i in range(0, len(words), 6))

        return {c: [f"{stock[name]} {body()}"] for c in canaries}

    ctrl = {k: answers(k) for k in stock if k.startswith("C")}
    reps = ("word", "layout", "style", "opening")
    r = text_provenance(answers("T"), answers("S"), ctrl, reps=reps, n_boot=10)
    assert "opening" in r.channel_p_values and r.params["reps"] == list(reps)
    assert r.channel_p_values["opening"] < 0.01 and 0.0 <= r.p_value <= 1.0


def _exact_copy_with_an_outlier_control(rng: np.random.Generator, gap: float):  # type: ignore[no-untyped-def]
    """5 controls, 10 canaries; S answers exactly like P (similarity 1 on every canary and
    representation). On ``layout`` four controls sit within 1e-4 of each other and C4
    sits ``gap`` above them, so C4's leave-one-out z-score there is in the hundreds."""
    from tests.stats.conftest import simulated_tensor

    t = simulated_tensor(rng, 5, 10, canary_noise=1.5)
    sims = t.sims.copy()
    sims[:, :, 1, 0] = sims[:, :, 0, 1] = 1.0
    li = t.reps.index("layout")
    sims[li, :, 2:, 0] = 0.5 + 1e-4 * rng.normal(size=(10, 5))
    sims[li, :, 6, 0] += gap
    sims[li, :, 0, 2:] = sims[li, :, 2:, 0]
    return replace(t, sims=sims)


def test_an_exact_copy_is_flagged_when_one_control_is_an_outlier_on_one_representation() -> None:
    """Issue 12 item 9: the outlier's z-score composite (over 100) inflates the null so
    much that the z-score composite alone leaves the copy at p ~ 0.5; the normal-score
    composite, robust to it, flags the copy."""
    rng = np.random.default_rng(31)
    flagged = 0
    for _ in range(20):
        t = _exact_copy_with_an_outlier_control(rng, gap=0.02)
        r = provenance_test(t, "P", "S", CONTROLS[:5], n_boot=0)
        assert max(r.control_scores.values()) > 30  # the outlier of the issue
        flagged += r.p_value < 0.05
    assert flagged >= 16


def test_pvalue_keeps_false_positives_at_alpha_with_five_controls_and_ten_canaries(
    sim_tensor,
) -> None:  # type: ignore[no-untyped-def]
    """The small setting of the exact-copy test, under the null (S independent)."""
    rng = np.random.default_rng(32)
    ps = np.array(
        [
            provenance_test(sim_tensor(rng, 5, 10), "P", "S", CONTROLS[:5], n_boot=0).p_value
            for _ in range(1000)
        ]
    )
    for u in (0.01, 0.05, 0.1):
        assert np.mean(ps <= u) <= u + 2.5 * np.sqrt(u * (1 - u) / ps.size)


def _copies_the_wording_only(sim_tensor, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    """An independent suspect on layout and style whose wording is 20 control standard
    deviations closer to the protected model's than the controls' wording is."""
    t = sim_tensor(rng, 6, 40)
    p, s, cs = t.index("P"), t.index("S"), [t.index(c) for c in CONTROLS[:6]]
    sd = np.std(t.sims[0][:, cs, p].mean(axis=0), ddof=1)
    sims = t.sims.copy()
    sims[0, :, s, p] = sims[0, :, p, s] = t.sims[0][:, cs, p].mean() + 20 * sd
    return replace(t, sims=sims)


def test_one_overwhelming_representation_carries_the_verdict_that_the_average_dilutes(
    sim_tensor,
) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(31)
    both, composites_only = [], []
    for _ in range(40):
        t = _copies_the_wording_only(sim_tensor, rng)
        both.append(provenance_test(t, "P", "S", CONTROLS[:6], n_boot=0).p_value)
        composites_only.append(
            provenance_test(t, "P", "S", CONTROLS[:6], n_boot=0, rep_weight=0).p_value
        )
    both_, comp = np.array(both), np.array(composites_only)
    assert np.mean(both_ <= 1e-3) >= 0.95
    assert np.mean(comp <= 1e-3) <= 0.7
    assert np.median(both_) < np.median(comp) / 3
    assert np.all(both_ <= comp * 1.1)  # never much above the composites' own p
