"""The protected model's tokenizer, for detection: text -> the token ids the green lists
are defined over.

A ``tokenizer.json`` (Hugging Face ``tokenizers`` format, what most open models ship) is
read through the ``tokenizers`` package, an optional dependency
(``pip install 'canary-auditor[watermark]'``); a GGUF model file's byte-level BPE
vocabulary through the ``gguf`` package (same extra). ``word_level_tokenizer`` builds one from a
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
        return _from_gguf(path, setting, config_file)
    tk = _tokenizers(setting)
    try:
        tok = tk.Tokenizer.from_file(str(path))
    except Exception as exc:  # the package raises a bare Exception on a bad file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AuditorError(f"{setting}: {path} is not a tokenizer.json", [Problem(
            f"the tokenizers package could not read it: {first}", file=config_file,
            fix="point it to a tokenizer.json in the Hugging Face tokenizers format")]) from None
    return ModelTokenizer(tok, str(path))


def _from_gguf(path: Path, setting: str, config_file: str | None) -> ModelTokenizer:
    """The vocabulary of a GGUF model file (the `gguf` package reads it). Only byte-level
    BPE vocabularies (``tokenizer.ggml.model = "gpt2"``: Llama 3, Qwen, Mistral Nemo...)
    are rebuilt, with GPT-2's pre-tokenizer split; SentencePiece ones (``"llama"``:
    Llama 2, Gemma) need the model's tokenizer.json."""
    try:
        import gguf
    except ImportError:
        raise AuditorError(f"{setting}: reading a GGUF needs the `gguf` package", [Problem(
            f"{setting} names a GGUF model file", file=config_file,
            fix="pip install 'canary-auditor[watermark]' (or use the model's "
            "tokenizer.json)")]) from None
    try:
        reader = gguf.GGUFReader(str(path))
        fields = reader.fields
        model = str(fields["tokenizer.ggml.model"].contents())
        tokens = [str(t) for t in fields["tokenizer.ggml.tokens"].contents()]
        merges = ([str(m) for m in fields["tokenizer.ggml.merges"].contents()]
                  if "tokenizer.ggml.merges" in fields else [])
    except Exception as exc:  # not a GGUF, or one without a vocabulary
        raise AuditorError(f"{setting}: {path} holds no readable GGUF vocabulary", [Problem(
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            file=config_file, fix="point it to the model's tokenizer.json")]) from None
    if model != "gpt2" or not merges:
        raise AuditorError(f"{setting}: {path} has a {model!r} tokenizer", [Problem(
            "only byte-level BPE vocabularies (tokenizer.ggml.model = \"gpt2\") are read "
            "from a GGUF", file=config_file,
            fix="point it to the model's tokenizer.json (from its original release)")])
    tk = _tokenizers(setting)
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = tk.Tokenizer(tk.models.BPE(vocab, pairs))
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    out = ModelTokenizer(tok, str(path))
    out.vocab_size = max(out.vocab_size, len(tokens))
    return out


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
