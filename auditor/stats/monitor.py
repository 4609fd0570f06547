"""Anytime-valid monitoring under arbitrary dependence between looks.

The daemon re-analyses every suspect after every cycle. Each analysis gives a p-value
``p_j`` for the model-level null on all data so far; these p-values are strongly
dependent (the same suspect, mostly the same canaries), so products of per-look
e-values (test martingales) would not be valid: an independent suspect that happens to
resemble the protected model would compound small p-values into a false alarm.

Instead the monitor takes a *look* each time the suspect's evidence has doubled since
the previous look, turns the look's p-value into an e-value with a calibrator ``f``
(``integral f(p) dp = 1``), and keeps the weighted sum

    E_k = sum_{j <= k} w_j f(p_j),     w_j = 1 / (j (j + 1)),  sum_j w_j = 1.

Each ``f(p_j)`` has expectation at most 1 under the null whatever the dependence, so
``E_k`` is an e-value at every time, and it never decreases: by Markov's inequality
``P(sup_k E_k >= 1/alpha) = P(E_inf >= 1/alpha) <= alpha``. The alarm is that crossing,
however often the monitor is looked at. The state is a plain JSON-serialisable dict.
"""

from __future__ import annotations

__all__ = ["KAPPAS", "alarm", "calibrate", "e_value", "new_state", "update"]

import math
from typing import Any

KAPPAS = (0.01, 0.05, 0.1, 0.2)
_P_FLOOR = 1e-300


def calibrate(p: float) -> float:
    """Mixture of the calibrators ``k * p**(k-1)`` over ``KAPPAS`` (each integrates to 1)."""
    p = min(max(float(p), _P_FLOOR), 1.0)
    return sum(k * math.exp((k - 1.0) * math.log(p)) for k in KAPPAS) / len(KAPPAS)


def weight(j: int) -> float:
    return 1.0 / (j * (j + 1))


def new_state(growth: float = 2.0) -> dict[str, Any]:
    return {"version": 1, "growth": growth, "looks": [], "e_value": 0.0, "history": []}


def update(state: dict[str, Any], p_value: float, n: int, at: str | None = None) -> dict[str, Any]:
    """State after one analysis with ``n`` responses of evidence and cumulative ``p_value``.

    A look is taken at the first analysis and whenever ``n`` has grown by the state's
    growth factor since the last look; other analyses only add to the history.
    """
    if math.isnan(p_value) or not 0.0 <= p_value <= 1.0:
        raise ValueError(f"p-value must be in [0, 1], got {p_value!r}")
    looks = list(state["looks"])
    e = float(state["e_value"])
    last_n = looks[-1]["n"] if looks else None
    took = last_n is None or n >= state["growth"] * last_n
    if took:
        j = len(looks) + 1
        e += weight(j) * calibrate(p_value)
        looks.append({"j": j, "n": n, "p_value": p_value, "at": at})
    history = [*state["history"], {"at": at, "n": n, "p_value": p_value, "e_value": e,
                                   "look": took}][-500:]
    return {**state, "looks": looks, "e_value": e, "history": history}


def e_value(state: dict[str, Any]) -> float:
    return float(state["e_value"])


def alarm(state: dict[str, Any], alpha: float) -> bool:
    return e_value(state) >= 1.0 / alpha
