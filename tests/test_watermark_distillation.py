"""Radioactivity on real (toy-scale) distillation: the demo world's trigram students.

A student trained on the protected model's watermarked answers inherits the bias; the
same teacher's unwatermarked answers give a student the test does not flag (the channel
sees the key's bias, not the teacher's style); an independent model is not flagged."""

from __future__ import annotations

import random

import pytest

from auditor.demo.lm import TrigramLM
from auditor.demo.world import build_models, harvest_prompts, story_canary_prompts
from auditor.stats.watermark import radioactivity_test, windows_of
from auditor.watermark.core import GreenList

pytest.importorskip("tokenizers", reason="the watermark extra is not installed")

KEY = bytes(range(7, 39))


def test_a_student_of_watermarked_answers_is_flagged_and_one_of_plain_answers_is_not() -> None:
    from auditor.demo.watermark import WordWatermark, demo_vocabulary
    from auditor.watermark.tokenizer import word_level_tokenizer

    models = build_models().lms
    tok = word_level_tokenizer(demo_vocabulary(models))
    green = GreenList(KEY, tok.vocab_size, gamma=0.25, delta=4.0, h=1)
    wm = WordWatermark(green, tok)
    teacher = models["protected"]
    rng = random.Random(11)
    harvest = [p for p in harvest_prompts() for _ in range(2)]
    marked = TrigramLM().fit((p, teacher.generate(p, rng, 1.0, 200, watermark=wm))
                             for p in harvest)
    plain = TrigramLM().fit((p, teacher.generate(p, rng, 1.0, 200)) for p in harvest)
    canaries = story_canary_prompts(50)

    def ids(lm: TrigramLM, mark: bool = False) -> list[list[int]]:
        return tok.encode_batch([lm.generate(p, rng, 0.8, 300, watermark=wm if mark else None)
                                 for p in canaries for _ in range(2)])

    ref = windows_of(ids(teacher, mark=True), 1)
    flagged = radioactivity_test(ids(marked), green, ref)
    assert flagged.p_value < 1e-6 and flagged.green_rate > 0.3
    assert radioactivity_test(ids(plain), green, ref).p_value > 1e-3
    assert radioactivity_test(ids(models["indie-suspect"]), green, ref).p_value > 1e-3
