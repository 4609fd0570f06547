"""The daemon's configuration: load, validate, keep the last good version, watch files.

A reload (SIGHUP, or a changed file when ``daemon.watch_files`` is on) reads the config
file and the canary registry again. Only when both are valid do they replace the running
ones and reach the store; an invalid edit is logged with its file:line problems and the
daemon carries on with what it had.
"""

from __future__ import annotations

__all__ = ["FileWatcher", "Loaded", "load", "sync_to_store"]

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import IntegrityError, OperationalError

from auditor.config import Settings, config_path, load_settings
from auditor.errors import AuditorError
from auditor.registry import (
    Registry,
    attest_configured,
    commit_registry,
    load_registry,
    sync_registry,
)
from auditor.store import Store, sync_endpoints

log = logging.getLogger("auditor.daemon")


@dataclass(frozen=True)
class Loaded:
    """A valid config and registry, loaded together."""

    settings: Settings
    registry: Registry | None  # None for workers: they never read the registry files


def load(path: str | Path | None, *, with_registry: bool = True) -> Loaded:
    """Reads and validates both; raises :class:`AuditorError` naming every problem."""
    settings = load_settings(path)
    registry = load_registry(settings.canaries_path) if with_registry else None
    return Loaded(settings, registry)


def sync_to_store(store: Store, loaded: Loaded, *, attempts: int = 5) -> str | None:
    """Writes endpoints and new canary versions; returns the registry's Merkle root.

    Several daemons may sync the same edit at once: a unique-key collision means another
    one stored it first, so we read again and find nothing left to write.
    """
    for attempt in range(1, attempts + 1):
        try:
            with store.session() as session:
                sync_endpoints(session, loaded.settings)
                if loaded.registry is None:
                    return None
                result = sync_registry(session, loaded.registry)
                rc = commit_registry(session)
                root, commit_id, attested = rc.root, rc.id, rc.attestation is not None
            if not attested:
                _attest(store, loaded.settings, commit_id)
            if result.created or result.retired:
                log.info("registry synced", extra={
                    "canaries_created": result.created, "canaries_retired": result.retired,
                    "root": root})
            return root
        except (IntegrityError, OperationalError) as exc:
            if attempt == attempts:
                raise
            log.info("registry sync collided with another process; retrying",
                     extra={"error": type(exc).__name__})
            time.sleep(0.2 * attempt)
    return None


def _attest(store: Store, settings: Settings, commit_id: int) -> None:
    """Signs the registry commitment with the configured key and timestamps it, as
    ``auditor canaries commit`` does; a failure is logged and leaves it for the next one."""
    from auditor.store.models import RegistryCommit

    try:
        with store.session() as session:
            rc = session.get(RegistryCommit, commit_id)
            att = attest_configured(rc, settings) if rc is not None else None
    except (AuditorError, OSError) as exc:
        log.warning("registry commitment not attested", extra={
            "commit": commit_id, "error": str(exc).splitlines()[0],
            "fix": "check signing.key_path and timestamp.url; `auditor canaries commit` "
                   "attests it by hand"})
        return
    if att:
        log.info("registry commitment attested", extra={
            "commit": commit_id,
            "signer": att.get("statement", {}).get("signer_fingerprint"),
            "timestamped_at": att.get("timestamped_at")})


class FileWatcher:
    """Notices edits by polling modification times (cheap: a config and a few YAML files)."""

    def __init__(self, config: str | Path | None, canaries_dir: Path | None) -> None:
        self.config = config_path(config)
        self.canaries_dir = canaries_dir
        self.last = self.snapshot()

    def retarget(self, canaries_dir: Path | None) -> None:
        self.canaries_dir = canaries_dir
        self.last = self.snapshot()

    def snapshot(self) -> dict[str, tuple[int, int]]:
        paths: list[Path] = []
        if self.config is not None:
            paths.append(self.config)
        if self.canaries_dir is not None and self.canaries_dir.is_dir():
            paths += [p for p in self.canaries_dir.rglob("*") if p.suffix in {".yaml", ".yml"}]
        out: dict[str, tuple[int, int]] = {}
        for p in paths:
            try:
                st = p.stat()
            except OSError:
                continue
            out[str(p)] = (st.st_mtime_ns, st.st_size)
        return out

    def changed(self) -> bool:
        """True once per change (the new state becomes the reference)."""
        now = self.snapshot()
        if now != self.last:
            self.last = now
            return True
        return False
