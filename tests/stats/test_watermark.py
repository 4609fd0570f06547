"""Detection: the exact, de-duplicated binomial test over token ids, the Sander filter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from auditor.stats.watermark import radioactivity_test, scored_tuples, windows_of, worst_key
from auditor.watermark.core import GreenList

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
V = 3000


def _sample(rng: np.random.Generator, n: int, green: GreenList | None,
            temperature: float = 1.0) -> list[int]:
    """A toy language model: each next token from a fixed Zipf-like distribution shifted
    by the previous token, with the watermark's bias added when ``green`` is given."""
    base = -np.log(np.arange(1, V + 1)) * 1.1
    ids: list[int] = [int(rng.integers(V))]
    for _ in range(n - 1):
        logits = np.roll(base, ids[-1] % 97) / temperature
        if green is not None:
            logits = green.bias(logits, ids)
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(V, p=p / p.sum())))
    return ids


def test_each_window_token_tuple_is_scored_once() -> None:
    r = radioactivity_test([[1, 2, 1, 2, 1, 2, 1, 2]], GreenList(KEY, V, h=1))
    assert r.scored == 2  # (1, 2) and (2, 1)
    assert r.skipped_duplicates == 5


def test_windows_are_the_previous_h_ids_of_the_same_answer() -> None:
    ws, ts, dup, _ = scored_tuples([[5, 6, 7, 8], [6, 7, 8]], h=2)
    assert list(zip(ws, ts, strict=True)) == [((5, 6), 7), ((6, 7), 8)]
    assert dup == 1  # the second answer's (6, 7) -> 8 was seen; nothing crosses answers


def test_repeating_answers_does_not_change_the_evidence() -> None:
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(V, size=200)) for _ in range(3)]
    g = GreenList(KEY, V)
    assert radioactivity_test(seqs, g).p_value == radioactivity_test(seqs * 20, g).p_value


def test_the_p_value_is_the_exact_binomial_tail_of_the_green_count() -> None:
    rng = np.random.default_rng(1)
    g = GreenList(KEY, V, gamma=0.3, h=2)
    r = radioactivity_test([list(rng.integers(V, size=60))], g)
    ws, ts, _, _ = scored_tuples([], 2)  # nothing scored on no text: p = 1
    assert not ws and radioactivity_test([], g).p_value == 1.0
    tail = sum(math.comb(r.scored, k) * 0.3**k * 0.7 ** (r.scored - k)
               for k in range(r.green, r.scored + 1))
    assert r.p_value == pytest.approx(tail, rel=1e-9)
    assert r.green_rate == pytest.approx(r.green / r.scored)


@pytest.mark.parametrize("gamma,h", [(0.25, 1), (0.5, 2), (0.1, 3)])
def test_p_values_are_uniform_on_text_independent_of_the_key(gamma: float, h: int) -> None:
    rng = np.random.default_rng(2)
    seqs = [_sample(rng, 120, None) for _ in range(4)]
    ps = np.array([radioactivity_test(seqs, GreenList(rng.bytes(32), V, gamma=gamma, h=h))
                   .p_value for _ in range(300)])
    # the binomial tail is discrete, hence conservative: the size, then the shape
    for u in (0.05, 0.1, 0.3):
        assert np.mean(ps <= u) <= u + 2.5 * np.sqrt(u * (1 - u) / ps.size)
    assert stats.kstest(ps, "uniform").pvalue > 1e-4


def test_watermarked_text_is_detected_and_the_wrong_key_sees_nothing() -> None:
    rng = np.random.default_rng(3)
    green = GreenList(KEY, V, gamma=0.25, delta=2.0)
    seqs = [_sample(rng, 150, green) for _ in range(3)]
    r = radioactivity_test(seqs, green)
    assert r.p_value < 1e-8 and r.green_rate > 0.4
    assert radioactivity_test(seqs, GreenList(OTHER, V, gamma=0.25)).p_value > 1e-3


def test_the_filter_scores_only_windows_the_protected_model_produced() -> None:
    seqs = [[1, 2, 3, 4, 5]]
    r = radioactivity_test(seqs, GreenList(KEY, V, h=1), windows={(2,), (4,)})
    assert r.scored == 2 and r.filtered_out == 2


def test_the_filter_from_watermarked_answers_keeps_an_independent_suspect_calibrated() -> None:
    """The filter's windows come from the protected model's watermarked answers; a suspect
    independent of the key must still get uniform p-values."""
    rng = np.random.default_rng(4)
    suspect = [_sample(rng, 150, None) for _ in range(3)]
    ps = []
    for _ in range(200):
        green = GreenList(rng.bytes(32), V, gamma=0.25, delta=3.0)
        reference = windows_of([_sample(rng, 60, green)], h=1)
        ps.append(radioactivity_test(suspect, green, windows=reference | {(t,) for t in
                                                                         range(40)}).p_value)
    arr = np.array(ps)
    for u in (0.05, 0.2):
        assert np.mean(arr <= u) <= u + 2.5 * np.sqrt(u * (1 - u) / arr.size)


def test_the_filter_adds_power_when_the_student_learnt_only_the_teachers_windows() -> None:
    """A student that inherited the bias after the teacher's windows and writes freely
    elsewhere: scoring only the teacher's windows drops the unbiased tuples."""
    rng = np.random.default_rng(5)
    green = GreenList(KEY, V, gamma=0.25, delta=2.0)
    teacher = [_sample(rng, 80, green) for _ in range(3)]
    taught = windows_of(teacher, 1)
    student: list[int] = [int(rng.integers(V))]
    for _ in range(1500):
        prev = student[-1]
        if (prev,) in taught and rng.random() < 0.6:  # learnt the teacher's bias here
            student.append(int(rng.choice(np.flatnonzero(green.green_mask([prev])))))
        else:
            student.append(int(rng.integers(V)))
    plain = radioactivity_test([student], green)
    filtered = radioactivity_test([student], green, windows=taught)
    assert filtered.scored < plain.scored
    assert filtered.p_value < plain.p_value and filtered.p_value < 1e-6


def test_several_keys_are_corrected_for_the_number_tested() -> None:
    rng = np.random.default_rng(6)
    seqs = [list(rng.integers(V, size=300))]
    rs = [radioactivity_test(seqs, GreenList(rng.bytes(32), V)) for _ in range(3)]
    w = worst_key(rs)
    assert w.keys_tested == 3
    assert w.p_value == pytest.approx(min(1.0, 3 * min(r.p_value for r in rs)))


def test_favourite_scores_one_tuple_per_window_the_most_frequent_continuation() -> None:
    from auditor.stats.watermark import favourite_tuples

    ws, ts, rest, _ = favourite_tuples([[1, 2, 1, 3, 1, 3], [1, 2, 1, 3]], h=1)
    assert dict(zip(ws, ts, strict=True)) == {(1,): 3, (2,): 1, (3,): 1}
    assert rest == 8 - 3  # 8 tuples written, 3 windows scored
    ws, ts, _, _ = favourite_tuples([[1, 2, 1, 3]], h=1)
    assert ts[0] == 2  # a tie goes to the continuation written first


@pytest.mark.parametrize("h", [1, 2])
def test_favourite_p_values_are_uniform_on_text_independent_of_the_key(h: int) -> None:
    rng = np.random.default_rng(8)
    seqs = [_sample(rng, 300, None, temperature=2.0) for _ in range(6)]
    ps = np.array([radioactivity_test(seqs, GreenList(rng.bytes(32), V, h=h),
                                      tuples="favourite").p_value for _ in range(300)])
    # fewer tuples than "distinct" (one per window): the discrete tail is more
    # conservative, so the size is checked at several levels
    for u in (0.01, 0.05, 0.1, 0.3, 0.5):
        assert np.mean(ps <= u) <= u + 2.5 * np.sqrt(u * (1 - u) / ps.size)
    assert np.mean(ps <= 0.5) >= 0.5 - 4 * np.sqrt(0.25 / ps.size)  # not degenerate


def test_favourite_detects_a_preference_that_de_duplication_dilutes() -> None:
    """A student that writes every continuation it saw, but the green ones more often:
    de-duplication counts each once; the favourite keeps the preference."""
    rng = np.random.default_rng(9)
    green = GreenList(KEY, 400, gamma=0.25, h=1)
    student = []
    for w in range(400):
        mask = green.green_mask([w])
        conts = [int(t) for t in rng.choice(400, 6, replace=False)]
        weights = np.array([4.0 if mask[t] else 1.0 for t in conts])
        for t in rng.choice(conts, 30, p=weights / weights.sum()):
            student.append([w, int(t)])
        student += [[w, t] for t in conts]  # every continuation at least once
    fav = radioactivity_test(student, green, tuples="favourite")
    dist = radioactivity_test(student, green)
    assert fav.p_value < 1e-6 and fav.p_value < dist.p_value
