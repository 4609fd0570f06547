"""A bundle's zip is named after its folder, whatever the suspect's name holds."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import update

from auditor.bundle import write_bundle, zip_of
from auditor.report import ReportRequest
from auditor.signing import load_private_key
from auditor.store.models import Endpoint
from tests.report.world import build_world


def test_a_dotted_suspect_name_keeps_its_whole_name_in_the_zip(tmp_path: Path) -> None:
    """``Path.with_suffix`` once cut "gpt-4.1-<time>" to "gpt-4.zip". (The endpoint is
    renamed after its answers were chained, so this bundle would not verify; only its
    names are checked.)"""
    world = build_world(tmp_path, n_canaries=4)
    try:
        with world.store.session() as s:
            s.execute(update(Endpoint).where(Endpoint.name == "sus").values(name="gpt-4.1"))
            s.flush()
            now = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
            result = write_bundle(s, world.settings, ReportRequest("gpt-4.1"),
                                  load_private_key(world.settings.signing.key_path),
                                  out_dir=tmp_path / "out", formats=("html",), now=now)
    finally:
        world.store.close()
    assert result.path.name == "gpt-4.1-20261207T020000Z"
    assert result.zip_path == zip_of(result.path)
    assert result.zip_path.name == "gpt-4.1-20261207T020000Z.zip" and result.zip_path.exists()
    with zipfile.ZipFile(result.zip_path) as zf:
        assert {n.split("/")[0] for n in zf.namelist()} == {result.path.name}
