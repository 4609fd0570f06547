"""`auditor keys init`, `auditor report` and `auditor verify` from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.report.world import CONTROLS, START, add_verdict, fill_store, make_settings

REPO = Path(__file__).resolve().parents[2]


def _auditor(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "auditor", "-c", str(config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    # rich wraps long lines: compare the words, not the layout
    done.stderr = " ".join(done.stderr.split())
    return done


@pytest.fixture
def config(tmp_path: Path) -> Path:
    from auditor.store import open_store

    settings = make_settings(tmp_path)
    store = open_store(settings.resolved_database_url(), migrate=True)
    fill_store(store, settings, 4)
    add_verdict(store, 4, START.replace(day=5))
    store.close()
    eps = "".join(
        f'[[endpoints]]\nname = "{n}"\nprovider = "openai"\nmodel = "model-{n}"\nrole = "{r}"\n'
        f'base_url = "http://127.0.0.1:9/v1"\n\n'
        for n, r in [("prot", "protected"), ("sus", "suspect"), *((c, "control")
                                                                  for c in CONTROLS)])
    path = tmp_path / "auditor.toml"
    path.write_text(f'database_url = "{settings.database_url}"\n'
                    f'reports_dir = "{tmp_path / "reports"}"\n\n'
                    f'[signing]\nkey_path = "{tmp_path / "keys" / "signing.pem"}"\n\n' + eps)
    return path


def test_report_without_a_key_says_to_run_keys_init(config: Path) -> None:
    done = _auditor(config, "report", "--suspect", "sus", "--format", "html")
    assert done.returncode != 0 and "auditor keys init" in done.stderr


def test_keys_init_then_report_then_verify(config: Path, tmp_path: Path) -> None:
    init = _auditor(config, "keys", "init")
    assert init.returncode == 0, init.stderr
    fp = init.stdout.split("fingerprint")[1].split()[0]
    out = tmp_path / "bundles"
    done = _auditor(config, "report", "--suspect", "sus", "--format", "html,json",
                    "--out", str(out), "--unseal", "ft-canary-0000")
    assert done.returncode == 0, done.stderr
    assert fp in done.stdout
    zips = list(out.glob("*.zip"))
    assert len(zips) == 1 and not (zips[0].with_suffix("") / "report.pdf").exists()
    check = _auditor(config, "verify", str(zips[0]))
    assert check.returncode == 0, check.stderr


def test_report_for_an_unanalysed_suspect_says_to_run_analyze(config: Path) -> None:
    assert _auditor(config, "keys", "init").returncode == 0
    with config.open("a") as fh:
        fh.write('[[endpoints]]\nname = "sus2"\nprovider = "openai"\nmodel = "m"\n'
                 'role = "suspect"\nbase_url = "http://127.0.0.1:9/v1"\n')
    # analyze stores the endpoint's row; with no responses there is no verdict
    assert _auditor(config, "analyze", "--suspect", "sus2").returncode == 0
    done = _auditor(config, "report", "--suspect", "sus2")
    assert done.returncode != 0 and "run `auditor analyze` first" in done.stderr


def test_report_for_a_control_says_how_to_score_it_not_plain_analyze(config: Path) -> None:
    assert _auditor(config, "keys", "init").returncode == 0
    done = _auditor(config, "report", "--suspect", "ctl-alpha")
    assert done.returncode != 0 and "is a control" in done.stderr
    assert "auditor analyze --suspect ctl-alpha" in done.stderr


def test_verify_exits_nonzero_on_a_tampered_bundle(config: Path, tmp_path: Path) -> None:
    assert _auditor(config, "keys", "init").returncode == 0
    out = tmp_path / "bundles"
    done = _auditor(config, "report", "--suspect", "sus", "--format", "json", "--out", str(out))
    assert done.returncode == 0, done.stderr
    (bundle,) = [p for p in out.iterdir() if p.is_dir()]
    assert _auditor(config, "verify", str(bundle)).returncode == 0
    (bundle / "verdict.json").write_text("{}")
    check = _auditor(config, "verify", str(bundle))
    assert check.returncode != 0 and "verdict.json" in check.stderr
    assert "Traceback" not in check.stderr
