"""Structured logs: one JSON object per line, on stderr or in a file.

Every record becomes ``{"ts": ..., "level": ..., "logger": ..., "msg": ..., **fields}``
where ``fields`` are the ``extra=`` keyword values of the logging call. Two rules keep
the logs safe to ship anywhere: callers log canary *ids*, never canary text, and a
redaction filter replaces the value of every secret-bearing environment variable the
config names (API keys, webhook secrets) with ``***`` wherever it appears in a line.
"""

from __future__ import annotations

__all__ = ["JsonFormatter", "Redactor", "secrets_of", "setup_logging"]

import json
import logging
import os
import sys
import threading
import traceback
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from auditor.config import Settings
from auditor.errors import AuditorError, Problem

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message", "asctime", "taskName",
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)


def _exc_fields(record: logging.LogRecord) -> tuple[str, str]:
    exc_type, exc, tb = record.exc_info  # type: ignore[misc]
    name = exc_type.__name__ if exc_type is not None else "Exception"
    return f"{name}: {exc}", "".join(traceback.format_exception(exc_type, exc, tb))[-4000:]


class JsonFormatter(logging.Formatter):
    """Formats a record as a single line of JSON (sorted keys after the fixed ones)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in sorted(vars(record)):
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = _jsonable(getattr(record, key))
        if record.exc_info and record.exc_info[0] is not None:
            out["error"], out["traceback"] = _exc_fields(record)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


class Redactor(logging.Filter):
    """Replaces known secret values in a record's message and fields with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        # Very short values would redact half the log; keys and secrets are long.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        record.msg = self._clean(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self._clean(value))
        if record.exc_info and record.exc_info[0] is not None:
            # Render the exception now, redacted, so no handler prints its raw text.
            record.error, record.traceback = (self._clean(t) for t in _exc_fields(record))
            record.exc_info, record.exc_text = None, None
        return True


def secrets_of(settings: Settings) -> list[str]:
    """Values of the environment variables the config names as holding secrets."""
    names = {ep.api_key_env for ep in settings.endpoints if ep.api_key_env}
    names |= {w.secret_env for w in settings.alerts.webhooks if w.secret_env}
    return [os.environ[n] for n in sorted(n for n in names if n) if os.environ.get(n)]


_HANDLER_FLAG = "_auditor_json_handler"


def setup_logging(
    settings: Settings | None = None,
    *,
    level: str | None = None,
    file: str | Path | None = None,
    stream: IO[str] | None = None,
) -> Redactor:
    """Sends every log record, as JSON lines, to ``file`` (appending) or to stderr.

    Replaces handlers installed by an earlier call; returns the redactor so that a reload
    can refresh its secrets.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_FLAG, False):
            root.removeHandler(old)
            old.close()
    handler: logging.Handler
    if file is not None:
        # WatchedFileHandler reopens the file after logrotate moves it.
        from logging.handlers import WatchedFileHandler

        try:
            Path(file).parent.mkdir(parents=True, exist_ok=True)
            handler = WatchedFileHandler(str(file), encoding="utf-8")
        except OSError as exc:
            raise AuditorError(f"cannot write the log file {file}: {exc.strerror or exc}",
                               [Problem("not writable", str(file),
                                        fix="give --log-file a path in a folder you can "
                                        "write")]) from None
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    setattr(handler, _HANDLER_FLAG, True)
    handler.setFormatter(JsonFormatter())
    redactor = Redactor(secrets_of(settings) if settings is not None else ())
    handler.addFilter(redactor)
    root.addHandler(handler)
    root.setLevel(level or (settings.log_level if settings is not None else "INFO"))
    # Libraries that log request URLs or bodies at INFO/DEBUG stay quiet.
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "anthropic",
                  "apscheduler", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Python warnings (numpy's RuntimeWarning, say) and exceptions escaping a thread
    # become JSON records too, instead of raw text on stderr.
    warnings.showwarning = _log_warning  # like logging.captureWarnings, but idempotent
    threading.excepthook = _log_thread_exception
    return redactor


def _log_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: IO[str] | None = None, line: str | None = None) -> None:
    logging.getLogger("py.warnings").warning(
        f"{category.__name__}: {message}",
        extra={"warning_category": category.__name__, "source": f"{filename}:{lineno}"})


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("auditor").error(
        "unhandled error in a thread",
        exc_info=args.exc_value if args.exc_value is not None else True,
        extra={"thread_name": args.thread.name if args.thread else None})
