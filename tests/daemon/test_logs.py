"""Structured logs: one JSON object per line, secrets never written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from auditor.config import Settings
from auditor.logs import setup_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_auditor_json_handler", False):
            root.removeHandler(h)


def _settings() -> Settings:
    return Settings.model_validate({"endpoints": [
        {"name": "ep", "provider": "openai", "model": "m", "role": "suspect",
         "api_key_env": "TEST_API_KEY"}]})


def test_each_record_is_one_json_object_with_its_fields(stream: io.StringIO) -> None:
    setup_logging(_settings(), stream=stream)
    logging.getLogger("auditor.test").info("cycle planned", extra={"cycle": 7, "endpoint": "ep"})
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["msg"] == "cycle planned" and record["level"] == "info"
    assert record["cycle"] == 7 and record["endpoint"] == "ep" and "ts" in record


def test_api_key_from_the_named_variable_is_redacted_everywhere(
        stream: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_API_KEY", "sk-verysecretkey123")
    setup_logging(_settings(), stream=stream)
    log = logging.getLogger("auditor.test")
    log.warning("auth failed with %s", "sk-verysecretkey123",
                extra={"detail": "header Bearer sk-verysecretkey123"})
    try:
        raise RuntimeError("bad key sk-verysecretkey123")
    except RuntimeError:
        log.exception("request failed")
    text = stream.getvalue()
    assert "sk-verysecretkey123" not in text
    assert text.count("***") >= 3
    assert all(json.loads(line) for line in text.splitlines())


def test_log_file_receives_the_lines(tmp_path: Path, stream: io.StringIO) -> None:
    path = tmp_path / "logs" / "auditor.jsonl"
    setup_logging(_settings(), file=path)
    logging.getLogger("auditor.test").info("hello")
    for h in logging.getLogger().handlers:
        h.flush()
    assert json.loads(path.read_text().splitlines()[-1])["msg"] == "hello"


def test_python_warnings_and_http_client_lines_are_json_or_silent(stream: io.StringIO) -> None:
    """numpy's RuntimeWarning once went to stderr as raw text; httpx2 logged every URL."""
    import warnings

    import numpy as np

    setup_logging(_settings(), stream=stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        np.mean(np.array([]))  # RuntimeWarning: Mean of empty slice
    logging.getLogger("httpx2").info('HTTP Request: POST http://127.0.0.1:9/v1/chat "200 OK"')
    logging.getLogger("httpcore2.connection").debug("connect_tcp.started host='127.0.0.1'")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines and {r["logger"] for r in lines} == {"py.warnings"}
    assert any("Mean of empty slice" in r["msg"] for r in lines)
    assert all(r["level"] == "warning" and "127.0.0.1" not in r["msg"] for r in lines)


def test_an_error_escaping_a_thread_is_one_json_record_with_its_traceback(
        stream: io.StringIO) -> None:
    import threading

    setup_logging(_settings(), stream=stream)
    previous = threading.excepthook
    try:
        def fail() -> None:
            raise RuntimeError("boom in a worker thread")

        t = threading.Thread(target=fail, name="probe-worker")
        t.start()
        t.join()
    finally:
        threading.excepthook = previous
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(records) == 1
    r = records[0]
    assert r["level"] == "error" and r["msg"] == "unhandled error in a thread"
    assert r["thread_name"] == "probe-worker"
    assert "boom in a worker thread" in json.dumps(r) and "RuntimeError" in json.dumps(r)
