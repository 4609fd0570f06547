"""Anytime-valid monitoring whose weight follows the evidence.

The daemon re-analyses every suspect after every cycle. Analysis ``j`` sees ``n_j``
responses of the suspect and gives ``p_j``, the fixed-sample p-value of all data so far.

**Null and filtration.** The null is the analysis' own model-level null: the suspect is
one more independent model, exchangeable with the controls, whose closeness to the
protected model is one more draw from the controls' (normal) distribution, so that each
``p_j`` is valid, ``P(p_j <= u) <= u``. The filtration is the sequence of analyses; the
sample counts ``n_j`` come from the probing schedule and do not depend on what the
answers say. Nothing is assumed about the dependence between ``p_1, p_2, ...``.

**Why not a product of per-cycle e-values.** With a fixed set of controls the evidence
of different cycles is not independent under the null even on disjoint new canaries:
the suspect keeps its place among the controls, and an independent model that happens
to resemble the protected model is close every cycle. A test martingale would compound
that into a false alarm (``tests/stats/test_monitor.py``); and a rank among the models
(the nonparametric alternative) can never give an e-value above ``m + 1``
with ``m`` controls. The evidence about *which* model is the suspect is what the
fixed-sample p-value measures, and it levels off once the canaries pin each model's
closeness down. So the monitor averages, with weights fixed in advance:

    E_k = sum_{j <= k} w_j g(p_j),   w_j = I(n_j) - I(max_{i<j} n_i),
    I(n) = 1 / (1 + (n_half / n) ** shape)

``I(n)`` is the share of the weight given to the suspect's first ``n`` responses: every
analysis that adds responses is a look, and its weight is the information it added, not
its index, so looking after every cycle costs nothing and re-analysing the same data adds
nothing. The weights sum to at most 1 however the looks fall. ``g`` is a mixture of step
calibrators ``1{p <= a} / a`` (each integrates to 1 over [0, 1]) with masses ``m_a``
summing to 1, so a p-value that stays below ``a`` adds ``m_a / a`` per unit of weight.

Because the p-value of a derived model levels off rather than keeps falling, the weight
is best spent where it has levelled off: ``shape = 8`` gives out 71 % of it between
``0.8 n_half`` and ``1.25 n_half`` responses (``n_half`` defaults to 96, the setting
``analysis.monitor_half_n``; 4 % by 64, 50 % by 96, 91 % by 128, 99.6 % by 192). This
makes the monitor close to a group-sequential test with its looks around ``n_half``.
The defaults were chosen on simulated worlds of ``benchmarks/monitoring.py`` (seeds 0
and 1) and checked on fresh ones (seed 2, BENCHMARKS.md); flatter weights (``shape`` 1-3,
the old doubling looks) and smoother calibrators alarmed on fewer distilled models.

**Validity.** ``E[g(p_j)] <= 1`` for each ``j``, so ``E[E_k] <= 1`` at every ``k`` and
``E_k`` never decreases: ``P(sup_k E_k >= 1/alpha) = P(E_inf >= 1/alpha) <= alpha``
(Markov), whatever the dependence between looks and however often the monitor is read.

**When it can fire.** Only once ``sum w_j g(p_j) >= 1/alpha``. With ``alpha = 0.05`` and
the defaults, a p-value at or below 0.04 at every look alarms once the weight given out
reaches 84 % (about the suspect's 118th response), one at or below 0.001 at 37 % (about
the 90th) and one at or below 0.00001 at 1 % (about the 54th). A p-value that stays above
0.04 never alarms. A monitor ``start``-ed by the analysis takes as its horizon at least
twice the answers of its first look: with a large registry probed in one cycle, the first
analysis alone would otherwise take nearly all the weight, and one cycle (perhaps with a
control down) would decide the alarm for good. That count comes from the schedule, not
from what the answers say, so the weights still depend on counts only. The state is a plain
JSON-serialisable dict that records its own parameters, so changing the defaults never
changes a running monitor.
"""

from __future__ import annotations

__all__ = ["HALF_N", "SHAPE", "STEPS", "alarm", "calibrate", "e_value", "information", "new_state",
           "start", "update"]

import math
from collections.abc import Sequence
from typing import Any

HALF_N = 96  # responses by which half of the weight has been given out
SHAPE = 8.0  # how steeply the weight is given out around HALF_N
STEPS: tuple[tuple[float, float], ...] = ((0.04, 0.95), (1e-3, 0.03), (1e-5, 0.02))  # (a, m_a)
VERSION = 2


def calibrate(p: float, steps: Sequence[Sequence[float]] = STEPS) -> float:
    """``g(p) = sum_a m_a 1{p <= a} / a``: integrates to ``sum_a m_a`` (1) over [0, 1]."""
    return sum(m / a for a, m in steps if p <= a)


def information(n: float, half_n: float = HALF_N, shape: float = SHAPE) -> float:
    """The share of the monitor's weight given to the first ``n`` responses."""
    return 1.0 / (1.0 + (half_n / n) ** shape) if n > 0 else 0.0


def new_state(
    half_n: float = HALF_N, shape: float = SHAPE, steps: Sequence[Sequence[float]] = STEPS
) -> dict[str, Any]:
    if half_n <= 0 or shape <= 0 or abs(sum(m for _, m in steps) - 1.0) > 1e-9 or any(
        not 0 < a <= 1 or m < 0 for a, m in steps
    ):
        raise ValueError("half_n and shape must be positive and the steps (a, m_a) need "
                         "0 < a <= 1, m_a >= 0 and masses summing to 1")
    return {"version": VERSION, "half_n": half_n, "shape": shape,
            "steps": [list(s) for s in steps], "n": 0, "looks": [], "e_value": 0.0,
            "history": []}


def start(half_n: float, first_n: int) -> dict[str, Any]:
    """A new monitor whose first look brings ``first_n`` answers: its horizon is ``half_n``
    or twice ``first_n``, whichever is larger, so that the first look takes at most
    ``1 / (1 + 2 ** SHAPE)`` (0.4 %) of the weight."""
    return new_state(half_n=max(float(half_n), 2.0 * first_n))


def _current(state: dict[str, Any]) -> dict[str, Any]:
    """A state of this version; an older monitor's state restarts this e-process (its
    history is kept, marked with the version it came from)."""
    if state.get("version") == VERSION:
        return state
    fresh = new_state()
    history = [{**h, "version": state.get("version")} for h in state.get("history", [])]
    return {**fresh, "history": history, "restarted_from": {
        "version": state.get("version"), "e_value": float(state.get("e_value", 0.0))}}


def update(state: dict[str, Any], p_value: float, n: int, at: str | None = None) -> dict[str, Any]:
    """State after one analysis with ``n`` responses of evidence and cumulative ``p_value``.

    The analysis is a look when ``n`` exceeds every earlier ``n``; its weight is the
    information it added. Other analyses only add to the history.
    """
    if math.isnan(p_value) or not 0.0 <= p_value <= 1.0:
        raise ValueError(f"p-value must be in [0, 1], got {p_value!r}")
    state = _current(state)
    half_n, shape, last_n = float(state["half_n"]), float(state["shape"]), state["n"]
    e = float(state["e_value"])
    looks = list(state["looks"])
    took = n > last_n
    if took:
        w = information(n, half_n, shape) - information(last_n, half_n, shape)
        e += w * calibrate(p_value, state["steps"])
        j = looks[-1]["j"] + 1 if looks else 1
        looks.append({"j": j, "n": n, "weight": w, "p_value": p_value, "at": at})
    history = [*state["history"], {"at": at, "n": n, "p_value": p_value, "e_value": e,
                                   "look": took}][-500:]
    return {**state, "n": max(n, last_n), "looks": looks[-500:], "e_value": e,
            "history": history}


def e_value(state: dict[str, Any]) -> float:
    return float(state["e_value"])


def alarm(state: dict[str, Any], alpha: float) -> bool:
    return e_value(state) >= 1.0 / alpha
