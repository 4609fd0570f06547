from __future__ import annotations

from pathlib import Path

import pytest

from auditor.config import load_settings, parse_duration
from auditor.errors import AuditorError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "auditor.example.toml"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "auditor.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_apply_without_a_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.database_url == "sqlite:///var/auditor.db"
    assert s.resolved_database_url() == f"sqlite:///{tmp_path.resolve() / 'var' / 'auditor.db'}"
    assert s.endpoints == []


def test_example_config_loads_with_every_endpoint_role() -> None:
    s = load_settings(EXAMPLE)
    assert {e.role for e in s.endpoints} == {"protected", "control", "suspect"}
    assert {e.provider for e in s.endpoints} == {"openai", "anthropic", "http"}


def test_config_file_from_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _write(tmp_path, 'canaries_dir = "mine"\n')
    monkeypatch.setenv("AUDITOR_CONFIG", str(p))
    assert load_settings().canaries_dir == "mine"


def test_environment_overrides_file_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _write(tmp_path, 'database_url = "sqlite:///a.db"\n[daemon]\nmetrics_port = 9000\n')
    monkeypatch.setenv("AUDITOR_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("AUDITOR_DAEMON__METRICS_PORT", "9464")
    s = load_settings(p)
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert s.daemon.metrics_port == 9464


def test_relative_paths_resolve_from_the_config_folder(tmp_path: Path) -> None:
    p = _write(tmp_path, 'canaries_dir = "c"\nreports_dir = "r"\n')
    s = load_settings(p)
    assert s.canaries_path == tmp_path / "c"
    assert s.reports_path == tmp_path / "r"


def test_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    p = _write(tmp_path, 'canaries_dir = "c"\n\n[daemon]\nheartbeet_seconds = 3\n')
    with pytest.raises(AuditorError) as info:
        load_settings(p)
    text = str(info.value)
    assert "daemon.heartbeet_seconds: unknown key" in text
    assert f"{p}:4" in text
    assert "fix:" in text


def test_wrong_value_in_an_endpoint_names_the_key(tmp_path: Path) -> None:
    p = _write(tmp_path, """
[[endpoints]]
name = "a"
provider = "openai"
model = "m"
role = "control"

[[endpoints]]
name = "b"
provider = "grpc"
model = "m"
role = "suspect"
limits = { concurrency = 0 }
""")
    with pytest.raises(AuditorError) as info:
        load_settings(p)
    text = str(info.value)
    assert "endpoints[1].provider" in text and f"{p}:10" in text
    assert "endpoints[1].limits.concurrency" in text


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    p = _write(tmp_path, 'canaries_dir = "c"\nreports_dir = \n')
    with pytest.raises(AuditorError, match=r"auditor\.toml:2"):
        load_settings(p)


def test_missing_explicit_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AuditorError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_api_key_comes_from_the_named_variable_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = load_settings(EXAMPLE)
    ep = s.endpoint("gpt-control")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AuditorError, match="OPENAI_API_KEY is not set"):
        ep.api_key()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key-123")
    assert ep.api_key() == "test-key-123"
    assert "test-key-123" not in s.model_dump_json()


def test_config_hash_ignores_the_database_password() -> None:
    from auditor.config import Settings

    a = Settings(database_url="postgresql+psycopg://u:secret1@h/db")
    b = Settings(database_url="postgresql+psycopg://u:secret2@h/db")
    c = Settings(database_url="postgresql+psycopg://u:secret1@other/db")
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_duplicate_endpoint_names_are_rejected(tmp_path: Path) -> None:
    ep = '[[endpoints]]\nname = "x"\nprovider = "openai"\nmodel = "m"\nrole = "control"\n'
    with pytest.raises(AuditorError, match="used twice"):
        load_settings(_write(tmp_path, ep + ep))


def test_schedule_takes_cron_or_interval_not_both(tmp_path: Path) -> None:
    p = _write(tmp_path, '[[endpoints]]\nname = "x"\nprovider = "openai"\nmodel = "m"\n'
                         'role = "control"\nschedule = { cron = "0 3 * * *", interval = "1h" }\n')
    with pytest.raises(AuditorError, match="either cron or interval"):
        load_settings(p)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("6h", 21600), ("1d", 86400), (5, 5)]
)
def test_durations_parse(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_unknown_text_representation_is_named_with_the_choices(tmp_path: Path) -> None:
    p = _write(tmp_path, '[analysis]\nrepresentations = ["word", "wrod"]\n')
    with pytest.raises(AuditorError) as info:
        load_settings(p)
    text = str(info.value)
    assert "analysis.representations" in text and "'wrod'" in text
    assert "layout" in text and f"{p}:2" in text


def test_embedding_representation_needs_a_model(tmp_path: Path) -> None:
    p = _write(tmp_path, '[analysis]\nrepresentations = ["word", "embedding"]\n')
    with pytest.raises(AuditorError, match="embedding_model"):
        load_settings(p)
    p = _write(tmp_path, '[analysis]\nrepresentations = ["word", "embedding"]\n'
                         'embedding_model = "/models/minilm"\n')
    assert load_settings(p).analysis.representations == ["word", "embedding"]


def test_representations_can_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _write(tmp_path, "[analysis]\nalpha = 0.01\n")
    monkeypatch.setenv("AUDITOR_ANALYSIS__REPRESENTATIONS", "word, char,opening")
    assert load_settings(p).analysis.representations == ["word", "char", "opening"]
