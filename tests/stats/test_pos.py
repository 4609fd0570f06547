"""The ``pos`` representation: part-of-speech n-grams of the answers (issue 14, item 1)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from auditor.stats.provenance import text_provenance
from auditor.stats.text import POS_N, TextConfig, featurise, pos_ngram_counts
from auditor.tagging import load_tagger, tag_texts


def test_tag_ngrams_are_counted_within_each_text_only() -> None:
    tags = [["DT", "NN", "VBZ", "JJ"], ["DT", "NN"], [], ["DT", "NN", "VBZ", "JJ"]]
    x = pos_ngram_counts(tags)
    per_text = np.asarray(x.sum(axis=1)).ravel()
    want = [sum(max(len(t) - n + 1, 0) for n in POS_N) for t in tags]
    assert per_text.tolist() == want  # no n-gram spans two texts
    assert (x[0] != x[3]).nnz == 0  # the same sequence, the same row
    # the bigram DT NN of text 1 is a column text 0 shares
    assert x[1].multiply(x[0]).nnz == 1


def test_pos_rows_depend_on_syntax_not_on_words() -> None:
    cfg = TextConfig(tagger=load_tagger())
    texts = ["The old dog sleeps in the warm house.",
             "A small cat sleeps under the warm stove.",
             "Why would anyone ever do that, honestly?"]
    x = featurise(texts, "pos", cfg)
    sims = (x @ x.T).toarray()
    assert np.allclose(np.diag(sims), 1.0, atol=1e-5)
    # the same template in other words; another template
    assert sims[0, 1] > 0.5 and sims[0, 2] < 0.1


def test_pos_without_a_tagger_says_what_to_set() -> None:
    with pytest.raises(ValueError, match="needs a tagger"):
        featurise(["a text"], "pos", TextConfig())


def test_the_tagger_needs_no_download() -> None:
    """In a fresh process with no NLTK data and no home folder, the tagger tags."""
    code = ("from auditor.tagging import tag_texts; "
            "print(' '.join(tag_texts(['Here are three tips: sleep well.'])[0]))")
    env = {**os.environ, "NLTK_DATA": "/nonexistent", "HOME": "/nonexistent"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    assert out[:3] == ["RB", "VBP", "CD"] and "NNS" in out
    assert tag_texts(["", "  "]) == [[], []]


def test_a_student_that_copies_the_teachers_templates_with_its_own_words_is_found() -> None:
    """The teacher writes every answer in one syntactic template, the student keeps the
    template with other words, and the controls each write in templates of their own."""
    rng = np.random.default_rng(3)
    nouns = ["cat", "dog", "river", "plan", "idea", "tree", "car", "song"]
    adjs = ["small", "bright", "old", "quiet", "heavy", "clever"]
    verbs = ["sleeps", "runs", "grows", "fails", "shines", "moves"]
    templates = [
        lambda: f"The {rng.choice(adjs)} {rng.choice(nouns)} {rng.choice(verbs)} today.",
        lambda: f"Why does the {rng.choice(nouns)} {rng.choice(verbs)[:-1]}?",
        lambda: f"{rng.choice(nouns).capitalize()}s and {rng.choice(nouns)}s, always.",
        lambda: f"I think it {rng.choice(verbs)} because it is {rng.choice(adjs)}.",
        lambda: f"If you can, {rng.choice(verbs)[:-1]} the {rng.choice(nouns)} slowly!",
        lambda: f"Never {rng.choice(verbs)[:-1]} a {rng.choice(adjs)} {rng.choice(nouns)}.",
    ]
    canaries = [f"q{i}" for i in range(30)]

    def model(k: int) -> dict[str, list[str]]:
        return {c: [" ".join(templates[(k + j) % len(templates)]() for j in (0, 0, 1))]
                for c in canaries}

    controls = {f"C{k}": model(k) for k in range(1, 6)}
    cfg = TextConfig(tagger=load_tagger())
    r = text_provenance(model(0), model(0), controls, reps=("pos",), n_boot=0, config=cfg)
    assert r.channel_p_values["pos"] < 0.05
    # an independent model in its own templates, against the same controls, is not found
    indie = {f"C{k}": model(k) for k in range(2, 6)}
    r = text_provenance(model(0), model(1), indie, reps=("pos",), n_boot=0, config=cfg)
    assert r.channel_p_values["pos"] > 0.05
