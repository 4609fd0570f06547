"""Builders for the daemon tests: configs, canaries, ``auditor`` subprocesses, waiting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def canaries(n: int, samples: int = 1, prefix: str = "c") -> list[dict[str, Any]]:
    return [{"id": f"{prefix}{i:03d}", "kind": "free_text", "prompt": f"Tell me about {i}.",
             "samples": samples} for i in range(n)]


def write_canaries(directory: Path, items: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "canaries.yaml"
    path.write_text(yaml.safe_dump({"canaries": items}, sort_keys=False))
    return path


def write_config(path: Path, db_url: str, base_url: str, *, interval: str = "2s",
                 daemon: dict[str, Any] | None = None, limits: dict[str, Any] | None = None,
                 endpoints: int = 1, jitter: float = 0.0, extra: str = "",
                 roles: dict[str, tuple[str, str]] | None = None) -> Path:
    """One suspect ``ep<i>`` per ``endpoints`` at ``base_url``; or, with ``roles``, one
    endpoint per ``name -> (role, base_url)``."""
    d = {"heartbeat_seconds": 0.5, "shutdown_grace_seconds": 3, "lease_seconds": 5,
         "metrics_port": 0, "misfire_grace_seconds": 60, "watch_files": False,
         "analyze_after_cycle": True, **(daemon or {})}
    lim = {"requests_per_minute": 1e6, "concurrency": 4, "timeout_seconds": 10,
           "max_retries": 0, **(limits or {})}

    def toml(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        return repr(v)

    lines = [f'database_url = "{db_url}"', 'canaries_dir = "canaries"', extra, "[daemon]"]
    lines += [f"{k} = {toml(v)}" for k, v in d.items()]
    inline = ", ".join(f"{k} = {toml(v)}" for k, v in lim.items())
    eps = roles or {f"ep{i}": ("suspect", base_url) for i in range(endpoints)}
    for name, (role, url) in eps.items():
        lines += ["[[endpoints]]", f'name = "{name}"', 'provider = "http"', 'model = "m"',
                  f'base_url = "{url}/v1"', f'role = "{role}"',
                  f'schedule = {{ interval = "{interval}", jitter_seconds = {jitter} }}',
                  f"limits = {{ {inline} }}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def env_for(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env["PYTHONPATH"] = str(REPO)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Proc:
    """One ``auditor`` subprocess whose JSON log lines go to a file."""

    popen: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    def lines(self) -> list[dict[str, Any]]:
        out = []
        if not self.log.exists():
            return out
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"msg": line, "level": "raw"})
        return out

    def messages(self, msg: str) -> list[dict[str, Any]]:
        return [r for r in self.lines() if r.get("msg") == msg]

    def signal(self, sig: int) -> None:
        self.popen.send_signal(sig)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 20) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)


def start(tmp: Path, command: str, config: Path, name: str, *args: str) -> Proc:
    log = tmp / f"{name}.log"
    with log.open("ab") as sink:
        popen = subprocess.Popen(
            [sys.executable, "-m", "auditor", "--config", str(config), command, *args],
            cwd=tmp, env=env_for(tmp), stdout=sink, stderr=sink)
    return Proc(popen, log)


def wait_for(check: Callable[[], Any], timeout: float = 30.0, every: float = 0.1,
             what: str = "condition", procs: list[Proc] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        for p in procs or []:
            if p.popen.poll() is not None:
                raise AssertionError(f"process exited ({p.popen.returncode}) while waiting for "
                                     f"{what}; log:\n{p.log.read_text()[-4000:]}")
        time.sleep(every)
    tail = "".join(f"\n--- {p.log.name}:\n{p.log.read_text()[-3000:]}" for p in procs or [])
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{tail}")
