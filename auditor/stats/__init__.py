"""Pure statistics of the canary auditor: arrays and strings in, plain dataclasses out.

No database, no files, no network. ``analysis.py`` loads responses and calls these.

Free text (the main channel)
----------------------------
One featurisation pass for every endpoint, then one cheap test per (suspect, protected)::

    from auditor.stats import canary_similarities, provenance_test

    # responses[endpoint][canary_id] -> list of response texts (k >= 1 samples)
    sim = canary_similarities(responses, canaries=canary_ids)       # SimilarityTensor
    res = provenance_test(sim, protected="gpt-p", suspect="acme-s",
                          controls=["ctl-a", "ctl-b", "ctl-c", "ctl-d"], seed=0)
    res.p_value, res.effect, res.effect_ci, res.channel_p_values
    res.contributions[:5]          # the five canaries that pushed hardest, ranked

or in one call for a single pair: ``text_provenance(p_map, s_map, {name: c_map}, ...)``.

Signatures::

    canary_similarities(responses: Mapping[str, Mapping[str, Sequence[str]]],
                        canaries: Sequence[str] | None = None,
                        reps: Sequence[str] = ("word", "layout", "style"),
                        config: TextConfig | None = None) -> SimilarityTensor
    provenance_test(sim, protected: str, suspect: str, controls: Sequence[str],
                    reps=None, seed=0, n_boot=200, top_k=None, symmetric=False)
                    -> ProvenanceResult
    text_provenance(protected, suspect, controls, protected_name="protected",
                    suspect_name="suspect", reps=..., config=None, seed=0, n_boot=200)
                    -> ProvenanceResult

Method: for each representation (word n-grams, ``layout`` = n-grams of the answer's
punctuation/line/list skeleton, style rates) a model's number is its mean per-canary
cosine similarity to P; with ``residual=True`` (the default) a fourth number is the
residual style correlation: how far X departs from the reference controls on the same
canaries where P does (``channel_p_values["style_residual"]``). The null is model-level:
S is exchangeable with the controls.
Numbers are standardised by the controls and averaged over representations; each
control's composite is computed against the other controls (leave-one-out); the p-value
is the Student-t prediction p-value (df = m-1) of S's composite among the controls',
Cauchy-combined with the same p-value for the normal-score composite (``nullmodel``).
At least 3 controls are required; more controls give more power.

Other channels (each returns a small dataclass with ``p_value``)::

    choice_test(protected, suspect, controls)             # 1 - Jensen-Shannon distance
    g_test(answers_a, answers_b) -> (G, p)                # per-canary evidence
    identity_test(suspect, controls, patterns)            # population p of the claim rate
    logprob_test(protected, suspect, controls, measure="overlap" | "kl")
    radioactivity_test(token_id_sequences, green_list, windows=None)  # exact binomial,
        # distinct (window, token) tuples; windows: the protected model's (Sander filter)

Combining and monitoring::

    cauchy_combine(p_values, weights=None) -> float       # channels, valid under dependence
    benjamini_hochberg(p_values, alpha) -> (adjusted, rejected)   # across suspects
    state = monitor.start(half_n, first_n)     # or monitor.new_state(half_n)
    state = monitor.update(state, p_all_data_so_far, n_responses, at=iso_time)
    monitor.alarm(state, alpha) -> bool; monitor.e_value(state) -> float  # JSON state
    mean_shift(series, n_perm=999, seed=0) -> ChangePoint; label_changes(reported_models)

The monitor is an e-process valid under any dependence between looks: every analysis
that adds responses is a look, weighted by the information it added, and the looks'
calibrated cumulative p-values are summed (see monitor).
"""

from __future__ import annotations

from . import monitor
from .changepoint import ChangePoint, label_changes, mean_shift
from .choice import ChoiceResult, choice_test, g_test, js_distance
from .combine import benjamini_hochberg, cauchy_combine
from .identity import IdentityResult, identity_test
from .logprob import LogprobResult, logprob_test
from .nullmodel import composite_scores, prediction_pvalue
from .provenance import (
    DEFAULT_REPS,
    CanaryContribution,
    ProvenanceResult,
    audit_controls,
    provenance_test,
    text_provenance,
)
from .similarity import SimilarityTensor, canary_similarities
from .text import REPRESENTATIONS, TextConfig
from .watermark import WatermarkResult, radioactivity_test, windows_of, worst_key

__all__ = [
    "DEFAULT_REPS",
    "REPRESENTATIONS",
    "CanaryContribution",
    "ChangePoint",
    "ChoiceResult",
    "IdentityResult",
    "LogprobResult",
    "ProvenanceResult",
    "audit_controls",
    "SimilarityTensor",
    "TextConfig",
    "WatermarkResult",
    "benjamini_hochberg",
    "canary_similarities",
    "cauchy_combine",
    "choice_test",
    "composite_scores",
    "monitor",
    "g_test",
    "identity_test",
    "js_distance",
    "label_changes",
    "logprob_test",
    "mean_shift",
    "prediction_pvalue",
    "provenance_test",
    "radioactivity_test",
    "text_provenance",
    "windows_of",
    "worst_key",
]
