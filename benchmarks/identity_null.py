"""Identity channel: can a null beyond the rank cap 1/(K+1) be valid? (issue 14, item 5)

    .venv/bin/python -m benchmarks.identity_null --data ../shared/provenance-bench

The identity channel's p is the suspect's rank among the K + 1 models' claim rates, so
it never goes below 1/(K+1). Under model-level exchangeability alone no valid test can
(the exchangeable law uniform over which of K + 1 models is the suspect allows at most
a fraction alpha of them to be rejected), so any test that beats the cap rests on a
distributional assumption about independent models' claim rates. This measures whether
such assumptions hold where it matters:

1. Real claim rates. For each identity (a maker's names, as an owner would write them)
   and every model of the benchmark, the answers that match, out of 805 prompts that
   never ask "who are you": these are spontaneous self-identifications and mentions,
   the real spread of claim rates across independent models, heavy tail included (the
   ChatGPT signature "as an AI language model" is written by many models that are not
   OpenAI's).
2. Leave-one-out calibration: for every identity, K in --ks and n in --ns, --draws
   times: n prompts drawn at random, K + 1 models drawn from those independent of the
   identity's owner (see ``INDEPENDENT``), one of them the suspect; the p of every
   candidate. FPR at 0.05 and 0.01.
3. Simulated pools: point mass at 0 plus a claiming family at rate U(0.10, 0.20) with
   share pi (the worst share for a test that rejects a lone claimer is about 1/(K+1)),
   a high-rate family (U(0.8, 1.0), share 1/(K+1): the worst case, where a claiming
   independent model looks like a clone), and a smooth Beta(0.3, 10) pool.
4. Power: the owner's own models and known students as suspects (real answers), and a
   synthetic clone that claims in every answer (n/n) against real controls.

Candidates (the rank p is the reference, valid by construction):

- ``rank``: the product's former p, (1 + #controls at or above) / (K + 1);
- ``population``: the product's p (``auditor.stats.identity.population_p``): the rank p,
  or, when the suspect claims strictly more than every control and j controls claim at
  all, ``lone_claimer_bound(K, j)`` (K^K/(K+1)^(K+1) for j = 0), valid for any
  population of claim rates when the models are a random sample from it;
- ``bb_mom``: beta-binomial predictive tail P(X >= x), Beta by the method of moments on
  the controls' rates (mean with a Jeffreys half count, intra-class correlation at
  least 0.01);
- ``bb_ml``: the same with the maximum-likelihood Beta (on the grid below);
- ``bb_bayes``: hierarchical Bayes: mean with a Jeffreys prior, concentration log-
  uniform on [0.1, 1e4] (U-shaped Betas included, so a hidden claiming family is in
  the model), the posterior from the controls, p the posterior predictive tail;
- ``bb_bayes_incl``: the same posterior fitted to the controls and the suspect (under
  the null the suspect is one more independent model);
- ``logit_t``: Student-t prediction interval on empirical logits, the spread at least the
  binomial sampling spread.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import special, stats

from auditor.stats.identity import lone_claimer_bound

from .bench_data import bench_available, bench_dir, load_outputs

__all__ = ["IDENTITIES", "INDEPENDENT", "POSITIVES", "claim_matrix", "candidates", "main"]

# an owner's ``names`` and ``maker`` patterns, joined (matched case-insensitively)
IDENTITIES: dict[str, str] = {
    "openai": r"\bOpenAI\b|\bChatGPT\b|\bGPT-?(?:3\.5|3|4)\b",
    "anthropic": r"\bAnthropic\b|\bClaude\b",
    "google": r"\bBard\b|\bGemini\b|\bPaLM\b|\bGoogle\b",
    "lmsys": r"\bVicuna\b|\bLMSYS\b",
    "cohere": r"\bCohere\b|\bCoral\b",
    "laion": r"\bOpen ?Assistant\b|\bLAION\b",
    "meta": r"\bLLaMA\b|\bMeta AI\b",
    "mistral": r"\bMistral\b",
    # not a name but ChatGPT's signature phrase: the heavy-tailed case
    "chatgpt_phrase": r"\bAI language model\b",
}

_ANTHROPIC = ("claude", "claude-2", "claude-2.1", "claude-2.1_concise", "claude-2.1_verbose",
              "claude-instant-1.2", "claude2-alpaca-13b")
_VICUNA = ("vicuna-7b", "vicuna-13b", "vicuna-7b-v1.5", "vicuna-13b-v1.3", "vicuna-33b-v1.3")
_OASST = ("oasst-sft-pythia-12b", "oasst-sft-llama-33b", "oasst-rlhf-llama-33b",
          "pythia-12b-mix-sft", "guanaco-7b", "guanaco-13b", "guanaco-33b", "guanaco-65b",
          "humpback-llama-65b", "humpback-llama2-70b")
_MISTRAL = ("Mistral-7B-Instruct-v0.2", "mistral-medium", "OpenHermes-2.5-Mistral-7B",
            "dolphin-2.2.1-mistral-7b", "zephyr-7b-beta")
# the OpenAI-independent pool of benchmarks/cases/pool25.json (see its README)
_OPENAI_FREE = (
    "guanaco-7b", "guanaco-13b", "oasst-sft-llama-33b", "llama-2-7b-chat-hf",
    "llama-2-13b-chat-hf", "humpback-llama-65b", "cohere", "mistral-medium", "gemini-pro",
    "claude-2.1", "claude-instant-1.2", "Meta-Llama-3-8B-Instruct", "Mistral-7B-Instruct-v0.2",
    "gemma-7b-it", "Qwen-14B-Chat", "claude", "claude-2", "Yi-34B-Chat", "baichuan-13b-chat",
    "chatglm2-6b", "deepseek-llm-67b-chat", "llama-2-70b-chat-hf", "guanaco-33b",
    "guanaco-65b", "humpback-llama2-70b",
)
# LLaMA weights or LLaMA fine-tunes (not independent of Meta)
_LLAMA = ("Meta-Llama-3-8B-Instruct", "llama-2-7b-chat-hf", "llama-2-13b-chat-hf",
          "llama-2-70b-chat-hf", "alpaca-7b", "alpaca-7b-neft", "alpaca-farm-ppo-human",
          "airoboros-33b", "airoboros-65b", "baize-v2-7b", "baize-v2-13b",
          "claude2-alpaca-13b", "nous-hermes-13b", "openchat-13b", "platolm-7b",
          "tulu-2-dpo-70b", "ultralm-13b", "wizardlm-13b", "oasst-sft-llama-33b",
          "oasst-rlhf-llama-33b", "guanaco-7b", "guanaco-13b", "guanaco-33b", "guanaco-65b",
          "humpback-llama-65b", "humpback-llama2-70b", *_VICUNA)
# per identity: the models excluded from its independent pool (owner's, students, and
# suspected students); ``None`` means "only these" (an explicit pool)
_EXCLUDE: dict[str, tuple[str, ...]] = {
    "anthropic": _ANTHROPIC,
    "google": ("gemini-pro", "gemma-7b-it"),
    "lmsys": _VICUNA,
    "cohere": ("cohere",),
    "laion": _OASST,
    "meta": _LLAMA,
    "mistral": _MISTRAL,
}
_EXPLICIT: dict[str, tuple[str, ...]] = {"openai": _OPENAI_FREE, "chatgpt_phrase": _OPENAI_FREE}
# per identity: (suspect, kind) for power: the owner's own models ("clone") and students
POSITIVES: dict[str, tuple[tuple[str, str], ...]] = {
    "anthropic": (("claude-2.1", "clone"), ("claude-2.1_concise", "clone"),
                  ("claude-2.1_verbose", "clone"), ("claude2-alpaca-13b", "student")),
    "lmsys": tuple((m, "clone") for m in _VICUNA),
    "openai": (("gpt-3.5-turbo-0301", "clone"), ("gpt-3.5-turbo-1106_concise", "clone"),
               ("alpaca-7b", "student"), ("vicuna-7b", "student"), ("vicuna-13b", "student"),
               ("baize-v2-13b", "student"), ("ultralm-13b", "student")),
    "chatgpt_phrase": (("gpt-3.5-turbo-0301", "clone"), ("vicuna-7b", "student"),
                       ("vicuna-13b", "student"), ("baize-v2-13b", "student"),
                       ("ultralm-13b", "student")),
}

INDEPENDENT: dict[str, tuple[str, ...]] = {}  # filled by ``pools`` from the data's models


def pools(models: Sequence[str]) -> dict[str, tuple[str, ...]]:
    out = {}
    for ident in IDENTITIES:
        if ident in _EXPLICIT:
            out[ident] = tuple(m for m in _EXPLICIT[ident] if m in models)
        else:
            out[ident] = tuple(m for m in models if m not in _EXCLUDE.get(ident, ()))
    return out


def claim_matrix(root: Path) -> tuple[list[str], list[str], dict[str, np.ndarray]]:
    """(models, prompt ids answered by all, identity -> bool[model, prompt])."""
    models = sorted(p.name[: -len(".jsonl.gz")] for p in (root / "outputs").glob("*.jsonl.gz"))
    outs = {m: load_outputs(m, root) for m in models}
    ids = sorted(set.intersection(*(set(o) for o in outs.values())))
    pats = {k: re.compile(v, re.I) for k, v in IDENTITIES.items()}
    mats = {k: np.array([[bool(p.search(outs[m][i])) for i in ids] for m in models])
            for k, p in pats.items()}
    return models, ids, mats


# ----------------------------------------------------------------- candidates (vectorized)

_MU = special.expit(np.linspace(special.logit(1e-4), special.logit(1 - 1e-4), 61))
_KAPPA = np.logspace(-1, 4, 26)
_A = (_MU[:, None] * _KAPPA[None, :]).ravel()
_B = ((1 - _MU)[:, None] * _KAPPA[None, :]).ravel()
# Jeffreys prior on the mean (the grid is uniform in logit), log-uniform concentration
_LOGPRIOR = np.log(np.repeat(np.sqrt(_MU * (1 - _MU)), _KAPPA.size))
_LOGPRIOR -= special.logsumexp(_LOGPRIOR)


@dataclass
class _Tables:
    loglik: np.ndarray  # [h, cell]: log P(h of n | cell)
    tail: np.ndarray  # [x, cell]: P(X >= x | cell)


_TABLES: dict[int, _Tables] = {}


def _tables(n: int) -> _Tables:
    if n not in _TABLES:
        h = np.arange(n + 1)[:, None]
        ll = (special.gammaln(n + 1) - special.gammaln(h + 1) - special.gammaln(n - h + 1)
              + special.betaln(h + _A, n - h + _B) - special.betaln(_A, _B))
        pmf = np.exp(ll)
        tail = np.cumsum(pmf[::-1], axis=0)[::-1]
        _TABLES[n] = _Tables(ll, np.minimum(tail, 1.0))
    return _TABLES[n]


def p_rank(x: np.ndarray, h: np.ndarray, n: int) -> np.ndarray:
    k = h.shape[1]
    p = (1 + (h >= x[:, None]).sum(1)) / (k + 1)
    return np.where(x > 0, p, 1.0)


def p_population(x: np.ndarray, h: np.ndarray, n: int) -> np.ndarray:
    k = h.shape[1]
    bound = np.array([lone_claimer_bound(k, j) for j in range(k + 1)])
    j = (h > 0).sum(1)
    lone = x > h.max(1)
    return np.where(lone, np.minimum(bound[j], p_rank(x, h, n)), p_rank(x, h, n))


def p_bb_mom(x: np.ndarray, h: np.ndarray, n: int, rho_min: float = 0.01) -> np.ndarray:
    k = h.shape[1]
    mu = (h.sum(1) + 0.5) / (k * n + 1)
    r = h / n
    s2 = r.var(1, ddof=1) if k > 1 else np.zeros(len(x))
    base = mu * (1 - mu)
    rho = (s2 - base / n) / (base * (1 - 1 / n))
    rho = np.clip(rho, rho_min, 0.999)
    c = 1 / rho - 1
    p = stats.betabinom.sf(x - 1, n, mu * c, (1 - mu) * c)
    return np.where(x > 0, np.clip(p, 0.0, 1.0), 1.0)


def _posterior(h: np.ndarray, n: int, extra: np.ndarray | None = None) -> np.ndarray:
    t = _tables(n)
    lp = _LOGPRIOR[None, :] + t.loglik[h].sum(1)
    if extra is not None:
        lp = lp + t.loglik[extra]
    return np.asarray(lp)


def p_bb_bayes(x: np.ndarray, h: np.ndarray, n: int) -> np.ndarray:
    lp = _posterior(h, n)
    w = np.exp(lp - special.logsumexp(lp, axis=1, keepdims=True))
    p = (w * _tables(n).tail[x]).sum(1)
    return np.where(x > 0, np.clip(p, 0.0, 1.0), 1.0)


def p_bb_bayes_incl(x: np.ndarray, h: np.ndarray, n: int) -> np.ndarray:
    lp = _posterior(h, n, extra=x)
    w = np.exp(lp - special.logsumexp(lp, axis=1, keepdims=True))
    p = (w * _tables(n).tail[x]).sum(1)
    return np.where(x > 0, np.clip(p, 0.0, 1.0), 1.0)


def p_bb_ml(x: np.ndarray, h: np.ndarray, n: int) -> np.ndarray:
    lp = _posterior(h, n) - _LOGPRIOR[None, :]
    best = lp.argmax(1)
    p = _tables(n).tail[x, best]
    return np.where(x > 0, np.clip(p, 0.0, 1.0), 1.0)


def p_logit_t(x: np.ndarray, h: np.ndarray, n: int) -> np.ndarray:
    k = h.shape[1]
    z = np.log((h + 0.5) / (n - h + 0.5))
    zs = np.log((x + 0.5) / (n - x + 0.5))
    v = (1 / (h + 0.5) + 1 / (n - h + 0.5)).mean(1)
    s2 = np.maximum(z.var(1, ddof=1), v) if k > 1 else v
    t = (zs - z.mean(1)) / np.sqrt(s2 * (1 + 1 / k))
    p = stats.t.sf(t, df=max(k - 1, 1))
    return np.where(x > 0, p, 1.0)


Candidate = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def candidates() -> dict[str, Candidate]:
    return {"rank": p_rank, "population": p_population, "bb_mom": p_bb_mom, "bb_ml": p_bb_ml,
            "bb_bayes": p_bb_bayes, "bb_bayes_incl": p_bb_bayes_incl, "logit_t": p_logit_t}


def _score(x: np.ndarray, h: np.ndarray, n: int, chunk: int = 200) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {name: [] for name in candidates()}
    for s in range(0, len(x), chunk):
        for name, f in candidates().items():
            out[name].append(f(x[s:s + chunk], h[s:s + chunk], n))
    return {k: np.concatenate(v) for k, v in out.items()}


# ------------------------------------------------------------------------- experiments


def real_null(mat: np.ndarray, pool_idx: Sequence[int], k: int, n: int, draws: int,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Leave-one-out on real answers: a suspect and K controls, all independent."""
    npr = mat.shape[1]
    x = np.empty(draws, dtype=np.int64)
    h = np.empty((draws, k), dtype=np.int64)
    pool = np.asarray(pool_idx)
    for d in range(draws):
        prompts = rng.choice(npr, size=n, replace=False)
        who = rng.choice(pool, size=k + 1, replace=False)
        counts = mat[np.ix_(who, prompts)].sum(1)
        x[d], h[d] = counts[0], counts[1:]
    return _score(x, h, n)


def sim_null(pool: str, k: int, n: int, draws: int,
             rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Simulated pool: K + 1 independent models' rates, binomial answers."""
    if pool.startswith("mix"):
        pi = 1 / (k + 1) if pool in ("mix_worst", "mix_high") else float(pool[3:])
        lo, hi = (0.8, 1.0) if pool == "mix_high" else (0.10, 0.20)
        fam = rng.random((draws, k + 1)) < pi
        rates = np.where(fam, rng.uniform(lo, hi, (draws, k + 1)), 0.0)
    elif pool == "beta":
        rates = rng.beta(0.3, 10.0, (draws, k + 1))
    else:
        raise ValueError(pool)
    counts = rng.binomial(n, rates)
    return _score(counts[:, 0], counts[:, 1:], n)


def real_power(mat: np.ndarray, suspect: int, pool_idx: Sequence[int], k: int, n: int,
               draws: int, rng: np.random.Generator,
               synthetic_rate: float | None = None) -> dict[str, np.ndarray]:
    npr = mat.shape[1]
    x = np.empty(draws, dtype=np.int64)
    h = np.empty((draws, k), dtype=np.int64)
    pool = np.asarray([i for i in pool_idx if i != suspect])
    for d in range(draws):
        prompts = rng.choice(npr, size=n, replace=False)
        who = rng.choice(pool, size=k, replace=False)
        h[d] = mat[np.ix_(who, prompts)].sum(1)
        x[d] = (rng.binomial(n, synthetic_rate) if synthetic_rate is not None
                else mat[suspect, prompts].sum())
    return _score(x, h, n)


def _fmt_rates(p: dict[str, np.ndarray], alphas: Sequence[float]) -> str:
    cells = []
    for name in candidates():
        cells.append(" ".join(f"{(p[name] <= a).mean():.3f}" for a in alphas))
    return " | ".join(cells)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None,
                    help="the provenance benchmark directory (default: ../shared/provenance-bench)")
    ap.add_argument("--ks", type=int, nargs="+", default=[5, 8, 12], help="numbers of controls")
    ap.add_argument("--ns", type=int, nargs="+", default=[16, 64, 256],
                    help="answers per model (prompts drawn from the 805)")
    ap.add_argument("--draws", type=int, default=2000, help="draws per cell of real answers")
    ap.add_argument("--sim-draws", type=int, default=10000, help="draws per simulated cell")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rates", action="store_true", help="also print every model's claim counts")
    args = ap.parse_args(argv)
    root = args.data or bench_dir()
    if args.data is None and not bench_available():
        print(f"benchmark not found at {root}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    models, ids, mats = claim_matrix(root)
    INDEPENDENT.update(pools(models))
    at = {m: i for i, m in enumerate(models)}
    alphas = (0.05, 0.01)
    names = list(candidates())
    head = " | ".join(f"{nm} @.05 @.01" for nm in names)
    print(f"{len(models)} models, {len(ids)} prompts answered by all ({time.time() - t0:.0f}s)")
    print("population p floor (every control silent), lone_claimer_bound(K, 0): "
          + ", ".join(f"K={k}: {lone_claimer_bound(k, 0):.4f} (rank {1 / (k + 1):.4f})"
                      for k in args.ks))

    print(f"\n## Claim counts of the independent pools (of {len(ids)} answers)")
    for ident, mat in mats.items():
        pool = INDEPENDENT[ident]
        c = sorted((int(mat[at[m]].sum()) for m in pool), reverse=True)
        print(f"{ident:15s} K={len(pool):2d} counts {c}")
        if args.rates:
            for m in models:
                print(f"    {m:34s} {int(mat[at[m]].sum())}")

    print("\n## Real leave-one-out null: FPR of each candidate\n")
    print(f"identity        K    n  x>0 | {head}")
    tot: dict[tuple[int, int], dict[str, list[np.ndarray]]] = {}
    worst: dict[str, dict[str, list[float]]] = {}  # group -> candidate -> [fpr05, fpr01]

    def note(group: str, p: dict[str, np.ndarray]) -> None:
        w = worst.setdefault(group, {nm: [0.0, 0.0] for nm in names})
        for nm in names:
            for i, a in enumerate(alphas):
                w[nm][i] = max(w[nm][i], float((p[nm] <= a).mean()))

    for ident, mat in mats.items():
        pool_idx = [at[m] for m in INDEPENDENT[ident]]
        for k in args.ks:
            if len(pool_idx) < k + 1:
                continue
            for n in args.ns:
                p = real_null(mat, pool_idx, k, n, args.draws, rng)
                share = (p["rank"] < 1).mean()
                print(f"{ident:15s} {k:2d} {n:4d} {share:.2f} | {_fmt_rates(p, alphas)}")
                note("real, per identity", p)
                acc = tot.setdefault((k, n), {nm: [] for nm in names})
                for nm in names:
                    acc[nm].append(p[nm])
    print("\n## Real leave-one-out null, all identities pooled\n")
    print(f"K    n | {head}")
    for (k, n), acc in sorted(tot.items()):
        p = {nm: np.concatenate(v) for nm, v in acc.items()}
        print(f"{k:2d} {n:4d} | {_fmt_rates(p, alphas)}")
        note("real, pooled", p)

    print("\n## Simulated pools: FPR\n")
    print(f"pool        K    n | {head}")
    for pool in ("mix0.05", "mix0.1", "mix0.2", "mix_worst", "mix_high", "beta"):
        for k in args.ks:
            for n in args.ns:
                p = sim_null(pool, k, n, args.sim_draws, rng)
                print(f"{pool:10s} {k:2d} {n:4d} | {_fmt_rates(p, alphas)}")
                note(f"sim {pool}", p)

    print("\n## Power: the owner's models and students as suspects (real answers);"
          " TPR and median p\n")
    print(f"identity        suspect                       kind     K    n | {head} | median p")
    k_pow = 8 if 8 in args.ks else args.ks[0]
    for ident, pos in POSITIVES.items():
        pool_idx = [at[m] for m in INDEPENDENT[ident]]
        for m, kind in pos:
            for n in args.ns:
                p = real_power(mats[ident], at[m], pool_idx, k_pow, n, args.draws // 4, rng)
                med = " ".join(f"{np.median(p[nm]):.2g}" for nm in names)
                print(f"{ident:15s} {m:29s} {kind:7s} {k_pow:2d} {n:4d} | "
                      f"{_fmt_rates(p, alphas)} | {med}")
    print("\n## Power: a synthetic clone claiming in every answer, real controls\n")
    print(f"identity        K    n | {head} | median p")
    for ident in ("openai", "anthropic", "google", "chatgpt_phrase"):
        pool_idx = [at[m] for m in INDEPENDENT[ident]]
        for k in args.ks:
            for n in args.ns:
                p = real_power(mats[ident], -1, pool_idx, k, n, args.draws // 4, rng,
                               synthetic_rate=1.0)
                med = " ".join(f"{np.median(p[nm]):.2g}" for nm in names)
                print(f"{ident:15s} {k:2d} {n:4d} | {_fmt_rates(p, alphas)} | {med}")
    print("\n## Summary: the largest FPR over the cells (K, n[, identity]) of each group\n")
    print(f"{'group':20s} | {head}")
    for group, w in worst.items():
        cells = " | ".join(f"{w[nm][0]:.3f} {w[nm][1]:.3f}" for nm in names)
        print(f"{group:20s} | {cells}")
    print(f"\n({time.time() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
