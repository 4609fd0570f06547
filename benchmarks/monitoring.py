"""Monitoring power and validity in simulated worlds, through the product's own analysis.

Each world has a protected model, ``5..8`` independent controls and one suspect, all the
demo's ``Persona`` models (``auditor.demo.lm``), fixed for the whole world. Every cycle
sends new free-text canaries (``--canaries`` per cycle, ``--samples`` answers each) to
every model; the evidence so far goes through ``stats.canary_similarities`` and
``stats.provenance_test`` exactly as ``analysis.analyze_all`` runs them, and the
suspect's monitor is updated as ``analysis._update_monitor`` does it. The suspect is:

- ``null``: an independent persona (the realistic null: one fixed model, not redrawn);
- ``clone``: a persona with every habit of the protected model (its own random answers);
- ``partial``: a student that inherits each habit of the protected model with
  probability ``--inherit`` (0.8) and has its own otherwise.

    python -m benchmarks.monitoring                       # moderate default size
    python -m benchmarks.monitoring --worlds null=500,clone=200,partial=200 \\
        --cycles null=64,clone=32,partial=64
    python -m benchmarks.monitoring --bench --batch 10 --batches 40 --seeds 3

Prints one line per setting::

    monitor world=null|clone|partial worlds=W cycles=C alarm_rate=x.xxx \
        fixed_p_rate=x.xxx median_cycles_to_alarm=N|never       (on one line)

``alarm_rate``: share of worlds whose monitor alarmed by the last cycle (looked at after
every cycle); ``fixed_p_rate``: share whose fixed-sample p <= alpha at the last cycle;
``median_cycles_to_alarm``: median over all worlds of the cycle of the first alarm
(``never`` when fewer than half alarmed). ``--bench`` replays the real benchmark's cases
(``../shared/provenance-bench``; its controls scored as pseudo-suspects are extra
negatives) as streams of ``--batch`` new canaries a cycle, one answer each, and prints
the same line with ``case=positive|negative cases=K``. ``--json`` keeps every p-value;
``--replay`` runs today's monitor again on such a file.

Each cycle's new canaries go through the similarity pass once, pooled over ``--pool``
worlds (models and canaries named per world), and each world's part is appended to the
tensor of its earlier canaries. Per-canary similarities are those of one pass over each
world's whole evidence except that the TF-IDF weights and the style scaling are fitted
on the cycle's pooled texts instead of on all of one world's texts; rerunning the pass
over everything every cycle, as the daemon does, is quadratic in the cycles and too slow
for hundreds of worlds. The provenance test, its p-value and the monitor's input are the
product's own.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from auditor import stats
from auditor.demo.lm import Persona
from auditor.demo.world import TEMPLATES, TOPICS
from auditor.stats import monitor
from auditor.stats.similarity import SimilarityTensor
from benchmarks.bench_data import (
    bench_available,
    bench_dir,
    common_prompt_ids,
    draw_canaries,
    load_cases,
    load_outputs,
)
from benchmarks.stats_experiments import jobs

__all__ = ["World", "main", "make_world", "replay_bench", "run_world", "run_worlds", "watch"]

KINDS = ("null", "clone", "partial")
HABITS = ("openers", "closers", "frames", "numbers", "colours", "animals")
REPS = ("word", "layout", "style")  # the default of config.Analysis.representations


@dataclass
class World:
    protected: Persona
    controls: list[Persona]
    suspect: Persona
    prompts: list[str]
    rng: random.Random


def _student(teacher: Persona, own: Persona, inherit: float, rng: random.Random) -> Persona:
    """A persona that takes each of the teacher's habits with probability ``inherit``."""
    words = {k: teacher.words[k] if rng.random() < inherit else v for k, v in own.words.items()}
    lists = {h: getattr(teacher if rng.random() < inherit else own, h) for h in HABITS}
    return Persona(own.name, own.maker, own.seed, words=words, **lists)


def make_world(kind: str, seed: int, inherit: float = 0.8) -> World:
    rng = random.Random(seed)
    m = rng.randint(5, 8)
    seeds = rng.sample(range(1, 10**9), m + 2)
    protected = Persona("P", "p-maker", seeds[0])
    controls = [Persona(f"C{i}", f"c{i}-maker", s) for i, s in enumerate(seeds[1 : m + 1])]
    own = Persona("S", "s-maker", seeds[-1])
    suspect = {
        "null": own,
        "clone": _student(protected, own, 1.0, rng),
        "partial": _student(protected, own, inherit, rng),
    }[kind]
    prompts = [t.format(t=topic) for topic in TOPICS for t in TEMPLATES]
    rng.shuffle(prompts)
    return World(protected, controls, suspect, prompts, rng)


def _models(w: World) -> dict[str, Persona]:
    return {"P": w.protected, **{f"C{i}": c for i, c in enumerate(w.controls)}, "S": w.suspect}


def _append(old: SimilarityTensor | None, new: SimilarityTensor) -> SimilarityTensor:
    """``old`` with ``new``'s canaries added (same models and representations)."""
    if old is None:
        return new
    style = (None if old.style is None or new.style is None
             else np.concatenate([old.style, new.style]))
    return SimilarityTensor(old.models, old.canaries + new.canaries, old.reps,
                            np.concatenate([old.sims, new.sims], axis=1),
                            np.concatenate([old.counts, new.counts]), style)


def _select(sim: SimilarityTensor, prefix: str) -> SimilarityTensor:
    """The part of a pooled tensor that belongs to one world (names without the prefix)."""
    mi = [i for i, m in enumerate(sim.models) if m.startswith(prefix)]
    qi = [i for i, c in enumerate(sim.canaries) if c.startswith(prefix)]
    sims = sim.sims[:, qi][:, :, mi][:, :, :, mi]
    style = None if sim.style is None else sim.style[qi][:, mi]
    return SimilarityTensor(tuple(sim.models[i][len(prefix):] for i in mi),
                            tuple(sim.canaries[i] for i in qi), sim.reps, sims,
                            sim.counts[qi][:, mi], style)


def run_worlds(
    worlds: Sequence[World],
    cycles: int,
    per_cycle: int = 2,
    samples: int = 2,
    alpha: float = 0.05,
) -> list[dict[str, object]]:
    """Runs the cycles of several worlds side by side; for each world, the p-value and
    sample count after each cycle, the monitor's e-values and its first alarm."""
    sims: list[SimilarityTensor | None] = [None] * len(worlds)
    ps: list[list[float]] = [[] for _ in worlds]
    for cycle in range(1, cycles + 1):
        new: dict[str, dict[str, list[str]]] = {}
        for k, w in enumerate(worlds):
            for i in range(per_cycle):
                prompt = w.prompts[((cycle - 1) * per_cycle + i) % len(w.prompts)]
                for name, persona in _models(w).items():
                    new.setdefault(f"w{k}:{name}", {})[f"w{k}:q{cycle}-{i}"] = [
                        persona.answer(prompt, w.rng) for _ in range(samples)
                    ]
        # one similarity pass over the cycle's new canaries of every world (see above)
        pooled = stats.canary_similarities(new, reps=REPS)
        for k in range(len(worlds)):
            sim = sims[k] = _append(sims[k], _select(pooled, f"w{k}:"))
            controls = [m for m in sim.models if m.startswith("C")]
            # n_boot=0: the bootstrap interval of the effect does not change the p-value
            res = stats.provenance_test(sim, "P", "S", controls, reps=sim.reps, seed=0,
                                        n_boot=0)
            ps[k].append(res.p_value)
    # analysis.PairResult.n_samples: the suspect's answers on the canaries so far
    ns = [per_cycle * samples * c for c in range(1, cycles + 1)]
    return [{"p": p, "n": ns, **watch(p, ns, alpha)} for p in ps]


def run_world(w: World, cycles: int, **kw: object) -> dict[str, object]:
    return run_worlds([w], cycles, **kw)[0]  # type: ignore[arg-type]


def watch(ps: Sequence[float], ns: Sequence[int], alpha: float) -> dict[str, object]:
    """The monitor fed one cycle at a time as ``analysis._update_monitor`` feeds it, looked
    at after every cycle: its e-values and the first cycle that alarmed."""
    state = monitor.start(monitor.HALF_N, ns[0])
    es, first = [], None
    for cycle, (p, n) in enumerate(zip(ps, ns, strict=True), start=1):
        state = monitor.update(state, p, n, f"cycle-{cycle}")
        es.append(monitor.e_value(state))
        if first is None and monitor.alarm(state, alpha):
            first = cycle
    return {"e": es, "first_alarm": first}


def replay_bench(
    seed: int, batch: int, batches: int, alpha: float
) -> dict[str, list[dict[str, object]]]:
    """The real benchmark's cases (and controls as pseudo-suspects) as canary streams:
    ``batch`` new canaries a cycle, one answer each, for ``batches`` cycles."""
    cf = load_cases()
    models = cf.models()
    canaries = draw_canaries(common_prompt_ids(models), batch * batches, seed)
    outs = {m: load_outputs(m) for m in models}
    todo = jobs(cf)
    ps: list[list[float]] = [[] for _ in todo]
    sim = None
    for b in range(batches):
        new = canaries[b * batch : (b + 1) * batch]
        sim = _append(sim, stats.canary_similarities(
            {m: {c: [outs[m][c]] for c in new} for m in models}, new, reps=REPS))
        for k, (p, s, ctrl, _) in enumerate(todo):
            ps[k].append(stats.provenance_test(sim, p, s, ctrl, reps=sim.reps, n_boot=0).p_value)
    ns = [batch * (b + 1) for b in range(batches)]
    out: dict[str, list[dict[str, object]]] = {"positive": [], "negative": []}
    for (_, _, _, y), p_k in zip(todo, ps, strict=True):
        out["positive" if y else "negative"].append({"p": p_k, "n": ns, **watch(p_k, ns, alpha)})
    return out


def summarise(kind: str, runs: Sequence[dict], cycles: int, alpha: float,
              label: str = "world") -> str:
    firsts = [r["first_alarm"] for r in runs]
    alarm_rate = sum(f is not None for f in firsts) / len(runs)
    fixed = sum(r["p"][-1] <= alpha for r in runs) / len(runs)
    ordered = sorted(f if f is not None else cycles + 1 for f in firsts)
    med = ordered[(len(ordered) - 1) // 2]
    median = str(med) if med <= cycles else "never"
    return (
        f"monitor {label}={kind} {label}s={len(runs)} cycles={cycles} "
        f"alarm_rate={alarm_rate:.3f} fixed_p_rate={fixed:.3f} median_cycles_to_alarm={median}"
    )


def _per_kind(text: str, cast: type) -> dict[str, object]:
    out = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        if k not in KINDS:
            raise SystemExit(f"unknown world {k!r}: choose from {', '.join(KINDS)}")
        out[k] = cast(v)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worlds", default="null=200,clone=100,partial=100",
                    help="worlds per setting, e.g. null=500,clone=200,partial=200")
    ap.add_argument("--cycles", default="null=32,clone=32,partial=64",
                    help="cycles per setting, e.g. null=64,clone=32,partial=64")
    ap.add_argument("--canaries", type=int, default=2, help="new canaries per cycle")
    ap.add_argument("--samples", type=int, default=2, help="answers per canary and model")
    ap.add_argument("--inherit", type=float, default=0.8, help="partial student's inheritance")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pool", type=int, default=25,
                    help="worlds whose new canaries share one similarity pass")
    ap.add_argument("--json", type=Path, help="write every world's p and e trajectory here")
    ap.add_argument("--replay", type=Path,
                    help="re-run today's monitor on the p-values of an earlier --json file")
    ap.add_argument("--bench", action="store_true",
                    help="replay the real benchmark's cases (../shared/provenance-bench) as "
                         "canary streams instead of simulating worlds")
    ap.add_argument("--batch", type=int, default=10, help="--bench: new canaries a cycle")
    ap.add_argument("--batches", type=int, default=40, help="--bench: cycles")
    ap.add_argument("--seeds", type=int, default=3, help="--bench: canary draws")
    a = ap.parse_args(argv)
    if a.bench:
        if not bench_available():
            raise SystemExit(f"the provenance benchmark is not at {bench_dir()} "
                             "(set PROVENANCE_BENCH to its folder)")
        pooled: dict[str, list[dict[str, object]]] = {"positive": [], "negative": []}
        for seed in range(a.seeds):
            for kind, runs in replay_bench(seed, a.batch, a.batches, a.alpha).items():
                pooled[kind] += runs
        for kind, runs in pooled.items():
            print(summarise(kind, runs, a.batches, a.alpha, label="case"), flush=True)
        if a.json:
            a.json.write_text(json.dumps(pooled))
        return 0
    if a.replay:
        for kind, runs in json.loads(a.replay.read_text()).items():
            runs = [{**r, **watch(r["p"], r["n"], a.alpha)} for r in runs]
            label = "case" if kind in ("positive", "negative") else "world"
            print(summarise(kind, runs, len(runs[0]["p"]), a.alpha, label), flush=True)
        return 0
    worlds, cycles = _per_kind(a.worlds, int), _per_kind(a.cycles, int)
    dump = {}
    for k, kind in enumerate(KINDS):
        if kind not in worlds:
            continue
        c = int(cycles.get(kind, 32))
        seeds = [a.seed * 1_000_003 + k * 100_000 + i for i in range(int(worlds[kind]))]
        runs = []
        for b in range(0, len(seeds), a.pool):
            runs += run_worlds([make_world(kind, s, a.inherit) for s in seeds[b : b + a.pool]],
                               c, a.canaries, a.samples, a.alpha)
        print(summarise(kind, runs, c, a.alpha), flush=True)
        dump[kind] = runs
    if a.json:
        a.json.write_text(json.dumps(dump))
    return 0


if __name__ == "__main__":
    sys.exit(main())
