"""The PDF as a legal reader sees it: its text layer, read back from the printed file.

The world's newest verdict is made to disagree with itself (significant p, an effect
interval that includes 0, an e-value below the alarm) with an identity channel that is
perfect yet cannot go below 1/(K+1); one canary is public, so Appendix D prints one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader

from auditor.bundle import BundleResult, write_bundle
from auditor.figures import TimelinePoint, timeline_figure
from auditor.report import MEASURED_FPR, ReportRequest, fmt_p
from auditor.signing import load_private_key
from auditor.store.models import Verdict
from tests.report.world import CONTROLS, START, World, add_verdict, build_world

ROOT = Path(__file__).resolve().parents[2]
IDENTITY = {"p_value": 0.25, "suspect_claims": 24, "suspect_total": 24, "control_claims": 0,
            "control_total": 200, "odds_ratio": None, "response_level_fisher_p": 1.4e-43,
            "control_rates": [0.0, 0.0, 0.0], "claiming_canaries": ["ft-canary-0001"]}


def _mixed_verdict(world: World) -> None:
    """The newest verdict: significant by p, yet effect interval over 0 and e-value 1.76."""
    vid = add_verdict(world.store, world.n_canaries, START + timedelta(days=5), p=2.3e-4,
                      significant=True, effect=4.2)
    with world.store.session() as s:
        v = s.get(Verdict, vid)
        assert v is not None
        v.effect_low, v.effect_high, v.e_value = -1.6, 10.0, 1.76
        v.channels = {"free_text": {"p_value": 2.3e-4, "statistic": 4.2, "suspect_score": 5.1,
                                    "n_canaries": world.n_canaries},
                      "identity": IDENTITY}


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BundleResult, list[str]]]:
    tmp = tmp_path_factory.mktemp("pdf")
    world = build_world(tmp, n_canaries=10, public={1})
    _mixed_verdict(world)
    with world.store.session() as s:
        result = write_bundle(s, world.settings, ReportRequest("sus"),
                              load_private_key(world.settings.signing.key_path),
                              out_dir=tmp / "out", formats=("html", "pdf"))
    world.store.close()
    pages = [p.extract_text() for p in PdfReader(result.path / "report.pdf").pages]
    yield result, pages


def _section(pages: list[str], start: str, end: str) -> str:
    text = "\n".join(pages)
    i = text.index(start)
    return text[i:text.index(end, i)]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_verdict_names_what_it_rests_on_and_reconciles_the_measures(printed) -> None:
    _, pages = printed
    page1 = _flat(pages[0])
    assert "The verdict rests on the combined p-value" in page1
    assert "interval of the effect size includes 0" in page1
    assert "e-value (1.76) is below the alarm level of 20" in page1


def test_scope_says_why_sampled_answers_and_responses_differ(printed) -> None:
    result, pages = printed
    evidence = (result.path / "evidence.jsonl").read_text().splitlines()
    by_endpoint: dict[str, int] = {}
    for line in evidence:
        name = json.loads(line)["record"]["endpoint"]
        by_endpoint[name] = by_endpoint.get(name, 0) + 1
    page1 = _flat(pages[0])
    controls = sum(by_endpoint[c] for c in CONTROLS)
    assert (f"{len(evidence)} responses in the evidence file ({by_endpoint['sus']} of the "
            f"suspect, {by_endpoint['prot']} of the protected model, {controls} of the "
            f"{len(CONTROLS)} controls)") in page1


def test_channel_table_reads_in_words_and_explains_the_identity_floor(printed) -> None:
    _, pages = printed
    table = _flat(_section(pages, "Evidence channels", "Every channel"))
    assert "response level fisher p" not in table.lower() and "_" not in table
    assert "24 of 24" in table and "0 of 200" in table
    k = len(CONTROLS)
    assert (f"smallest p-value this channel can give with {k} controls is 1/({k}+1) = "
            f"{fmt_p(1 / (k + 1))}") in table


def test_p_values_in_the_channel_table_stay_on_one_line(printed) -> None:
    _, pages = printed
    table = _section(pages, "Evidence channels", "Every channel")
    assert re.search(r"2\.3 × 10⁻⁴", table)


def test_method_states_its_assumption_error_rate_and_controls(printed) -> None:
    _, pages = printed
    method = _flat(_section(pages, "4. Methodology", "5. Chain of custody"))
    assert "Student-t" in method
    assert f"at most {MEASURED_FPR['fpr']}" in method and MEASURED_FPR["source"] in method
    for c in CONTROLS:
        assert f"{c} (" in method
    assert "independence of the controls is an assumption" in method


def test_the_stated_error_rate_is_the_benchmarks() -> None:
    text = (ROOT / "BENCHMARKS.md").read_text()
    assert f"FPR <= {MEASURED_FPR['fpr']} at every budget" in text
    assert MEASURED_FPR["source"].startswith("BENCHMARKS.md")


def test_every_hash_in_the_text_layer_is_whole_and_the_bundles(printed) -> None:
    result, pages = printed
    bundle_text = "".join(p.read_text(errors="replace") for p in result.path.iterdir()
                          if p.name != "report.pdf" and p.is_file())
    known = set(re.findall(r"[0-9a-f]{64}", bundle_text))
    known |= {result.manifest_sha256, result.signer_fingerprint}
    revisions = set(re.findall(r"[0-9a-f]{40}", bundle_text))
    text = "\n".join(pages)
    assert "\u2010" not in text and "\u00ad" not in text
    runs = re.findall(r"(?<![0-9a-f])[0-9a-f]{17,}(?![0-9a-f])", text)
    assert runs
    for run in runs:
        assert run in known or run in revisions, run
    for h in (result.manifest_sha256, result.signer_fingerprint):
        assert h in text


def test_opened_canary_json_breaks_only_where_marked(printed) -> None:
    result, pages = printed
    appendix = _section(pages, "Appendix D", "Salt")
    canaries = json.loads((result.path / "canaries.json").read_text())
    items = canaries["canaries"] if isinstance(canaries, dict) else canaries
    canonical = next(c["unsealed"]["canonical"] for c in items if c.get("unsealed"))
    assert "↩" in appendix  # the JSON is long enough to need a marked break
    joined = re.sub(r"↩\s*\n", "", appendix)
    assert canonical in joined
    assert "counting from 0" in _flat("\n".join(pages))


def test_custody_names_every_run_collector_and_times_to_the_second(printed) -> None:
    _, pages = printed
    runs = _section(pages, "Collection runs", "Files of this bundle")
    rows = [line for line in runs.splitlines() if re.match(r"^\d+ import ", line)]
    assert len(rows) == 2 + len(CONTROLS)
    for row in rows:
        assert "-answers.jsonl" in row
    assert re.search(r"\d{2}:\d{2}:\d{2}", runs)
    assert len(re.findall(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?!:)", runs)) == 0


def _body_bottoms(pdf: Path) -> list[float]:
    """Per page, the lowest baseline of body text (header and footer margins left out)."""
    out = []
    for page in PdfReader(pdf).pages:
        height = float(page.mediabox.height)
        ys: list[float] = []

        def visit(text: str, cm, tm, *_: object, ys: list[float] = ys) -> None:
            if text.strip():
                ys.append(float(tm[5]) * float(cm[3]) + float(cm[5]))

        page.extract_text(visitor_text=visit)
        body = [y for y in ys if 0.09 * height < y < 0.9 * height]
        out.append(min(body) / height if body else 1.0)
    return out


def test_no_page_is_mostly_blank_except_before_a_new_part(printed) -> None:
    result, pages = printed
    parts = ("2. Results", "Appendix A.", "Appendix B.")
    bottoms = _body_bottoms(result.path / "report.pdf")
    for i, bottom in enumerate(bottoms[:-1]):
        if any(p in pages[i + 1][:200] for p in parts):  # a part that starts a new page
            continue
        assert bottom < 0.5, f"page {i + 1} is more than half blank"


def test_timeline_has_dated_axis_and_legends_clear_of_the_data() -> None:
    pts = [TimelinePoint(datetime(2026, 11, 25, 15, 7, s).astimezone(), 10 ** -(1 + s / 10),
                         float(s), 1.0 + s / 20, 0.5, 2.0) for s in range(0, 50, 5)]
    fig = timeline_figure(pts, 0.05)
    fig.canvas.draw()
    ax1, ax2 = fig.axes
    labels = [t.get_text() for t in ax2.get_xticklabels() if t.get_text()]
    assert labels and all(re.search(r"2026-11-25", t) for t in labels), labels
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for ax in (ax1, ax2):
        legend = ax.get_legend()
        assert legend is not None
        assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))

