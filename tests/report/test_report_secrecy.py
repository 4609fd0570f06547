"""No API key and no sealed canary's prompt appears anywhere in a bundle."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfReader

from auditor.bundle import write_bundle
from auditor.report import ReportRequest
from auditor.signing import load_private_key
from tests.report.world import API_KEYS, build_world, secret_prompt


def _texts(bundle: Path) -> dict[str, str]:
    """Every file as text; the PDF also as its extracted text (its streams are compressed)."""
    out = {}
    for p in bundle.iterdir():
        out[p.name] = p.read_bytes().decode("utf-8", errors="replace")
        if p.suffix == ".pdf":
            out[p.name + " (text)"] = "\n".join(pg.extract_text() for pg in PdfReader(p).pages)
    return out


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    for name, value in API_KEYS.items():
        monkeypatch.setenv(name, value)
    world = build_world(tmp_path, n_canaries=6, public={4})
    with world.store.session() as s:
        result = write_bundle(s, world.settings, ReportRequest("sus", unseal=("ft-canary-0002",)),
                              load_private_key(world.settings.signing.key_path),
                              out_dir=tmp_path / "out")
    world.store.close()
    return result.path, result.zip_path


def test_no_api_key_appears_in_any_file(bundle: tuple[Path, Path]) -> None:
    for name, text in _texts(bundle[0]).items():
        for key in API_KEYS.values():
            assert key not in text, f"{key} leaked into {name}"
            assert "THISMUSTNEVERLEAK" not in text, name


def test_sealed_canary_prompts_appear_nowhere(bundle: tuple[Path, Path]) -> None:
    texts = _texts(bundle[0])
    for i in (0, 1, 3, 5):  # sealed: neither unsealed nor public
        for name, text in texts.items():
            assert secret_prompt(i) not in text, f"canary {i} leaked into {name}"
            assert f"riddle {i:04d}" not in text, f"canary {i} leaked into {name}"


def test_zip_members_hold_no_secret(bundle: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(bundle[1]) as zf:
        for info in zf.infolist():
            data = zf.read(info).decode("utf-8", errors="replace")
            assert "THISMUSTNEVERLEAK" not in data and secret_prompt(0) not in data


def test_unsealed_and_public_canaries_are_shown(bundle: tuple[Path, Path]) -> None:
    """The scan above would find a prompt: the two that may be shown are there."""
    texts = _texts(bundle[0])
    assert "riddle 0002" in texts["report.pdf (text)"]
    assert "riddle 0002" in texts["canaries.json"]
    assert "riddle 0004" in texts["canaries.json"]


@pytest.fixture
def quoting(tmp_path: Path) -> tuple[Path, int]:
    """A control that quotes the prompt back, whole or in part, for every canary."""
    from datetime import timedelta

    from sqlalchemy import select

    from auditor.importer import ImportRecord, import_records
    from auditor.store.models import Endpoint
    from tests.report.world import START

    world = build_world(tmp_path, n_canaries=6, public={4})
    with world.store.session() as s:
        ctl = s.scalars(select(Endpoint).where(Endpoint.name == "ctl-alpha")).one()
        records = [ImportRecord(canary_id=f"ft-canary-{i:04d}", sample_index=k,
                                text=text, collected_at=START + timedelta(hours=20, minutes=i))
                   for i in range(6) for k, text in (
                       (5, f'You asked: "{secret_prompt(i)}" Here it is.'),
                       (6, "Sure, I will " + secret_prompt(i).split(": ", 1)[1].lower()))]
        import_records(s, ctl, records, source="quoting.jsonl")
    with world.store.session() as s:
        result = write_bundle(s, world.settings, ReportRequest("sus", unseal=("ft-canary-0002",)),
                              load_private_key(world.settings.signing.key_path),
                              out_dir=tmp_path / "out")
    world.store.close()
    # all six canaries' quotes: the open ones share their last eight words with sealed ones
    return result.path, 6 * 2


def test_answers_quoting_a_sealed_prompt_are_redacted(quoting: tuple[Path, int]) -> None:
    from auditor.bundle import verify_bundle

    bundle, expected = quoting
    texts = _texts(bundle)
    for i in (0, 1, 3, 5):
        for name, text in texts.items():
            assert f"riddle {i:04d}" not in text, f"canary {i} leaked into {name}"
    rows = [json.loads(line) for line in (bundle / "evidence.jsonl").read_text().splitlines()]
    marked = [r for r in rows if r.get("redaction")]
    assert len(marked) == expected
    assert all("[REDACTED" in r["record"]["text"] for r in marked)
    # what the open canaries alone say stays: they are public or unsealed
    assert any("riddle 0002" in r["record"]["text"] for r in marked)
    check = verify_bundle(bundle)
    assert check.redacted == expected
    assert "redacted" in " ".join(texts["report.pdf (text)"].split())
