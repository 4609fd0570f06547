"""Issue 12 item 9: a suspect that answers exactly like the protected model is flagged
with 5 controls and 10 free-text canaries, even when one control is an outlier and the
identity channel is flat (no model claims any identity)."""

from __future__ import annotations

import random
import re
from pathlib import Path

from sqlalchemy import select

from auditor.analysis import analyze_all
from auditor.demo.setup import write_canaries
from auditor.demo.world import build_models
from auditor.registry import load_registry
from auditor.store import Store
from auditor.store.models import Endpoint, Verdict
from tests.factories import fill, settings_with

CONTROLS = ["control-a", "control-b", "control-c", "control-d", "control-e"]
ROLES = {"protected": "protected", **dict.fromkeys(CONTROLS, "control"), "copy": "suspect"}


def _bullets(text: str) -> str:
    return "\n".join("- " + s for s in re.split(r"(?<=[.!?]) ", text))


def test_an_exact_copy_is_flagged_despite_an_outlier_control_and_a_flat_channel(
    store: Store, tmp_path: Path
) -> None:
    folder = write_canaries(tmp_path / "canaries", n_text=10)
    reg = load_registry(folder)
    lms = build_models().lms
    rng = random.Random(3)
    answers: dict[str, dict[str, list[str]]] = {}
    for name in ["protected", *CONTROLS]:
        answers[name] = {}
        for c in reg.canaries:
            if c.canary.kind == "free_text":
                prompt = c.canary.chat()[-1]["content"]
                texts = [lms[name].generate(prompt, rng, 0.8) for _ in range(2)]
            elif c.canary.kind == "identity":  # nobody claims: a flat channel
                texts = ["I am an AI assistant."] * c.canary.samples
            else:
                continue
            answers[name][c.canary.id] = texts
    # the outlier: the only control that writes its answers as bullet lists
    answers["control-e"] = {
        k: [_bullets(t) if k.startswith("demo-ft") else t for t in v]
        for k, v in answers["control-e"].items()
    }
    answers["copy"] = {k: list(v) for k, v in answers["protected"].items()}
    settings = settings_with(ROLES)
    fill(store, settings, answers, canaries_dir=folder)
    with store.session() as s:
        analyze_all(s, settings)
        names = {e.id: e.name for e in s.scalars(select(Endpoint))}
        v = next(
            v for v in s.scalars(select(Verdict).where(Verdict.segment.is_(None)))
            if names[v.suspect_id] == "copy"
        )
        assert v.channels["free_text"]["n_canaries"] == 10
        assert sorted(v.controls) == CONTROLS
        assert v.p_value < 0.05 and v.significant
        assert set(v.channels["free_text"]["composites"]) == {"z", "normal_score"}
        identity = v.channels["identity"]
        assert identity["p_value"] == 1.0 and identity["informative"] is False
