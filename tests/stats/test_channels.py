from __future__ import annotations

import numpy as np
from scipy import stats

from auditor.stats.choice import choice_test, g_test, js_distance, normalise_choice
from auditor.stats.identity import identity_test, lone_claimer_bound
from auditor.stats.logprob import kl_divergence, logprob_test, topk_overlap


def test_normalise_choice_strips_case_and_punctuation() -> None:
    assert normalise_choice("  Blue. ") == normalise_choice("blue") == "blue"


def test_js_distance_is_zero_for_identical_and_one_for_disjoint_answers() -> None:
    assert js_distance(["a", "b"], ["b", "a"]) == 0.0
    assert abs(js_distance(["a"], ["b"]) - 1.0) < 1e-12


def test_g_test_rejects_different_distributions_only() -> None:
    assert g_test(["a"] * 50 + ["b"] * 50, ["a"] * 50 + ["b"] * 50)[1] > 0.9
    assert g_test(["a"] * 90 + ["b"] * 10, ["a"] * 10 + ["b"] * 90)[1] < 1e-6


def _answers(rng: np.random.Generator, probs: np.ndarray, n_canaries: int, k: int) -> dict:
    return {
        f"q{i}": list(rng.choice(list("abcdef"), size=k, p=probs[i])) for i in range(n_canaries)
    }


def test_choice_test_detects_a_suspect_copying_the_protected_mode() -> None:
    rng = np.random.default_rng(0)
    n = 30
    pp = rng.dirichlet(np.full(6, 0.3), size=n)
    controls = {
        f"C{j}": _answers(rng, rng.dirichlet(np.full(6, 0.3), size=n), n, 10) for j in range(8)
    }
    r = choice_test(_answers(rng, pp, n, 10), _answers(rng, pp, n, 10), controls)
    assert r.p_value < 0.01
    assert r.per_canary[0][1] >= r.per_canary[-1][1] - 1.0


def test_choice_test_pvalue_is_uniform_for_independent_suspects() -> None:
    rng = np.random.default_rng(1)
    n = 15
    ps = []
    for _ in range(150):
        pp = rng.dirichlet(np.full(6, 0.5), size=n)
        others = [_answers(rng, rng.dirichlet(np.full(6, 0.5), size=n), n, 5) for _ in range(9)]
        controls = {f"C{j}": a for j, a in enumerate(others[1:])}
        ps.append(choice_test(_answers(rng, pp, n, 5), others[0], controls).p_value)
    assert stats.kstest(ps, "uniform").pvalue > 0.01


def test_identity_test_flags_a_suspect_claiming_the_protected_identity() -> None:
    pats = [r"\bI am Claude\b", r"made by Anthropic"]
    suspect = {f"q{i}": ["I am Claude, made by Anthropic."] * 3 for i in range(5)}
    controls = {
        f"C{j}": {f"q{i}": ["I am a helpful assistant."] * 3 for i in range(5)} for j in range(5)
    }
    r = identity_test(suspect, controls, pats)
    assert r.rank_p_value == 1 / 6  # the most extreme of six exchangeable models
    assert r.p_value == lone_claimer_bound(5, 0) < 1 / 6  # ... and the only one that claims
    assert r.fisher_p < 1e-6 and r.suspect_claims == 15 and len(r.claiming_canaries) == 5
    assert identity_test(controls["C0"], controls, pats).p_value == 1.0


def test_identity_p_value_is_valid_when_the_suspect_is_one_more_independent_model() -> None:
    """I.i.d. claim rates: P(p <= u) <= u for the population p-value (and so the rank's)."""
    rng = np.random.default_rng(3)
    pats = [r"\bAurora\b"]
    ps = []
    for _ in range(2000):
        rates = rng.beta(0.5, 5.0, size=6)
        models = [{f"q{i}": ["I am Aurora." if rng.uniform() < r else "Hello." for _ in range(4)]
                   for i in range(5)} for r in rates]
        ps.append(identity_test(models[0], {f"C{j}": m for j, m in enumerate(models[1:])},
                                pats).p_value)
    ps_arr = np.array(ps)
    for u in (lone_claimer_bound(5, 0), lone_claimer_bound(5, 1), 1 / 6, 2 / 6, 3 / 6):
        assert (ps_arr <= u + 1e-12).mean() <= u + 0.03


def test_topk_overlap_and_kl_behave_at_the_extremes() -> None:
    a = {"x": -0.1, "y": -2.5}
    assert topk_overlap(a, a) == 1.0 and topk_overlap(a, {"z": -1.0}) == 0.0
    assert abs(kl_divergence(a, a)) < 1e-12 and kl_divergence(a, {"z": 0.0}) > 5


def test_logprob_test_detects_shared_next_token_lists() -> None:
    rng = np.random.default_rng(2)
    vocab = [f"t{i}" for i in range(200)]

    def model() -> dict:
        return {
            f"q{i}": [{t: -float(j) for j, t in enumerate(rng.choice(vocab, 5, replace=False))}]
            for i in range(40)
        }

    p = model()
    s = {k: [dict(list(v[0].items())[:4] + [("zz", -9.0)])] for k, v in p.items()}
    r = logprob_test(p, s, {f"C{j}": model() for j in range(6)})
    assert r.p_value < 0.001


def test_choice_test_power_grows_with_the_number_of_canaries() -> None:
    """A suspect whose answers mix P's distribution (40 %) with its own: more canaries,
    more rejections at 0.05."""
    rng = np.random.default_rng(4)
    power = []
    for n in (4, 12, 36):
        hits = 0
        for _ in range(40):
            pp = rng.dirichlet(np.full(6, 0.5), size=n)
            own = rng.dirichlet(np.full(6, 0.5), size=n)
            controls = {f"C{j}": _answers(rng, rng.dirichlet(np.full(6, 0.5), size=n), n, 5)
                        for j in range(8)}
            s = _answers(rng, 0.4 * pp + 0.6 * own, n, 5)
            hits += choice_test(_answers(rng, pp, n, 5), s, controls).p_value < 0.05
        power.append(hits / 40)
    assert power[0] < power[1] < power[2]
    assert power[2] >= 0.5


def _topk_model(rng: np.random.Generator, vocab: list[str], n: int, spread: float) -> dict:
    """A model's top-5 lists on n prefixes; ``spread`` is its own habit: how far down a
    shared popularity ranking it reaches."""
    weights = np.exp(-np.arange(len(vocab)) / spread)
    weights /= weights.sum()
    return {
        f"q{i}": [{t: -float(j) for j, t in
                   enumerate(rng.choice(vocab, 5, replace=False, p=weights))}]
        for i in range(n)
    }


def test_logprob_pvalue_is_valid_when_the_suspect_is_one_more_independent_model() -> None:
    """Every model (P, S, 7 controls) has its own spread drawn from one law, so models
    differ systematically and their closeness to P is skewed; S is exchangeable with the
    controls. At a fixed seed, P(p <= u) stays within sampling error of u in the tail
    (the raw mean overlap gave 0.027 at u = 0.01 and mean exp(-KL) 0.117 at u = 0.05)."""
    rng = np.random.default_rng(6)
    vocab = [f"t{i}" for i in range(120)]
    n = 300
    ps: dict[str, list[float]] = {"overlap": [], "kl": []}
    for _ in range(n):
        models = [_topk_model(rng, vocab, 30, float(rng.uniform(5, 40))) for _ in range(9)]
        controls = {f"C{j}": m for j, m in enumerate(models[2:])}
        for measure, out in ps.items():
            out.append(logprob_test(models[0], models[1], controls, measure=measure).p_value)
    for measure, got in ps.items():
        arr = np.array(got)
        assert stats.kstest(arr, "uniform").pvalue > 0.01, measure
        for u in (0.01, 0.05, 0.1):
            assert (arr <= u).mean() <= u + 2.5 * np.sqrt(u * (1 - u) / n), (measure, u)


def test_choice_pvalue_is_valid_when_models_differ_in_how_peaked_they_are() -> None:
    """Each model (P, S, 7 controls) answers from its own concentration of a shared
    popularity, so closeness to P varies systematically between models; S is exchangeable
    with the controls. P(p <= u) stays within sampling error of u in the tail."""
    rng = np.random.default_rng(7)
    n_canaries, n = 15, 300
    popularity = np.linspace(2.0, 0.2, 6)
    ps = []
    for _ in range(n):
        models = []
        for _ in range(9):
            conc = rng.uniform(0.1, 3.0)
            probs = np.array([rng.dirichlet(popularity * conc) for _ in range(n_canaries)])
            models.append(_answers(rng, probs, n_canaries, 5))
        controls = {f"C{j}": m for j, m in enumerate(models[2:])}
        ps.append(choice_test(models[0], models[1], controls).p_value)
    arr = np.array(ps)
    for u in (0.01, 0.05, 0.1):
        assert (arr <= u).mean() <= u + 2.5 * np.sqrt(u * (1 - u) / n), u


def test_identity_channel_is_uninformative_when_every_model_claims_alike() -> None:
    pats = [r"\bAurora\b"]
    plain = {f"q{i}": ["I am an AI assistant."] * 4 for i in range(3)}
    controls = {f"C{j}": plain for j in range(5)}
    flat = identity_test(plain, controls, pats)
    assert flat.p_value == 1.0 and not flat.informative
    claims = {f"q{i}": ["I am Aurora."] * 4 for i in range(3)}
    assert identity_test(claims, controls, pats).informative
    assert identity_test(plain, {**controls, "C0": claims}, pats).informative
