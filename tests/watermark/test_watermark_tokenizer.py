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


def test_a_gguf_or_a_missing_file_is_refused_with_the_setting_and_fix(tmp_path: Path) -> None:
    with pytest.raises(AuditorError, match="watermark.tokenizer") as err:
        load_tokenizer(tmp_path / "missing.json")
    assert "fix:" in str(err.value)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00")
    with pytest.raises(AuditorError, match="GGUF") as err:
        load_tokenizer(gguf)
    assert "tokenizer.json" in str(err.value)
