"""The part-of-speech tagger behind the ``pos`` representation.

The statistics take any tagger (``texts -> tag sequences``, ``auditor.stats.text``); this
module makes one from the rule-based Brill-style tagger that TextBlob ships with its
lexicon (``textblob.en.taggers.PatternTagger``, Penn Treebank tags, MIT licence). It is
installed with the auditor, runs in pure Python on the CPU and needs no download: no NLTK
corpus, no model hub. Measured at about 300 answers a second on this 2-core machine
(BENCHMARKS.md, "Free text, round two").
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from auditor.errors import AuditorError
from auditor.stats.text import Tagger

__all__ = ["load_tagger", "tag_texts"]


@lru_cache(maxsize=1)
def _pattern_tagger() -> object:
    try:
        from textblob.en.taggers import PatternTagger
    except ImportError as exc:  # pragma: no cover - a dependency of the auditor
        raise AuditorError(
            "representation 'pos' needs TextBlob, a dependency of the auditor "
            f"({exc}); reinstall the auditor (pip install -e .)"
        ) from exc
    return PatternTagger()


def tag_texts(texts: Sequence[str]) -> list[list[str]]:
    """Penn Treebank tags of every token of every text, in order."""
    tagger = _pattern_tagger()
    out: list[list[str]] = []
    for t in texts:
        out.append([tag for _, tag in tagger.tag(t)] if t.strip() else [])  # type: ignore[attr-defined]
    return out


def load_tagger() -> Tagger:
    """The tagger for ``TextConfig(tagger=...)``; an error names the fix if it is missing."""
    _pattern_tagger()
    return tag_texts
