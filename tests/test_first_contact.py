"""A new user's first contact: every mistake gets a clear message and a non-zero exit.

Each test runs ``python -m auditor`` in a subprocess, as a user would, on real SQLite files,
the local PostgreSQL server and the loopback test server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from probe.helpers import canary, write_canaries
from probe.servers import FakeServer
from sqlalchemy import select, update

from auditor import __version__
from auditor.store import open_store
from auditor.store.models import Attempt, CanaryVersion, Response
from tests.factories import fill, settings_with

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path, env: dict[str, str] | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    full.update({"COLUMNS": "200", **(env or {})})
    done = subprocess.run([sys.executable, "-m", "auditor", *args], cwd=cwd, env=full,
                          input=stdin, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


def words(text: str) -> str:
    """Rich wraps long lines and draws boxes: compare the words, not the layout."""
    return " ".join(text.replace("│", " ").split())


# -- 1. usage errors and --version --------------------------------------------------------


@pytest.mark.parametrize(("args", "problem"), [
    (["nosuchcmd"], "No such command"),
    (["probe", "--bogus"], "No such option"),
    (["report"], "Missing option"),
    (["db", "downgrade"], "Missing argument"),
])
def test_a_usage_error_prints_usage_and_the_problem_and_exits_2(
        tmp_path: Path, args: list[str], problem: str) -> None:
    done = run(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert "Usage:" in done.stderr and problem in words(done.stderr)


def test_version_prints_the_version_and_the_git_commit(tmp_path: Path) -> None:
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    done = run("--version", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert __version__ in done.stdout and head[:12] in done.stdout


def test_a_missing_config_file_is_named_without_a_traceback(tmp_path: Path) -> None:
    done = run("--config", str(tmp_path / "nope.toml"), "status", cwd=tmp_path)
    assert done.returncode == 2 and "nope.toml does not exist" in words(done.stderr)


def test_a_config_path_that_is_a_folder_or_not_text_is_named(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe")
    for path in ("adir", "bad.toml"):
        done = run("--config", path, "status", cwd=tmp_path)
        assert done.returncode == 2 and f"config file {path} cannot be read" in done.stderr


def test_a_path_that_cannot_be_created_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    done = run("demo", "--workdir", str(tmp_path / "afile" / "x"), cwd=tmp_path)
    assert done.returncode == 2 and "afile" in words(done.stderr) and "fix:" in done.stderr


def _one_suspect(tmp_path: Path) -> dict[str, str]:
    """A config with one suspect `s` (nothing listening), the example canaries; the env."""
    (tmp_path / "auditor.toml").write_text(
        '[[endpoints]]\nname = "s"\nprovider = "openai"\nmodel = "m"\nrole = "suspect"\n'
        'base_url = "http://127.0.0.1:9/v1"\n')
    return {"AUDITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
            "AUDITOR_CANARIES_DIR": str(REPO / "canaries")}


def test_a_missing_import_file_is_named_without_a_traceback(tmp_path: Path) -> None:
    env = _one_suspect(tmp_path)
    done = run("import", str(tmp_path / "missing.jsonl"), "--endpoint", "s", cwd=tmp_path,
               env=env)
    assert done.returncode != 0 and "missing.jsonl" in words(done.stderr)


def test_an_unwritable_log_file_and_an_unknown_suspect_are_errors_not_tracebacks(
        tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    env = {"AUDITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}
    done = run("daemon", "--log-file", str(tmp_path / "afile" / "x.log"), cwd=tmp_path, env=env)
    assert done.returncode == 2 and "--log-file" in words(done.stderr)
    done = run("analyze", "--suspect", "nope", cwd=tmp_path, env=env)
    assert done.returncode == 2 and "no endpoint named 'nope'" in words(done.stderr)


# -- 3. a failed verification exits non-zero ------------------------------------------------


def test_verify_ledger_exits_nonzero_on_a_tampered_ledger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    store = open_store(url, migrate=True)
    try:
        fill(store, settings_with({"p": "protected"}),
             {"p": {"ft-greeting": ["Hello!", "Hi!", "Hey."]}})
        env = {"AUDITOR_DATABASE_URL": url}
        assert run("verify", "--ledger", cwd=tmp_path, env=env).returncode == 0
        with store.session() as s:
            s.execute(update(Response).where(Response.seq == 2).values(text="Hi?"))
    finally:
        store.close()
    done = run("verify", "--ledger", cwd=tmp_path, env=env)
    assert done.returncode == 1
    assert "FAILED" in done.stdout + done.stderr and "2" in done.stdout + done.stderr


def test_verify_without_anything_to_verify_is_a_usage_error(tmp_path: Path) -> None:
    done = run("verify", cwd=tmp_path)
    assert done.returncode == 2 and "--ledger" in words(done.stderr)


# -- 4. one schema for validate and for loading; retiring and abandoning --------------------


def _identity(cid: str, expect: dict[str, object] | None) -> dict[str, object]:
    item = canary(cid, "Who made you?", kind="identity")
    if expect is None:
        item.pop("expect", None)
    else:
        item["expect"] = expect
    return item


def test_validate_rejects_an_identity_canary_without_expect(tmp_path: Path) -> None:
    write_canaries(tmp_path / "canaries", [_identity("id-who", None)])
    env = {"AUDITOR_CANARIES_DIR": str(tmp_path / "canaries"),
           "AUDITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}
    done = run("canaries", "validate", cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "id-who" in done.stderr and "expect" in done.stderr and "names" in done.stderr
    assert run("canaries", "commit", cwd=tmp_path, env=env).returncode == 2


def _probe_config(tmp_path: Path, server: FakeServer) -> Path:
    path = tmp_path / "auditor.toml"
    path.write_text(f"""database_url = "sqlite:///auditor.db"
canaries_dir = "canaries"

[[endpoints]]
name = "prot"
provider = "openai"
model = "m-prot"
role = "protected"
base_url = "{server.url}/v1"
[endpoints.limits]
max_retries = 0
requests_per_minute = 100000
""")
    return path


def _bad_version_in_store(tmp_path: Path, server: FakeServer) -> Path:
    """A store an older auditor left: a live identity version without ``expect.names``,
    with planned attempts pointing at it."""
    write_canaries(tmp_path / "canaries", [canary("c-ok"),
                                           _identity("id-who", {"names": ["Prot"]})])
    config = _probe_config(tmp_path, server)
    assert run("--config", str(config), "canaries", "sync", cwd=tmp_path).returncode == 0
    store = open_store(f"sqlite:///{tmp_path / 'auditor.db'}")
    try:
        with store.session() as s:
            v = s.scalars(select(CanaryVersion).where(CanaryVersion.canary_id == "id-who")).one()
            v.content = {**v.content, "expect": {}}
    finally:
        store.close()
    return config


def test_a_bad_stored_version_does_not_lock_up_probe_and_can_be_retired(
        tmp_path: Path, server: FakeServer) -> None:
    config = _bad_version_in_store(tmp_path, server)
    done = run("--config", str(config), "probe", "--once", cwd=tmp_path)
    assert "id-who" in words(done.stderr + done.stdout)
    assert "auditor canaries retire id-who" in words(done.stderr + done.stdout)
    store = open_store(f"sqlite:///{tmp_path / 'auditor.db'}")
    try:
        with store.session() as s:
            ok = s.scalars(select(Attempt).where(Attempt.status == "ok")).all()
            assert len(ok) == 1  # c-ok was sent
    finally:
        store.close()
    retired = run("--config", str(config), "canaries", "retire", "id-who", cwd=tmp_path)
    assert retired.returncode == 0, retired.stderr
    assert "retired id-who" in words(retired.stdout)
    # with it out of the files as well, the next cycle plans only c-ok and sends it
    write_canaries(tmp_path / "canaries", [canary("c-ok")])
    again = run("--config", str(config), "probe", "--once", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "id-who" not in again.stderr + again.stdout


def test_abandon_closes_unfinished_attempts_so_resume_has_nothing_to_do(
        tmp_path: Path, server: FakeServer) -> None:
    config = _bad_version_in_store(tmp_path, server)
    store = open_store(f"sqlite:///{tmp_path / 'auditor.db'}")
    try:
        from auditor.config import load_settings
        from auditor.probe import prepare

        planned = prepare(store, load_settings(config))
    finally:
        store.close()
    done = run("--config", str(config), "abandon", "--cycle", str(planned.cycle_id),
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"abandoned {planned.attempts} unfinished attempt(s)" in words(done.stdout)
    resumed = run("--config", str(config), "probe", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "nothing to do" in words(resumed.stdout)


# -- 6. db downgrade asks first ---------------------------------------------------------------


def test_db_downgrade_base_refuses_without_yes_and_keeps_the_tables(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, inspect

    url = f"sqlite:///{tmp_path / 'a.db'}"
    env = {"AUDITOR_DATABASE_URL": url}
    assert run("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    refused = run("db", "downgrade", "base", cwd=tmp_path, env=env, stdin="n\n")
    assert refused.returncode != 0 and "--yes" in words(refused.stderr)
    engine = create_engine(url)
    try:
        assert "responses" in inspect(engine).get_table_names()
        done = run("db", "downgrade", "base", "--yes", cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr
        assert "responses" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


# -- 7. a bad database URL --------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", [["status"], ["db", "upgrade"], ["canaries", "list"]])
def test_postgres_with_nothing_listening_names_the_url_masked_and_the_fix(
        tmp_path: Path, command: list[str]) -> None:
    url = f"postgresql+psycopg://auditor:s3cret@127.0.0.1:{_closed_port()}/auditor"
    done = run(*command, cwd=tmp_path, env={"AUDITOR_DATABASE_URL": url,
                                            "AUDITOR_CANARIES_DIR": str(REPO / "canaries")})
    assert done.returncode == 2
    text = words(done.stderr)
    assert "s3cret" not in done.stderr + done.stdout
    assert "auditor:***@127.0.0.1" in text and "cannot connect" in text
    assert "fix:" in text


def test_an_unwritable_sqlite_path_names_the_url_and_the_fix(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes anywhere: use a path below a regular file instead
        blocker = tmp_path / "file"
        blocker.write_text("")
        target = blocker / "sub" / "a.db"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "a.db"
    done = run("status", cwd=tmp_path, env={"AUDITOR_DATABASE_URL": f"sqlite:///{target}"})
    assert done.returncode == 2
    text = words(done.stderr)
    assert str(target) in text.replace(" ", "") or str(target) in text
    assert "fix:" in text


def test_a_sqlite_url_naming_a_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a database\n" * 100)
    done = run("status", cwd=tmp_path,
               env={"AUDITOR_DATABASE_URL": f"sqlite:///{tmp_path / 'notes.txt'}"})
    assert done.returncode == 2 and "notes.txt" in words(done.stderr)
    assert "not a database" in words(done.stderr) and "fix:" in done.stderr


def test_an_unmigrated_postgres_database_names_db_upgrade(tmp_path: Path, pg_url: str) -> None:
    done = run("status", cwd=tmp_path, env={"AUDITOR_DATABASE_URL": pg_url})
    assert done.returncode == 2 and "auditor db upgrade" in words(done.stderr)


# -- 8. status after fingerprint and probe --once -------------------------------------------


def test_status_shows_the_last_cycle_after_fingerprint_and_probe_once(
        tmp_path: Path, server: FakeServer) -> None:
    write_canaries(tmp_path / "canaries", [canary("c-one")])
    config = _probe_config(tmp_path, server)
    with config.open("a") as fh:
        fh.write(f'\n[[endpoints]]\nname = "susp"\nprovider = "openai"\nmodel = "m-susp"\n'
                 f'role = "suspect"\nbase_url = "{server.url}/v1"\n')
    assert run("--config", str(config), "fingerprint", cwd=tmp_path).returncode == 0
    status = json.loads(run("--config", str(config), "status", "--json", cwd=tmp_path).stdout)
    by_name = {e["name"]: e for e in status["endpoints"]}
    assert by_name["prot"]["last_cycle_id"] is not None
    assert by_name["prot"]["last_cycle_outcome"]["ok"] == 1
    assert run("--config", str(config), "probe", "--once", cwd=tmp_path).returncode == 0
    status = json.loads(run("--config", str(config), "status", "--json", cwd=tmp_path).stdout)
    by_name = {e["name"]: e for e in status["endpoints"]}
    assert by_name["susp"]["last_cycle_id"] is not None
    assert by_name["prot"]["last_cycle_id"] == by_name["susp"]["last_cycle_id"]
    assert by_name["susp"]["last_cycle_outcome"] == {"ok": 1, "failed": 0, "skipped": 0,
                                                     "pending": 0}
    table = words(run("--config", str(config), "status", cwd=tmp_path).stdout)
    assert "never" not in table


# -- 12. smaller ones -------------------------------------------------------------------------


def test_a_repeat_import_says_nothing_imported_instead_of_cycle_none(tmp_path: Path) -> None:
    env = _one_suspect(tmp_path)
    assert run("canaries", "sync", cwd=tmp_path, env=env).returncode == 0
    data = tmp_path / "answers.jsonl"
    data.write_text(json.dumps({"canary_id": "ch-coin", "text": "heads",
                                "collected_at": "2026-11-01T12:00:00Z"}) + "\n")
    first = run("import", str(data), "--endpoint", "s", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    assert "imported 1 response(s) into cycle" in words(first.stdout)
    again = run("import", str(data), "--endpoint", "s", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert "None" not in again.stdout
    assert words(again.stdout) == "nothing imported: all 1 response(s) already present"


def test_the_readme_import_example_is_a_valid_import_file() -> None:
    import re

    from auditor.importer import parse_jsonl

    block = re.search(r"```json\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block is not None
    records = parse_jsonl(block.group(1).splitlines(), "README.md")
    assert [r.canary_id for r in records] == ["ch-coin", "ch-coin"]
