"""The protected model's tokenizer for detection: a tokenizer.json read through
`tokenizers` (a BPE trained here, in memory, as a model's own would be)."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditor.errors import AuditorError
from auditor.watermark.tokenizer import load_tokenizer, word_level_tokenizer

tokenizers = pytest.importorskip("tokenizers", reason="the watermark extra is not installed")

TEXT = ["The river runs past the old mill, and the mill wheel turns.",
        "Tides rise and fall twice a day because the moon pulls the sea.",
        "A robot learned to garden: it watered the beans every morning."] * 20


def _bpe(tmp_path: Path) -> Path:
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]", "<s>"],
                                             initial_alphabet=tokenizers.pre_tokenizers
                                             .ByteLevel.alphabet())
    tok.train_from_iterator(TEXT, trainer)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path


def test_a_bpe_tokenizer_json_gives_the_models_ids_without_special_tokens(
        tmp_path: Path) -> None:
    tok = load_tokenizer(_bpe(tmp_path))
    ids = tok.encode("The moon pulls the river.")
    assert ids and all(0 <= i < tok.vocab_size for i in ids)
    assert tok.id_of("<s>") not in ids
    assert tok.encode_batch(["The moon", "pulls"]) == [tok.encode("The moon"),
                                                       tok.encode("pulls")]
    assert len(tok.encode(TEXT[0])) < len(TEXT[0])  # merges learnt: fewer ids than bytes


def test_the_demo_word_tokenizer_splits_words_and_punctuation_and_round_trips(
        tmp_path: Path) -> None:
    tok = word_level_tokenizer(["Hello", ",", "world", "!", "don't"])
    assert tok.encode("Hello, world! don't  stop") == [1, 2, 3, 4, 5, 0]  # stop: [UNK]
    tok.save(tmp_path / "t.json")
    again = load_tokenizer(tmp_path / "t.json")
    assert again.encode("Hello, world!") == [1, 2, 3, 4] and again.vocab_size == 6


def _gguf(path: Path, model: str, tokens: list[str], merges: list[str]) -> Path:
    gguf = pytest.importorskip("gguf", reason="the watermark extra is not installed")
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tokenizer_model(model)
    w.add_token_list(tokens)
    if merges:
        w.add_token_merges(merges)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_gguf_byte_level_vocabulary_tokenizes_as_the_models_tokenizer_json(
        tmp_path: Path) -> None:
    import json

    src = load_tokenizer(_bpe(tmp_path))
    model = json.loads((tmp_path / "tokenizer.json").read_text())["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    tok = load_tokenizer(_gguf(tmp_path / "model.gguf", "gpt2", tokens, merges))
    assert tok.vocab_size == len(tokens)
    for text in ("The moon pulls the river.", TEXT[1], "A robot, a garden!"):
        assert tok.encode(text) == src.encode(text)


def test_a_gguf_sentencepiece_vocabulary_or_a_missing_file_is_refused_with_the_fix(
        tmp_path: Path) -> None:
    with pytest.raises(AuditorError, match="watermark.tokenizer") as err:
        load_tokenizer(tmp_path / "missing.json")
    assert "fix:" in str(err.value)
    spm = _gguf(tmp_path / "gemma.gguf", "llama", ["<unk>", "a", "b"], [])
    with pytest.raises(AuditorError, match="'llama' tokenizer") as err:
        load_tokenizer(spm)
    assert "tokenizer.json" in str(err.value)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF\x03\x00\x00\x00")
    with pytest.raises(AuditorError, match="no readable GGUF vocabulary"):
        load_tokenizer(junk)
