"""Report generation in the background: the same ``write_bundle`` as ``auditor report``.

A job is a row (``report_jobs``) the page polls; one worker thread runs the jobs of this
process one at a time, so a PDF rendering never competes with itself for the CPU.
"""

from __future__ import annotations

__all__ = ["JobRunner"]

import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from sqlalchemy import select, update

from auditor.bundle import write_bundle
from auditor.config import Settings
from auditor.errors import AuditorError
from auditor.report import ReportRequest
from auditor.signing import load_private_key
from auditor.store import Store, custody
from auditor.store.attempts import pid_alive
from auditor.store.models import ReportJob, utcnow
from auditor.timestamp import read_roots

log = logging.getLogger("auditor.web.jobs")


class JobRunner:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="report-job")

    @staticmethod
    def me() -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    def recover(self) -> None:
        """Jobs that a stopped portal process on this host left queued or running are
        marked failed (the page says so). Jobs of live processes, and of other hosts (their
        own portal recovers them when it restarts), are left alone."""
        host = socket.gethostname()
        with self.store.session() as s:
            for job in s.scalars(select(ReportJob).where(
                    ReportJob.status.in_(("queued", "running")))):
                j_host, _, j_pid = (job.runner or "").rpartition(":")
                if j_host != host or (j_pid.isdigit() and _alive(int(j_pid))):
                    continue
                job.status, job.finished_at = "failed", utcnow()
                job.error = ("the portal stopped before this report was finished; "
                             "generate it again")

    def submit(self, suspect: str, protected: str | None, actor: str,
               address: str | None) -> int:
        with self.store.session() as s:
            job = ReportJob(suspect=suspect, protected=protected, requested_by=actor,
                            address=address, runner=self.me(), status="queued",
                            stage="waiting", progress=0)
            s.add(job)
            s.flush()
            job_id = job.id
        self.pool.submit(self.run, job_id)
        return job_id

    def _set(self, job_id: int, **values: object) -> None:
        with self.store.session() as s:
            s.execute(update(ReportJob).where(ReportJob.id == job_id).values(**values))

    def run(self, job_id: int) -> None:
        self._set(job_id, status="running", started_at=utcnow(), stage="starting", progress=1)
        try:
            with self.store.session() as s:
                job = s.get(ReportJob, job_id)
                assert job is not None
                st = self.settings
                key = load_private_key(st.path(st.signing.key_path))
                roots = read_roots(st.path(st.timestamp.ca_file) if st.timestamp.ca_file
                                   else None)
                req = ReportRequest(suspect=job.suspect, protected=job.protected)
                result = write_bundle(
                    s, st, req, key, formats=tuple(st.web.report_formats),
                    tsa_url=st.timestamp.url, tsa_roots=roots, now=datetime.now(UTC),
                    progress=lambda stage, pct: self._set(job_id, stage=stage, progress=pct))
                custody.append(s, actor=job.requested_by, action="generate",
                               address=job.address, report_id=result.report_id,
                               manifest_sha256=result.manifest_sha256,
                               detail={"bundle": result.path.name, "job": job_id,
                                       "signer": result.signer_fingerprint})
                job.status, job.stage, job.progress = "done", "done", 100
                job.report_id, job.finished_at = result.report_id, utcnow()
        except AuditorError as exc:
            self._set(job_id, status="failed", finished_at=utcnow(), error=str(exc))
        except Exception as exc:  # a bug of ours: the page says so, the log has it
            log.exception("report job %s failed", job_id)
            self._set(job_id, status="failed", finished_at=utcnow(),
                      error=f"internal error ({type(exc).__name__}); see the portal's log")

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _alive(pid: int) -> bool:
    # this process is starting: whatever it had queued died with it
    return pid != os.getpid() and pid_alive(pid)
