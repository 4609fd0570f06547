"""The long-running process: ``auditor daemon`` (schedules and works) and ``auditor worker``.

One asyncio event loop runs everything:

- an APScheduler 3 ``AsyncIOScheduler`` with one job per enabled endpoint (daemon only),
  firing on the endpoint's cron or interval with a deterministic jitter; coalesced, with
  ``daemon.misfire_grace_seconds`` of misfire grace, ``max_instances=1`` and a guard that
  skips a firing while the endpoint's previous cycle is unfinished;
- a work loop that claims attempts of any cycle with claimable work (planned,
  interrupted, or held under an expired lease) and runs them through the probe engine:
  this is all ``auditor worker`` does, and how a daemon resumes a crashed cycle;
- a heartbeat, a file watcher (``daemon.watch_files``) and the signal handlers:
  SIGTERM/SIGINT stop gracefully within ``daemon.shutdown_grace_seconds``, SIGHUP
  reloads the config and registry (keeping the last good ones when the edit is invalid);
- after a cycle completes, the analysis (when installed) and alerts, in a thread.
"""

from __future__ import annotations

__all__ = ["Daemon"]

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select

from auditor.config import Schedule, Settings
from auditor.daemon import cycles, heartbeat
from auditor.daemon.reload import FileWatcher, Loaded, load, sync_to_store
from auditor.daemon.schedule import EndpointTrigger, schedule_key, trigger_for
from auditor.endpoints import Adapter, ProbeError, Request, Result, make_adapter
from auditor.errors import AuditorError
from auditor.logs import Redactor, secrets_of
from auditor.metrics import Metrics, serve
from auditor.probe import RunOptions, run_cycle
from auditor.ratelimit import SharedLimiters
from auditor.store import Store, open_store
from auditor.store.models import Cycle, utcnow

log = logging.getLogger("auditor.daemon")

MAX_PARALLEL_CYCLES = 16
# After the grace period: time to record interrupted attempts and the stop, once each.
STOP_SETTLE_SECONDS = 2.0


class _CountingAdapter:
    """Wraps an endpoint adapter to count this process's requests by outcome, with latency."""

    def __init__(self, inner: Adapter, endpoint: str, timeout: float, metrics: Metrics) -> None:
        self.inner, self.endpoint, self.timeout, self.metrics = inner, endpoint, timeout, metrics

    async def send(self, request: Request) -> Result:
        t0 = time.perf_counter()
        outcome = "ok"
        try:
            return await self.inner.send(request)
        except ProbeError as exc:
            outcome = exc.error_class
            raise
        except asyncio.CancelledError:
            elapsed = time.perf_counter() - t0
            outcome = "timeout" if elapsed >= self.timeout * 0.98 else "cancelled"
            raise
        except Exception:
            outcome = "bad_response"
            raise
        finally:
            elapsed = time.perf_counter() - t0
            self.metrics.requests.labels(endpoint=self.endpoint, outcome=outcome).inc()
            self.metrics.latency.labels(endpoint=self.endpoint).observe(elapsed)

    async def aclose(self) -> None:
        await self.inner.aclose()


class Daemon:
    """``role="daemon"`` schedules, plans and works; ``role="worker"`` only works."""

    def __init__(
        self,
        config: str | Path | None,
        *,
        role: str = "daemon",
        redactor: Redactor | None = None,
        poll_seconds: float = 2.0,
    ) -> None:
        assert role in ("daemon", "worker")
        self.config = config
        self.role = role
        self.redactor = redactor
        self.poll_seconds = poll_seconds
        self.metrics = Metrics(role)
        self.shared_limiters = SharedLimiters()  # limits.shared holds across cycles
        self.beat = heartbeat.Beat(role)
        self.loaded: Loaded | None = None
        self.store: Store | None = None
        self.registry_root: str | None = None
        self.scheduler: AsyncIOScheduler | None = None
        self.triggers: dict[str, EndpointTrigger] = {}
        self.schedules: dict[str, Schedule] = {}
        self.cycle_tasks: dict[int, tuple[asyncio.Task[None], set[str]]] = {}
        self.watcher: FileWatcher | None = None
        self.served: Any = None
        self._stop = asyncio.Event()
        self._probe_stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._analysis: asyncio.Task[None] | None = None
        self._analysis_again = False
        self.analysis_gaps: list[dict[str, Any]] = []  # of the last analysis, for status
        self._background: list[asyncio.Task[Any]] = []
        self._signals = 0
        self.stopped_cleanly = False

    # -- state -------------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        assert self.loaded is not None
        return self.loaded.settings

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _info(self) -> dict[str, Any]:
        return {
            "cycles_in_flight": sorted(self.cycle_tasks),
            "endpoints": sorted(self.triggers),
            "registry_root": self.registry_root,
            "config_hash": self.settings.config_hash() if self.loaded else None,
            "heartbeat_seconds": self.settings.daemon.heartbeat_seconds if self.loaded else None,
            "analysis_gaps": self.analysis_gaps,
        }

    def _busy(self, name: str) -> bool:
        return any(name in names for _task, names in self.cycle_tasks.values())

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> int:
        """Runs until SIGTERM/SIGINT (or :meth:`request_stop`); returns the exit code."""
        self.loaded = await asyncio.to_thread(load, self.config,
                                              with_registry=self.role == "daemon")
        s = self.settings
        self.store = await asyncio.to_thread(open_store, s)
        self.registry_root = await asyncio.to_thread(sync_to_store, self.store, self.loaded)
        self._install_signals()
        await asyncio.to_thread(self._write_beat, "running", True)
        self.served = serve(self.metrics, s.daemon.metrics_port, s.daemon.metrics_host)
        log.info("started", extra={"role": self.role, "pid": self.beat.pid,
                                   "heartbeat_id": self.beat.id,
                                   "endpoints": [e.name for e in s.endpoints if e.enabled],
                                   "registry_root": self.registry_root,
                                   "database": s.resolved_database_url().split("://")[0]})
        if self.role == "daemon":
            self.scheduler = AsyncIOScheduler(timezone="UTC")
            self.scheduler.start()
            await self._schedule_jobs(catch_up=True)
        self.watcher = FileWatcher(self.config, s.canaries_path if self.role == "daemon"
                                   else None) if s.daemon.watch_files else None
        self._background = [asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
                            asyncio.create_task(self._work_loop(), name="work")]
        if self.watcher is not None:
            self._background.append(asyncio.create_task(self._watch_loop(), name="watch"))
        await self._stop.wait()
        await self._shutdown()
        return 0

    def request_stop(self) -> None:
        self._signals += 1
        if self._signals == 1:
            grace = self.settings.daemon.shutdown_grace_seconds
            log.info("stop requested: no new work; in-flight requests get the grace period",
                     extra={"grace_seconds": grace})
            threading.Thread(target=self._watchdog, args=(grace + 10.0,), daemon=True,
                             name="stop-watchdog").start()
        else:  # a second signal: do not wait for in-flight requests
            log.warning("second stop signal: interrupting in-flight cycles now")
            for task, _names in list(self.cycle_tasks.values()):
                task.cancel()
        self._probe_stop.set()
        self._stop.set()

    @staticmethod
    def _watchdog(limit: float) -> None:
        """Last resort when the loop itself is stuck (a blocking call): exit anyway."""
        time.sleep(limit)
        log.error("graceful stop took too long; exiting now (claims are reaped at the next "
                  "start or expire with their lease)")
        logging.shutdown()
        os._exit(0)

    def request_reload(self) -> None:
        if not self.stopping:
            asyncio.get_running_loop().create_task(self.reload("SIGHUP"))

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    async def _shutdown(self) -> None:
        """In-flight requests get the whole grace period to finish and be recorded; then
        the rest is cancelled and recorded as interrupted (``STOP_SETTLE_SECONDS`` at
        most), and every task of the process is cancelled and awaited."""
        grace = self.settings.daemon.shutdown_grace_seconds
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await _cancel([t for t in self._background if t.get_name() != "heartbeat"])
        running = [task for task, _ in self.cycle_tasks.values()]
        if running:
            _done, pending = await asyncio.wait(running, timeout=grace) if grace > 0 else (
                set(), set(running))
            if pending:
                interrupted = sorted(n for n, (t, _) in self.cycle_tasks.items()
                                     if t in pending)
                log.warning("grace period over: interrupting in-flight cycles; their "
                            "unfinished attempts resume at the next start",
                            extra={"cycles": interrupted})
                await _cancel(pending, STOP_SETTLE_SECONDS)
        await _cancel(self._background)
        if self._analysis is not None:  # its thread finishes or is abandoned at exit
            await _cancel([self._analysis], 0.5)
        try:
            await asyncio.wait_for(asyncio.to_thread(self._write_beat, "stopped", False),
                                   timeout=STOP_SETTLE_SECONDS)
        except Exception as exc:
            log.warning("could not record the stop", extra={"error": type(exc).__name__})
        if self.served is not None:
            self.served.close()
        stuck = [n for n, (t, _) in self.cycle_tasks.items() if not t.done()]
        self.stopped_cleanly = not stuck
        log.info("stopped", extra={"role": self.role, "cycles_still_stopping": stuck})

    # -- heartbeat -----------------------------------------------------------------------------

    def _write_beat(self, status: str, prune: bool = False) -> None:
        assert self.store is not None
        with self.store.session() as session:
            if prune:
                heartbeat.prune(session)
            heartbeat.beat(session, self.beat, self._info(), status=status)
        self.metrics.heartbeat.set(time.time())

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.daemon.heartbeat_seconds)
            try:
                await asyncio.to_thread(self._write_beat, "running")
                now = utcnow()
                for name, trig in self.triggers.items():
                    nxt = trig.next_fire(now)
                    if nxt is not None:
                        self.metrics.next_fire.labels(endpoint=name).set(nxt.timestamp())
            except Exception:
                log.exception("heartbeat failed")

    # -- reload --------------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        assert self.watcher is not None
        while True:
            await asyncio.sleep(1.0)
            try:
                if await asyncio.to_thread(self.watcher.changed):
                    await self.reload("file changed")
            except Exception:
                log.exception("file watch failed")

    async def reload(self, reason: str) -> bool:
        """Loads config and registry again; on any problem keeps the running ones."""
        async with self._reload_lock:
            assert self.store is not None
            try:
                loaded = await asyncio.to_thread(load, self.config,
                                                 with_registry=self.role == "daemon")
            except AuditorError as exc:
                self.metrics.reloads.labels(result="invalid").inc()
                log.error("reload failed: keeping the last good config and registry",
                          extra={"reason": reason, "error": str(exc).splitlines()[0],
                                 "problems": [str(p) for p in exc.problems]})
                return False
            old = self.settings
            for key in ("database_url", "daemon.metrics_port", "daemon.metrics_host"):
                a, b = old, loaded.settings
                for part in key.split("."):
                    a, b = getattr(a, part), getattr(b, part)
                if a != b:
                    log.warning("a changed setting takes effect at the next restart",
                                extra={"setting": key})
            try:
                root = await asyncio.to_thread(sync_to_store, self.store, loaded)
            except Exception:
                self.metrics.reloads.labels(result="error").inc()
                log.exception("reload could not be stored: keeping the running version")
                return False
            self.loaded, self.registry_root = loaded, root
            if self.redactor is not None:
                self.redactor.update(secrets_of(loaded.settings))
            if self.watcher is not None and self.role == "daemon":
                self.watcher.retarget(loaded.settings.canaries_path)
            if self.scheduler is not None:
                await self._schedule_jobs(catch_up=True)
            self.metrics.reloads.labels(result="ok").inc()
            log.info("reloaded", extra={
                "reason": reason, "registry_root": root,
                "canaries": len(loaded.registry.canaries) if loaded.registry else None,
                "endpoints": [e.name for e in loaded.settings.endpoints if e.enabled]})
            return True

    # -- scheduling ----------------------------------------------------------------------------

    async def _schedule_jobs(self, *, catch_up: bool) -> None:
        """(Re)creates one job per enabled endpoint; drops jobs of removed ones.

        With ``catch_up``, an endpoint whose latest fire time passed less than the misfire
        grace ago without a cycle (the daemon was down) fires now, once.
        """
        assert self.scheduler is not None and self.store is not None
        s = self.settings
        wanted = {ep.name: ep for ep in s.endpoints if ep.enabled}
        for name in list(self.triggers):
            if name not in wanted:
                if self.scheduler.get_job(name) is not None:
                    self.scheduler.remove_job(name)
                del self.triggers[name]
                self.schedules.pop(name, None)
                log.info("schedule removed", extra={"endpoint": name})
        now = utcnow()
        grace = s.daemon.misfire_grace_seconds
        todo: dict[str, EndpointTrigger] = {}
        for name, ep in wanted.items():
            if self.schedules.get(name) == ep.schedule and self.scheduler.get_job(name):
                continue
            todo[name] = trigger_for(ep)
        if not todo:
            return
        missed: dict[str, str] = {}
        if catch_up:
            for name, trig in todo.items():
                nominal = trig.nominal_of_fire(now)
                if nominal is not None and (now - nominal).total_seconds() <= grace:
                    missed[name] = schedule_key(name, nominal)
            if missed:
                done = await asyncio.to_thread(self._existing_keys, list(missed.values()))
                missed = {n: k for n, k in missed.items() if k not in done}
        for name, trig in todo.items():
            self.triggers[name], self.schedules[name] = trig, wanted[name].schedule
            first = now if name in missed else trig.next_fire(now)
            self.scheduler.add_job(
                self._fire, trigger=trig, args=[name], id=name, name=f"cycle:{name}",
                replace_existing=True, max_instances=1, coalesce=True,
                misfire_grace_time=int(grace), next_run_time=first)
            log.info("scheduled", extra={"endpoint": name, "trigger": str(trig),
                                         "next_fire": first, "catch_up": name in missed})

    def _existing_keys(self, keys: list[str]) -> set[str]:
        assert self.store is not None
        with self.store.session() as session:
            return set(session.scalars(select(Cycle.schedule_key)
                                       .where(Cycle.schedule_key.in_(keys))))

    async def _fire(self, name: str) -> None:
        """One scheduled firing: plan (or join) the endpoint's cycle and run it."""
        if self.stopping or self.store is None:
            return
        trig = self.triggers.get(name)
        ep = next((e for e in self.settings.endpoints if e.name == name and e.enabled), None)
        if trig is None or ep is None:
            return
        now = utcnow()
        key = schedule_key(name, trig.nominal_of_fire(now) or now)
        if self._busy(name):
            self.metrics.cycles.labels(endpoint=name, outcome="skipped_overlap").inc()
            log.warning("cycle skipped: the previous cycle is still running here",
                        extra={"endpoint": name, "schedule_key": key})
            return
        try:
            ep.api_key()
            decision = await asyncio.to_thread(cycles.plan_or_join, self.store, ep, key)
        except AuditorError as exc:
            self.metrics.cycles.labels(endpoint=name, outcome="not_planned").inc()
            log.error("cycle not planned", extra={
                "endpoint": name, "schedule_key": key, "error": str(exc).splitlines()[0],
                "problems": [str(p) for p in exc.problems]})
            return
        if decision.action == "skipped":
            self.metrics.cycles.labels(endpoint=name, outcome="skipped_overlap").inc()
            log.warning("cycle skipped: " + (decision.reason or "previous cycle unfinished"),
                        extra={"endpoint": name, "schedule_key": key})
            return
        assert decision.cycle_id is not None
        log.info(f"cycle {decision.action}", extra={
            "endpoint": name, "cycle": decision.cycle_id, "schedule_key": key,
            "attempts": decision.attempts})
        task = self._start_cycle(decision.cycle_id, {name})
        if task is not None:
            # The job stays "running" while its cycle runs (max_instances=1); shielded, so
            # that stopping the scheduler does not cut the cycle short (the stop decides).
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not self.stopping:
                    raise

    # -- running cycles ------------------------------------------------------------------------

    def _start_cycle(self, cycle_id: int, names: set[str]) -> asyncio.Task[None] | None:
        if self.stopping or cycle_id in self.cycle_tasks:
            return None
        task = asyncio.create_task(self._run_cycle(cycle_id, names),
                                   name=f"cycle-{cycle_id}")
        self.cycle_tasks[cycle_id] = (task, set(names))
        self.metrics.in_flight.set(len(self.cycle_tasks))

        def done(_t: asyncio.Task[None]) -> None:
            self.cycle_tasks.pop(cycle_id, None)
            self.metrics.in_flight.set(len(self.cycle_tasks))
            self._wake.set()

        task.add_done_callback(done)
        return task

    def _adapters(self, names: set[str]) -> dict[str, Adapter]:
        out: dict[str, Adapter] = {}
        for ep in self.settings.endpoints:
            if ep.name in names and ep.enabled:
                out[ep.name] = _CountingAdapter(make_adapter(ep), ep.name,
                                                ep.limits.timeout_seconds, self.metrics)
        return out

    async def _run_cycle(self, cycle_id: int, names: set[str]) -> None:
        assert self.store is not None
        settings = self.settings
        adapters: dict[str, Adapter] = {}
        try:
            adapters = self._adapters(names)
            options = RunOptions(stop=self._probe_stop, adapters=adapters,
                                 lease_seconds=settings.daemon.lease_seconds,
                                 shared=self.shared_limiters,
                                 on_queued=self.metrics.observe_queued)
            run = await run_cycle(self.store, settings, cycle_id,
                                  endpoints=sorted(names) or None, options=options)
        except asyncio.CancelledError:
            log.warning("cycle interrupted; its unfinished attempts resume later",
                        extra={"cycle": cycle_id})
            raise
        except AuditorError as exc:
            log.error("cycle could not run", extra={"cycle": cycle_id,
                                                    "error": str(exc).splitlines()[0]})
            return
        except Exception:
            for name in names:
                self.metrics.cycles.labels(endpoint=name, outcome="error").inc()
            log.exception("cycle failed", extra={"cycle": cycle_id})
            return
        finally:
            for adapter in adapters.values():
                try:
                    await adapter.aclose()
                except Exception:  # closing a client must not hide the cycle's outcome
                    pass
        outcome = "done" if run.done else "unfinished"
        for name in names:
            self.metrics.cycles.labels(endpoint=name, outcome=outcome).inc()
            if run.done:
                self.metrics.cycle_finished.labels(endpoint=name).set(time.time())
        counts = {n: {"ok": s.get("ok"), "failed": s.get("failed"), "skipped": s.get("skipped"),
                      "pending": s.get("pending")} for n, s in run.summary.items()}
        log.info("cycle finished" if run.done else "cycle left unfinished", extra={
            "cycle": cycle_id, "endpoints": sorted(names), "recorded": run.recorded,
            "counts": counts})
        if run.completed:
            await self._completed(cycle_id)

    async def _completed(self, cycle_id: int) -> None:
        """This process marked the cycle done (exactly one process does, whoever recorded
        its last attempt): it counts the cycle's attempts and starts the analysis."""
        assert self.store is not None
        log.info("cycle completed here: counted and analysed", extra={"cycle": cycle_id})
        try:
            await asyncio.to_thread(cycles.observe_cycle, self.store, self.metrics, cycle_id)
        except Exception as exc:
            log.error("metrics of the cycle failed", extra={
                "cycle": cycle_id, "error": f"{type(exc).__name__}: {exc}"[:500]})
        self._request_analysis()

    async def _work_loop(self) -> None:
        """Claims work of any cycle with claimable attempts (resumes crashed cycles too)."""
        assert self.store is not None
        while not self.stopping:
            try:
                found = await asyncio.to_thread(cycles.claimable_cycles, self.store)
                names = await asyncio.to_thread(self._endpoint_names)
                for cycle_id, ep_ids in sorted(found.items()):
                    if len(self.cycle_tasks) >= MAX_PARALLEL_CYCLES:
                        break
                    if cycle_id in self.cycle_tasks:
                        continue
                    eps = {names[i] for i in ep_ids if i in names}
                    log.info("resuming cycle", extra={"cycle": cycle_id,
                                                      "endpoints": sorted(eps)})
                    self._start_cycle(cycle_id, eps)
                # cycles whose last attempt was recorded by a process that died before
                # marking them done
                for cycle_id in await asyncio.to_thread(cycles.complete_orphans, self.store):
                    await self._completed(cycle_id)
            except Exception:
                log.exception("looking for work failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass

    def _endpoint_names(self) -> dict[int, str]:
        assert self.store is not None
        from auditor.store.models import Endpoint

        with self.store.session() as session:
            return dict(session.execute(select(Endpoint.id, Endpoint.name)).tuples().all())

    # -- analysis and alerts -------------------------------------------------------------------

    def _request_analysis(self) -> None:
        if self._analysis is not None and not self._analysis.done():
            self._analysis_again = True
            return
        self._analysis = asyncio.create_task(self._analyze(), name="analysis")

    async def _analyze(self) -> None:
        assert self.store is not None
        while True:
            self._analysis_again = False
            try:
                result = await asyncio.to_thread(cycles.after_cycle, self.store, self.settings,
                                                 self.metrics)
                self.analysis_gaps = result.get("gaps", [])
                if result.get("alerts"):
                    log.info("alerts raised", extra={"alerts": result["alerts"]})
            except Exception:
                log.exception("analysis or alerting failed; tried again after the next cycle")
            if not self._analysis_again or self.stopping:
                return


async def _cancel(tasks: Any, timeout: float | None = None) -> None:
    """Cancels ``tasks`` and waits (up to ``timeout``) until they have ended."""
    tasks = [t for t in tasks if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)


async def _cancel_leftovers() -> None:
    """Tasks still pending when the daemon returns (a job's firing, say) are cancelled
    and awaited: none is destroyed pending when the loop closes."""
    me = asyncio.current_task()
    await _cancel([t for t in asyncio.all_tasks() if t is not me], STOP_SETTLE_SECONDS)


def run_blocking(daemon: Daemon, on_exit: Callable[[int], None] | None = None) -> int:
    """Runs ``daemon`` on a fresh event loop; returns its exit code.

    Threads still busy after the stop (a database call, an analysis) do not hold the exit
    back: their transactions roll back and the next start resumes the work.
    """
    loop = asyncio.new_event_loop()
    try:
        code = loop.run_until_complete(daemon.run())
    finally:
        try:
            loop.run_until_complete(_cancel_leftovers())
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
    if daemon.store is not None:
        try:
            daemon.store.close()
        except Exception:
            pass
    busy = [t for t in threading.enumerate()
            if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if busy and on_exit is not None:
        on_exit(code)
    return code
