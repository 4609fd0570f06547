"""The demo, end to end: models, distillation, the daemon, analysis, a verified report."""

from __future__ import annotations

__all__ = ["DemoResult", "alert_lines", "run_demo"]

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from auditor.config import load_settings
from auditor.demo.server import Faults, ModelServer
from auditor.demo.setup import (
    DEMO_ENDPOINTS,
    DEMO_WATERMARK_KEY,
    FLAKY,
    WATERMARK,
    write_canaries,
    write_config,
)
from auditor.demo.world import DemoModels, build_models, distill, harvest_prompts
from auditor.errors import AuditorError
from auditor.signing import init_key
from auditor.store import open_store, sync_endpoints
from auditor.store.models import Alert, Attempt, Cycle, Endpoint, MonitorState

Say = Callable[[str], None]


@dataclass
class DemoResult:
    verdicts: list[dict[str, Any]]
    bad_news: dict[str, dict[str, int]]
    cycles: dict[str, int]
    bundle: Path | None
    zip_path: Path | None
    verified: str | None
    alerts: list[str]
    harvested: int
    seconds: float
    table: Any = field(default=None, repr=False)


def _completed_cycles(store: Any, names: list[str]) -> dict[str, int]:
    with store.session() as s:
        rows = s.execute(
            select(Endpoint.name, func.count(Cycle.id))
            .join(Cycle, Cycle.endpoint_id == Endpoint.id)
            .where(
                Cycle.status == "done",
                Cycle.kind.in_(("probe", "fingerprint")),
                Endpoint.name.in_(names),
            )
            .group_by(Endpoint.name)
        ).all()
    return {name: int(n) for name, n in rows}


def _bad_news(store: Any) -> dict[str, dict[str, int]]:
    """Per endpoint: failed attempts by error class, and attempts that needed retries."""
    out: dict[str, dict[str, int]] = {}
    with store.session() as s:
        failed = s.execute(
            select(Endpoint.name, Attempt.error_class, func.count())
            .join(Attempt, Attempt.endpoint_id == Endpoint.id)
            .where(Attempt.status.in_(("failed", "interrupted", "skipped")))
            .group_by(Endpoint.name, Attempt.error_class)
        ).all()
        retried = s.execute(
            select(Endpoint.name, func.count())
            .join(Attempt, Attempt.endpoint_id == Endpoint.id)
            .where(Attempt.tries > 1)
            .group_by(Endpoint.name)
        ).all()
    for name, cls, n in failed:
        out.setdefault(name, {})[f"failed:{cls or 'unknown'}"] = int(n)
    for name, n in retried:
        out.setdefault(name, {})["retried"] = int(n)
    return out


def _run_daemon(
    config: Path, store: Any, cycles: int, timeout: float, say: Say, env: dict[str, str]
) -> dict[str, int]:
    names = list(DEMO_ENDPOINTS)
    log = config.parent / "daemon.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "auditor", "--config", str(config), "daemon", "--poll", "0.5"],
            stdout=fh,
            stderr=fh,
            env=env,
        )
        deadline = time.monotonic() + timeout
        done: dict[str, int] = {}
        start = _completed_cycles(store, names)
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise AuditorError(f"the demo daemon exited with {proc.returncode}; see {log}")
                now = _completed_cycles(store, names)
                done = {n: now.get(n, 0) - start.get(n, 0) for n in names}
                if min(done.values()) >= cycles:
                    break
                time.sleep(0.5)
            say(f"daemon ran {min(done.values())}+ cycles per endpoint; stopping it (SIGTERM)")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    code = proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = proc.wait()
                if code != 0:
                    say(f"warning: the daemon exited with {code}; see {log}")
    return done


def run_demo(
    workdir: Path,
    *,
    cycles: int = 3,
    interval: float = 4.0,
    timeout: float = 90.0,
    report: bool = True,
    say: Say = print,
) -> DemoResult:
    """Runs the whole story in ``workdir`` (created; reused on a second run)."""
    t0 = time.monotonic()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    say(
        "training the protected model, five independent controls and an independent suspect "
        "(word trigram models with habits of their own)"
    )
    models = build_models()
    gens = models.generators()
    marked = _watermark(workdir, models, say)
    if marked is not None:
        wm, wm_config = marked
        protected = models.lms["protected"]
        gens["protected"] = lambda p, rng, t, m: protected.generate(p, rng, t, m, watermark=wm)
        say("the protected model watermarks what it serves (the owner's keyed green lists "
            f"over its {wm.tokenizer.vocab_size}-word vocabulary, exported as a tokenizer.json "
            f"for detection; key id {wm_config[0]})")
    faults = {FLAKY: Faults(rate_limited=0.15, hang=0.04, hang_seconds=2.0, retry_after=0.1)}
    env = {**os.environ, "AUDITOR_DEMO_KEY": "demo-key-not-secret"}
    env.pop("AUDITOR_CONFIG", None)
    with ModelServer({k: v for k, v in gens.items()}, faults) as server:
        say(
            f"serving them on {server.base_url} (OpenAI-compatible); {FLAKY} misbehaves on "
            "purpose: 429 with Retry-After, and hangs past the timeout"
        )
        student, harvested = distill(server.base_url, "protected", harvest_prompts())
        server.models["student"] = lambda p, rng, t, m: student.generate(p, rng, t, m)
        say(
            f"distilled a student: {harvested} answers harvested from the protected API, "
            "a fresh trigram model trained on them alone, served as 'student'"
        )
        write_canaries(workdir / "canaries")
        config = write_config(workdir, server.base_url, interval,
                              watermark=marked[1] if marked else None)
        settings = load_settings(config)
        key_path = settings.path(settings.signing.key_path)
        if not key_path.exists():  # `auditor keys init` before the first registry commit
            init_key(key_path)
        store = open_store(settings)
        try:
            with store.session() as s:
                sync_endpoints(s, settings)
            done = _run_daemon(config, store, cycles, timeout, say, env)
            result = _analyse_and_report(workdir, config, store, report, say)
        finally:
            store.close()
    result.cycles, result.harvested = done, harvested
    result.seconds = time.monotonic() - t0
    return result


def _watermark(workdir: Path, models: DemoModels,
               say: Say) -> tuple[Any, tuple[str, str, str]] | None:
    """The owner's watermark for the protected model: a key (written once, mode 0600), the
    word vocabulary exported as tokenizer.json; None without the `tokenizers` package.

    The demo's key is fixed (``DEMO_WATERMARK_KEY``, not secret), as its models and its
    server's draws are, so that every run tells the same story; a real owner makes one
    with ``auditor watermark keygen``."""
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        say("the `tokenizers` package is missing: the protected model serves unwatermarked "
            "answers (pip install 'canary-auditor[watermark]' for the watermark channel)")
        return None
    from auditor.demo.watermark import WordWatermark, demo_vocabulary
    from auditor.watermark.core import GreenList
    from auditor.watermark.keys import key_id, load_key, write_key_file
    from auditor.watermark.tokenizer import word_level_tokenizer

    keys = workdir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    key_file = keys / "watermark.key"
    if not key_file.exists():
        write_key_file(key_file, DEMO_WATERMARK_KEY)
    key = load_key(file=key_file)
    tok = word_level_tokenizer(demo_vocabulary(models.lms))
    tok.save(workdir / "watermark-tokenizer.json")
    green = GreenList(key, tok.vocab_size, gamma=float(WATERMARK["gamma"]),
                      delta=float(WATERMARK["delta"]), h=int(WATERMARK["h"]))
    return WordWatermark(green, tok), (key_id(key), "keys/watermark.key",
                                       "watermark-tokenizer.json")


def _analyse_and_report(
    workdir: Path, config: Path, store: Any, report: bool, say: Say
) -> DemoResult:
    from auditor.analysis import analyze_all
    from auditor.verdicts import verdict_json, verdict_table

    settings = load_settings(config)
    with store.session() as s:
        verdicts = analyze_all(s, settings)
        names = {e.id: e.name for e in s.scalars(select(Endpoint))}
        rows = [verdict_json(v, names) for v in verdicts if v.segment is None]
        table = verdict_table(
            [v for v in verdicts if v.segment is None], names, settings.analysis.alpha
        )
    bundle = zip_path = None
    verified = None
    if report:
        bundle, zip_path, verified = _report(settings, store, say)
    return DemoResult(
        rows, _bad_news(store), {}, bundle, zip_path, verified, alert_lines(store), 0, 0.0, table
    )


def alert_lines(store: Any) -> list[str]:
    """One line per raised alert with the pair's e-value now: an alert row is written once,
    on the first crossing, so its own message keeps the first run's value."""
    with store.session() as s:
        names = dict(s.execute(select(Endpoint.id, Endpoint.name)).tuples().all())
        rows = s.execute(
            select(Alert, MonitorState.e_value).join(
                MonitorState, (MonitorState.suspect_id == Alert.suspect_id)
                & (MonitorState.protected_id == Alert.protected_id))
            .order_by(Alert.id)).tuples().all()
        return [f"suspect {names[a.suspect_id]}: monitoring e-value {e:.4g} (alarm at "
                f"{a.threshold:.4g}) against the protected model {names[a.protected_id]!r}; "
                f"raised {a.created_at:%Y-%m-%d %H:%M:%S}Z" for a, e in rows]


def _report(settings: Any, store: Any, say: Say) -> tuple[Path, Path, str]:
    from auditor.bundle import verify_bundle, write_bundle
    from auditor.report import ReportRequest
    from auditor.signing import load_private_key

    key = load_private_key(settings.path(settings.signing.key_path))
    with store.session() as s:
        result = write_bundle(
            s, settings, ReportRequest(suspect="student", protected="protected"), key
        )
    check = verify_bundle(result.path)
    say(f"report bundle written and verified: {result.path}")
    return result.path, result.zip_path, check.summary()
