"""The protected model's tokenizer, for detection: text -> the token ids the green lists
are defined over.

A ``tokenizer.json`` (Hugging Face ``tokenizers`` format, what most open models ship) is
read through the ``tokenizers`` package, an optional dependency
(``pip install 'canary-auditor[watermark]'``). ``word_level_tokenizer`` builds one from a
word vocabulary (the demo's protected model uses it, and exports it as tokenizer.json so
that detection goes through the same path as for a real model).
"""

from __future__ import annotations

__all__ = ["ModelTokenizer", "load_tokenizer", "word_level_tokenizer"]

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from auditor.errors import AuditorError, Problem

WORD_PATTERN = r"[^\w\s']"  # the demo's words: runs of word characters, single punctuation
UNK = "[UNK]"


class ModelTokenizer:
    """``encode(text) -> ids`` without special tokens, and the vocabulary size."""

    def __init__(self, tok: Any, source: str) -> None:
        self._tok = tok
        self.source = source
        self.vocab_size = int(tok.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(e.ids) for e in self._tok.encode_batch(list(texts),
                                                             add_special_tokens=False)]

    def id_of(self, token: str) -> int | None:
        out = self._tok.token_to_id(token)
        return None if out is None else int(out)

    def save(self, path: Path) -> None:
        self._tok.save(str(path))


def _tokenizers(setting: str) -> Any:
    try:
        import tokenizers
    except ImportError:
        raise AuditorError("the watermark's tokenizer needs the `tokenizers` package", [Problem(
            f"{setting} names a tokenizer.json, read with the `tokenizers` package, which is "
            "not installed", fix="pip install 'canary-auditor[watermark]' (or pip install "
            "'tokenizers>=0.20,<1')")]) from None
    return tokenizers


def load_tokenizer(path: Path, setting: str = "watermark.tokenizer",
                   config_file: str | None = None) -> ModelTokenizer:
    """The tokenizer in ``path`` (a tokenizer.json); every error names ``setting``."""
    if not path.is_file():
        raise AuditorError(f"{setting}: {path} is not a file", [Problem(
            f"{setting} = {str(path)!r}: no such file", file=config_file,
            fix="point it to the protected model's tokenizer.json (the one its serving "
            "stack tokenizes with)")])
    if path.suffix.lower() == ".gguf":
        raise AuditorError(f"{setting}: {path} is a GGUF model file", [Problem(
            "reading the tokenizer out of a GGUF is not supported yet", file=config_file,
            fix="use the model's tokenizer.json (from the model's original release)")])
    tk = _tokenizers(setting)
    try:
        tok = tk.Tokenizer.from_file(str(path))
    except Exception as exc:  # the package raises a bare Exception on a bad file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AuditorError(f"{setting}: {path} is not a tokenizer.json", [Problem(
            f"the tokenizers package could not read it: {first}", file=config_file,
            fix="point it to a tokenizer.json in the Hugging Face tokenizers format")]) from None
    return ModelTokenizer(tok, str(path))


def word_level_tokenizer(words: Sequence[str]) -> ModelTokenizer:
    """A word-level tokenizer over ``words`` (``[UNK]`` is id 0): words split at white
    space, each punctuation mark a token of its own."""
    tk = _tokenizers("the demo's tokenizer")
    vocab = {UNK: 0}
    for w in words:
        vocab.setdefault(w, len(vocab))
    tok = tk.Tokenizer(tk.models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = tk.pre_tokenizers.Sequence([
        tk.pre_tokenizers.Split(tk.Regex(r"\s+"), behavior="removed"),
        tk.pre_tokenizers.Split(tk.Regex(WORD_PATTERN), behavior="isolated"),
    ])
    return ModelTokenizer(tok, "word-level")
