"""The rendered report: the PDF's first page says what matters, the HTML is well formed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import html5lib
import pytest
from pypdf import PdfReader

from auditor.bundle import BundleResult, write_bundle
from auditor.report import ReportRequest, fmt_p
from auditor.signing import load_private_key
from tests.report.world import World, build_world


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, BundleResult]]:
    tmp = tmp_path_factory.mktemp("render")
    world = build_world(tmp, n_canaries=6)
    with world.store.session() as s:
        result = write_bundle(s, world.settings, ReportRequest("sus"),
                              load_private_key(world.settings.signing.key_path),
                              out_dir=tmp / "out", formats=("html", "pdf"))
    yield world, result
    world.store.close()


def _page_text(pdf: Path, page: int) -> str:
    return PdfReader(pdf).pages[page].extract_text()


def test_pdf_page_one_names_verdict_suspect_and_manifest_hash(rendered) -> None:
    _, result = rendered
    text = _page_text(result.path / "report.pdf", 0)
    assert "SIGNIFICANT" in text and "NOT SIGNIFICANT" not in text
    assert "sus" in text and "prot" in text
    assert result.manifest_sha256 in re.sub(r"\s+", "", text)


def test_pdf_page_one_states_the_p_value_in_plain_words(rendered) -> None:
    _, result = rendered
    text = _page_text(result.path / "report.pdf", 0)
    assert "What it does not mean" in text
    assert "1 in 310,000" in text


def test_pdf_has_certification_and_verification_sections(rendered) -> None:
    _, result = rendered
    reader = PdfReader(result.path / "report.pdf")
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert "902(13)" in text and "penalty of perjury" in text
    assert "sha256sum -c SHA256SUMS" in text and "openssl pkeyutl" in text


def test_html_parses_strictly(rendered) -> None:
    _, result = rendered
    parser = html5lib.HTMLParser(strict=True)
    doc = parser.parse((result.path / "report.html").read_bytes())
    assert doc is not None and not parser.errors


def test_html_names_its_manifest_hash(rendered) -> None:
    _, result = rendered
    html = (result.path / "report.html").read_text()
    assert f'<meta name="manifest-sha256" content="{result.manifest_sha256}">' in html


def test_html_embeds_the_timeline_figure(rendered) -> None:
    _, result = rendered
    assert 'src="data:image/svg+xml;base64,' in (result.path / "report.html").read_text()


def test_not_significant_verdict_reads_as_such(tmp_path: Path) -> None:
    world = build_world(tmp_path, n_canaries=3)
    from tests.report.world import START, add_verdict, timedelta

    add_verdict(world.store, 3, START + timedelta(days=9), p=0.4, significant=False, effect=0.01)
    with world.store.session() as s:
        result = write_bundle(s, world.settings, ReportRequest("sus"),
                              load_private_key(world.settings.signing.key_path),
                              out_dir=tmp_path / "out", formats=("html",))
    world.store.close()
    html = (result.path / "report.html").read_text()
    assert "NOT SIGNIFICANT" in html and "not proof of independence" in html
    assert "insufficient evidence of derivation" in html
    assert "no evidence of derivation" not in html


def test_p_values_read_as_decimals_or_powers_of_ten() -> None:
    assert fmt_p(0.031) == "0.031"
    assert fmt_p(3.2e-6) == "3.2 × 10⁻⁶"
