"""The configured watermark, ready for detection: the protected model's tokenizer and one
green list per configured key (``[watermark]`` and ``[[watermark.keys]]``).

Keys are read from their environment variable or 0600 file here and kept only in the
``GreenList`` objects, which never show them (not in ``repr``, not in results).
"""

from __future__ import annotations

__all__ = ["Scheme", "load_scheme"]

from dataclasses import dataclass

from auditor.config import Settings
from auditor.errors import AuditorError, Problem
from auditor.watermark.core import GreenList
from auditor.watermark.keys import key_id, load_key
from auditor.watermark.tokenizer import ModelTokenizer, load_tokenizer


@dataclass
class Scheme:
    tokenizer: ModelTokenizer
    greens: list[GreenList]
    key_ids: list[str]
    filter: bool
    score: str = "distinct"

    @property
    def h(self) -> int:
        return self.greens[0].h

    @property
    def gamma(self) -> float:
        return self.greens[0].gamma


def load_scheme(settings: Settings) -> Scheme | None:
    """None when no watermark key is configured (the channel is not used); an
    :class:`AuditorError` naming the setting and the fix when detection cannot run."""
    wm = settings.watermark
    if not wm.keys:
        return None
    if not wm.tokenizer:
        raise AuditorError("watermark.tokenizer is not set", [Problem(
            "[[watermark.keys]] are configured but detection needs the protected model's "
            "tokenizer", file=settings.source,
            fix='add tokenizer = "path/to/tokenizer.json" under [watermark]')])
    tok = load_tokenizer(settings.path(wm.tokenizer), "watermark.tokenizer", settings.source)
    vocab = wm.vocab_size or tok.vocab_size
    if vocab < tok.vocab_size:
        raise AuditorError(f"watermark.vocab_size = {vocab} is smaller than the tokenizer's "
                           f"{tok.vocab_size} ids", [Problem(
                               "the green lists must span every id the tokenizer gives",
                               file=settings.source,
                               fix="remove vocab_size, or set it to the model's n_vocab")])
    greens, ids = [], []
    for k in wm.keys:
        key = load_key(env=k.env, file=settings.path(k.file) if k.file else None)
        if key_id(key) != k.id:
            raise AuditorError(f"watermark key {k.id}: the key there has another id", [Problem(
                "the configured source holds a different key", file=settings.source,
                fix="point env/file at the right key, or correct the id "
                "(`auditor watermark id` checks them all)")])
        greens.append(GreenList(key, vocab, gamma=wm.gamma, delta=wm.delta, h=wm.h))
        ids.append(k.id)
    return Scheme(tok, greens, ids, wm.filter, wm.score)
