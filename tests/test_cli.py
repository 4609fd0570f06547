from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

REPO = Path(__file__).resolve().parents[1]


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "auditor", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=120)


def _commands() -> list[list[str]]:
    from typer.main import get_command

    from auditor.cli import app

    out: list[list[str]] = []

    def walk(cmd, path):  # type: ignore[no-untyped-def]
        out.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(get_command(app), [])
    return out


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "auditor")
def test_every_command_has_help(path: list[str]) -> None:
    from typer.testing import CliRunner

    from auditor.cli import app

    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip(" │╭╰─")]
    assert len(lines) >= 3  # usage and a description


def test_validate_on_a_broken_file_names_file_and_line_and_writes_nothing(tmp_path: Path) -> None:
    canaries = tmp_path / "canaries"
    canaries.mkdir()
    (canaries / "bad.yaml").write_text(
        "canaries:\n  - id: ok-one\n    kind: free_text\n    prompt: Hi\n"
        "  - id: bad-one\n    kind: free_text\n    promt: Hi\n")
    db = tmp_path / "var" / "a.db"
    env = {"AUDITOR_CANARIES_DIR": str(canaries), "AUDITOR_DATABASE_URL": f"sqlite:///{db}"}
    result = run("canaries", "validate", cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert f"{canaries / 'bad.yaml'}:7" in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr
    assert not db.exists() or inspect(create_engine(f"sqlite:///{db}")).get_table_names() == []


def test_commit_prints_a_root_and_unseal_gives_a_verifiable_proof(tmp_path: Path) -> None:
    import json

    env = {"AUDITOR_CANARIES_DIR": str(REPO / "canaries"),
           "AUDITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}
    committed = run("canaries", "commit", cwd=tmp_path, env=env)
    assert committed.returncode == 0, committed.stderr
    root = committed.stdout.split("registry root ")[1].split()[0]
    opened = run("canaries", "unseal", "ch-coin", cwd=tmp_path, env=env)
    assert opened.returncode == 0, opened.stderr
    data = json.loads(opened.stdout)
    assert data["root"] == root

    from auditor.registry import UnsealedCanary

    assert UnsealedCanary(**data).verify()


def test_list_never_shows_prompt_text_unless_asked(tmp_path: Path) -> None:
    env = {"AUDITOR_CANARIES_DIR": str(REPO / "canaries"),
           "AUDITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}", "COLUMNS": "300"}
    hidden = run("canaries", "list", cwd=tmp_path, env=env)
    shown = run("canaries", "list", "--show-text", cwd=tmp_path, env=env)
    assert hidden.returncode == 0 and "ch-coin" in hidden.stdout
    assert "Flip a coin" not in hidden.stdout
    assert "Flip a coin" in shown.stdout


def test_db_upgrade_then_current_reports_head(tmp_path: Path) -> None:
    env = {"AUDITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}
    assert run("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    out = run("db", "current", cwd=tmp_path, env=env).stdout
    db_rev, code_rev = out.split("database: ")[1].split()[0], out.split("code: ")[1].split()[0]
    assert db_rev == code_rev != "none"


def test_bad_config_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    (tmp_path / "auditor.toml").write_text("[daemon]\nheartbeat_seconds = -1\n")
    result = run("canaries", "validate", cwd=tmp_path)
    assert result.returncode == 2
    assert "daemon.heartbeat_seconds" in result.stderr and "Traceback" not in result.stderr


def test_db_stats_without_a_migrated_database_names_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "var" / "none.db"
    result = run("db", "stats", cwd=tmp_path,
                 env={"AUDITOR_DATABASE_URL": f"sqlite:///{missing}"})
    assert result.returncode == 2
    assert "auditor db upgrade" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not missing.exists()  # reading stats creates nothing

    empty = tmp_path / "empty.db"
    create_engine(f"sqlite:///{empty}").connect().close()
    result = run("db", "stats", cwd=tmp_path, env={"AUDITOR_DATABASE_URL": f"sqlite:///{empty}",
                                                  "COLUMNS": "300"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "has no auditor schema (fix: run `auditor db upgrade`)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_db_stats_shows_rows_sizes_and_responses_per_day(tmp_path: Path) -> None:
    import json
    from datetime import UTC, datetime, timedelta

    from auditor.store import open_store
    from tests.factories import fill, settings_with

    url = f"sqlite:///{tmp_path / 'a.db'}"
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    st = open_store(url)
    try:
        settings = settings_with({"p": "protected"})
        fill(st, settings, {"p": {"ft-greeting": ["Hi!", "Hello!"]}}, start=midnight)
        fill(st, settings, {"p": {"ft-greeting": ["Hey!"]}}, start=midnight - timedelta(days=2))
    finally:
        st.close()
    env = {"AUDITOR_DATABASE_URL": url, "COLUMNS": "200"}
    as_json = run("db", "stats", "--days", "3", "--json", cwd=tmp_path, env=env)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert [(d["rows"], d["imported"]) for d in data["days"]] == [(1, 1), (0, 0), (2, 2)]
    assert data["days"][-1]["day"] == midnight.date().isoformat()
    tables = {t["name"]: t for t in data["tables"]}
    assert tables["responses"]["rows"] == 3 and tables["responses"]["bytes"] > 0
    assert data["size_source"] == "dbstat" and data["database_bytes"] > 0

    shown = run("db", "stats", "--days", "3", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "responses per day" in shown.stdout
    assert "3 responses in 3 days, 1.0 a day on average" in shown.stdout
    row = next(line for line in shown.stdout.splitlines() if "│ responses " in line)
    assert row.split("│")[2].strip() == "3"
