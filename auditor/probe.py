"""The probe engine: run a planned cycle concurrently, within limits, and record it.

Planning, claiming and recording live in :mod:`auditor.store.attempts`; this module
drives them. One run of a cycle, per endpoint:

- a feeder claims planned attempts in batches (under a lease, renewed while held);
- ``concurrency`` workers send them through the endpoint's adapter, paced by the
  endpoint's token buckets and daily budget, retrying retryable failures with backoff;
  endpoints naming one ``limits.shared`` also queue for its slots (time in the queue is
  not latency: it is reported as ``queue_p50_ms`` / ``queue_p95_ms``);
- one recorder stores outcomes in batches: attempt rows, responses, ledger links, in
  one transaction per batch. All database work runs on one thread, in order.

A process that dies leaves its claims ``running``; the next run on the same host frees
them at once (the claimer's pid is gone), other hosts after the lease. Completed
attempts are never claimed again, and a response is stored only by the claim holder.

Entry points for the CLI and the daemon: :func:`run_cycle`, :func:`resume`,
:func:`probe_once` (and their ``*_sync`` wrappers).
"""

from __future__ import annotations

__all__ = [
    "CycleRun",
    "RunOptions",
    "prepare",
    "probe_once",
    "probe_once_sync",
    "resume",
    "resume_sync",
    "run_cycle",
    "run_cycle_sync",
]

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from auditor.canary import Canary
from auditor.canonical import sha256_hex
from auditor.config import Endpoint as EndpointConfig
from auditor.config import Settings
from auditor.endpoints import Adapter, ProbeError, Request, Result, make_adapter, request_for
from auditor.errors import AuditorError, Problem
from auditor.ratelimit import (
    Backoff,
    Budget,
    BudgetWait,
    EndpointLimiter,
    SharedLimiters,
    retry_after,
)
from auditor.registry import load_registry, stored_canary, sync_registry
from auditor.store import Store, sync_endpoints
from auditor.store import attempts as at
from auditor.store.models import Attempt, CanaryVersion, Cycle, Endpoint, utcnow

log = logging.getLogger("auditor.probe")
T = TypeVar("T")
_DONE = object()


@dataclass
class RunOptions:
    """Knobs of one run; the defaults suit production."""

    worker: str | None = None
    claim_batch: int | None = None  # default: max(32, 4 x concurrency)
    record_batch: int = 500
    record_interval: float = 0.05
    lease_seconds: float | None = None  # default: settings.daemon.lease_seconds
    backoff: Backoff = field(default_factory=Backoff)
    stop: asyncio.Event | None = None
    on_progress: Callable[[int], None] | None = None
    adapters: dict[str, Adapter] | None = None  # by endpoint name; for tests
    shared: SharedLimiters = field(default_factory=SharedLimiters)  # one per process
    on_queued: Callable[[str, str, float], None] | None = None  # endpoint, limit, seconds


@dataclass(frozen=True)
class CycleRun:
    cycle_id: int
    done: bool
    recorded: int
    summary: dict[str, Any]
    completed: bool = False  # this run marked the cycle done (one run of any process does)


class _Db:
    """All database work of a run, one transaction per call, on one thread, in order."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe-db")

    def _tx(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.store.session() as session:
            return fn(session, *args, **kwargs)

    async def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, partial(self._tx, fn, *args, **kwargs))

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def _load_canaries(session: Session, ids: Sequence[int]) -> dict[int, Canary | AuditorError]:
    """The versions as canaries; one that no longer loads maps to why (its attempts are
    skipped, the rest of the cycle goes on)."""
    out: dict[int, Canary | AuditorError] = {}
    for v in session.scalars(select(CanaryVersion).where(CanaryVersion.id.in_(list(ids)))):
        try:
            out[v.id] = stored_canary(v)
        except AuditorError as exc:
            out[v.id] = exc
    return out


def unloadable(store: Store) -> list[AuditorError]:
    """Why each version that unfinished attempts point at does not load (none: empty)."""
    with store.session() as session:
        ids = session.scalars(select(Attempt.canary_version_id)
                              .where(Attempt.status.in_(at.UNFINISHED)).distinct())
        return [c for c in _load_canaries(session, list(ids)).values()
                if isinstance(c, AuditorError)]


class _Recorder:
    def __init__(self, db: _Db, worker: str, options: RunOptions) -> None:
        self.db, self.worker, self.options = db, worker, options
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=4 * options.record_batch)
        self.recorded = 0

    async def put(self, outcome: at.Outcome) -> None:
        await self.queue.put(outcome)

    async def run(self) -> None:
        size = self.options.record_batch
        while True:
            first = await self.queue.get()
            if first is _DONE:
                return
            batch = [first]
            if self.queue.qsize() < size:
                await asyncio.sleep(self.options.record_interval)
            finished = False
            while len(batch) < size and not self.queue.empty():
                item = self.queue.get_nowait()
                if item is _DONE:
                    finished = True
                    break
                batch.append(item)
            await self.flush(batch)
            if finished:
                return

    async def flush(self, batch: list[at.Outcome]) -> None:
        stored = await self.db(at.record, self.worker, batch)
        self.recorded += stored
        if stored != len(batch):
            log.warning("claims_lost", extra={"lost": len(batch) - stored})
        if self.options.on_progress:
            self.options.on_progress(len(batch))


class _EndpointRun:
    """One endpoint's share of a cycle: feeder, workers, limits, budget."""

    def __init__(self, run: _CycleRunner, cfg: EndpointConfig, endpoint_id: int,
                 adapter: Adapter, spent_today: float) -> None:
        self.run, self.cfg, self.endpoint_id, self.adapter = run, cfg, endpoint_id, adapter
        self.limiter = EndpointLimiter(cfg.limits)
        self.budget = Budget(cfg.limits, spent_today)
        name = cfg.limits.shared
        self.shared = (run.options.shared.get(name, run.settings.shared_limits[name])
                       if name is not None else None)
        self.queued: list[float] = []  # seconds each request waited for the shared limit
        conc = cfg.limits.concurrency
        # claim about two seconds of work at the configured rate, at most 256: enough to
        # keep the workers busy, little left stranded if this process dies
        two_seconds = int(cfg.limits.requests_per_minute / 30)
        self.batch = run.options.claim_batch or max(2 * conc, min(256, two_seconds))
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.batch)
        self.canaries: dict[int, Canary | AuditorError] = {}
        self.warm = asyncio.Event()
        self.warming = False

    async def go(self) -> None:
        workers = [asyncio.create_task(self._work()) for _ in range(self.cfg.limits.concurrency)]
        try:
            await self._feed()
            for _ in workers:
                await self.queue.put(None)
            await asyncio.gather(*workers)
        finally:  # when cancelled (a stop): the workers are cancelled and awaited too
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        if self.budget.exhausted:
            n = await self.run.db(at.skip_remaining, self.run.cycle_id, self.endpoint_id,
                                  error_class="budget",
                                  message="daily budget reached")
            log.info("budget_reached", extra={"endpoint": self.cfg.name, "skipped": n})
            if self.run.options.on_progress and n:
                self.run.options.on_progress(n)

    async def _feed(self) -> None:
        while not self.run.stopping() and not self.budget.exhausted:
            claimed = await self.run.db(at.claim, self.run.cycle_id, self.endpoint_id,
                                        self.run.worker, limit=self.batch,
                                        lease_seconds=self.run.lease)
            if not claimed:
                return
            missing = {c.canary_version_id for c in claimed} - set(self.canaries)
            if missing:
                loaded = await self.run.db(_load_canaries, sorted(missing))
                for why in (c for c in loaded.values() if isinstance(c, AuditorError)):
                    log.warning("canary_does_not_load", extra={"endpoint": self.cfg.name,
                                                               "error": str(why)})
                self.canaries.update(loaded)
            for item in claimed:
                await self.queue.put(item)

    async def _work(self) -> None:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            try:
                outcome = await self._attempt(item)
            except asyncio.CancelledError:
                raise
            if outcome is not None:
                await self.run.recorder.put(outcome)

    async def _wait_warm(self) -> bool:
        """The first request of an endpoint goes alone.

        A fresh client pays its setup (imports, connection) on its first request; sent
        together, the first burst would leave late and bunch up with the next one, which
        a server would see as more than the rate allows.
        """
        if self.warm.is_set():
            return False
        if not self.warming:
            self.warming = True
            return True
        await self.warm.wait()
        return False

    def _outcome(self, item: at.Claimed, status: str, tries: int, **kw: Any) -> at.Outcome:
        return at.Outcome(attempt_id=item.id, endpoint_id=item.endpoint_id,
                          canary_version_id=item.canary_version_id,
                          sample_index=item.sample_index, status=status, tries=tries, **kw)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """A slot of the shared limit, if the endpoint names one; the wait is recorded."""
        if self.shared is None:
            yield
            return
        async with self.shared.slot() as waited:
            self.queued.append(waited)
            if self.run.options.on_queued is not None:
                self.run.options.on_queued(self.cfg.name, self.shared.name, waited)
            yield

    async def _send(self, request: Request) -> tuple[Result | None, ProbeError | None]:
        """One try: the result, or the error it is recorded as."""
        timeout = self.cfg.limits.timeout_seconds
        try:
            async with asyncio.timeout(timeout):  # the whole answer
                return await self.adapter.send(request), None
        except TimeoutError:
            return None, ProbeError("timeout", f"no complete answer in {timeout}s")
        except ProbeError as exc:
            return None, exc
        except OSError as exc:  # a transport error the adapter did not translate
            return None, ProbeError("connection", f"{type(exc).__name__}: {exc}")

    async def _attempt(self, item: at.Claimed) -> at.Outcome | None:
        canary = self.canaries[item.canary_version_id]
        if isinstance(canary, AuditorError):
            return self._outcome(item, "skipped", item.tries, error_class="bad_canary",
                                 error_message=str(canary)[:2000])
        request = request_for(self.cfg, canary)
        estimate = request.estimated_tokens()
        prompt_estimate = estimate - request.max_tokens
        tries, started = item.tries, None
        limits, backoff = self.cfg.limits, self.run.options.backoff
        for retry in range(limits.max_retries + 1):
            if self.run.stopping():
                await self.run.db(at.release, self.run.worker, [item.id],
                                  status="interrupted" if retry else "planned")
                return None
            while True:
                try:
                    reserved = self.budget.reserve(prompt_estimate, request.max_tokens)
                    break
                except BudgetWait:
                    await asyncio.sleep(0.02)
            if reserved is None:
                return self._outcome(item, "skipped", tries, error_class="budget",
                                     error_message="daily budget reached", started_at=started)
            await self._wait_warm()
            await self.limiter.acquire(estimate)
            async with self._slot():
                started = started or utcnow()
                tries += 1
                t0 = time.perf_counter()
                try:
                    result, error = await self._send(request)
                except Exception as exc:  # our bug (TypeError, ...): not the endpoint's fault
                    self.run.fail(self.cfg, exc)
                    await self.run.db(at.release, self.run.worker, [item.id],
                                      status="interrupted",
                                      message=f"not sent or not recorded: {type(exc).__name__}")
                    return None
                latency = (time.perf_counter() - t0) * 1000.0
            self.warm.set()
            if result is not None:
                used = (result.prompt_tokens or 0) + (result.completion_tokens or 0)
                self.budget.settle(reserved, result.prompt_tokens, result.completion_tokens)
                self.limiter.settle(estimate, used if used else None)
                self.limiter.observe(result.headers)
                return self._outcome(item, "ok", tries, started_at=started,
                                     latency_ms=latency, http_status=result.http_status,
                                     request_id=result.request_id, response=_columns(result))
            assert error is not None
            self.budget.settle(reserved, 0, 0)
            hint = retry_after(error.headers)
            self.limiter.observe(error.headers)
            if error.error_class == "rate_limited" and hint:
                self.limiter.pause(min(hint, backoff.max_retry_after))
            log.debug("attempt_error", extra={"endpoint": self.cfg.name, "attempt": item.id,
                                              "error_class": error.error_class,
                                              "http_status": error.http_status})
            last = retry == limits.max_retries
            retryable = error.retryable and (limits.retry_timeouts
                                             or error.error_class != "timeout")
            if not retryable or last or (hint or 0) > backoff.max_retry_after:
                return self._outcome(item, "failed", tries, started_at=started,
                                     latency_ms=latency, http_status=error.http_status,
                                     error_class=error.error_class,
                                     error_message=error.message, request_id=error.request_id)
            await asyncio.sleep(backoff.delay(retry, hint))
        raise AssertionError("unreachable")


def _columns(result: Result) -> dict[str, Any]:
    return {
        "text": result.text,
        "finish_reason": _cut(result.finish_reason, 32),
        "reported_model": _cut(result.reported_model, 200),
        "system_fingerprint": _cut(result.system_fingerprint, 200),
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "logprobs": result.logprobs,
        "raw_sha256": sha256_hex(result.raw_body),
        "raw_body": result.raw_body.decode("utf-8", errors="replace"),
        "collected_at": utcnow(),
    }


def _queue_stats(waits: list[float]) -> dict[str, float | None]:
    """p50 and p95 of the time requests waited for their shared limit, in ms."""
    ranked = sorted(waits)

    def at_share(p: float) -> float | None:
        return round(ranked[int(p * (len(ranked) - 1))] * 1000.0, 1) if ranked else None

    return {"queue_p50_ms": at_share(0.50), "queue_p95_ms": at_share(0.95)}


def _cut(value: Any, n: int) -> str | None:
    return None if value is None else str(value)[:n]


def _cycle_start(session: Session, cycle_id: int) -> dict[int, str]:
    cycle = session.get(Cycle, cycle_id)
    if cycle is None:
        raise AuditorError(f"no cycle {cycle_id} in the store")
    if cycle.status == "planned":
        cycle.status, cycle.started_at = "running", utcnow()
    ids = set(session.scalars(select(Attempt.endpoint_id).where(
        Attempt.cycle_id == cycle_id, Attempt.status.in_(at.UNFINISHED)).distinct()))
    at.reap_dead_claims(session, cycle_id)
    return dict(session.execute(
        select(Endpoint.id, Endpoint.name).where(Endpoint.id.in_(ids))).tuples().all())


def _prices(session: Session, settings: Settings) -> dict[int, tuple[float, float]]:
    out = {}
    for ep_id, name in session.execute(select(Endpoint.id, Endpoint.name)).tuples():
        cfg = next((e for e in settings.endpoints if e.name == name), None)
        if cfg is not None:
            out[ep_id] = (cfg.limits.price_per_million_input_tokens / 1e6,
                          cfg.limits.price_per_million_output_tokens / 1e6)
    return out


def _spent(session: Session, endpoint_id: int, cfg: EndpointConfig) -> float:
    p, c = at.spent_today(session, endpoint_id)
    return (p * cfg.limits.price_per_million_input_tokens
            + c * cfg.limits.price_per_million_output_tokens) / 1e6


class _CycleRunner:
    def __init__(self, store: Store, settings: Settings, cycle_id: int,
                 options: RunOptions) -> None:
        self.settings, self.cycle_id, self.options = settings, cycle_id, options
        self.worker = options.worker or at.worker_id()
        self.lease = options.lease_seconds or settings.daemon.lease_seconds
        self.db = _Db(store)
        self.recorder = _Recorder(self.db, self.worker, options)
        self.failure: AuditorError | None = None

    def stopping(self) -> bool:
        return self.failure is not None or (
            self.options.stop is not None and self.options.stop.is_set())

    def fail(self, cfg: EndpointConfig, exc: Exception) -> None:
        """An error in our code, not the endpoint's: the run stops, nothing is recorded
        against the endpoint, and the error ends the run loudly."""
        log.error("adapter_bug", extra={"endpoint": cfg.name, "error": type(exc).__name__,
                                        "detail": str(exc)[:500]})
        if self.failure is None:
            self.failure = AuditorError(
                f"endpoint {cfg.name!r}: the {cfg.provider} adapter failed with "
                f"{type(exc).__name__}: {exc}",
                [Problem("a bug in the auditor or an SDK release it does not support, not "
                         "the endpoint's fault; the run stopped and its unsent attempts are "
                         "kept", fix="reinstall the auditor (pip install -e .) so the SDKs are "
                         "within the ranges pyproject.toml gives, then `auditor probe "
                         "--resume`; if it persists, report it with the log")])
            self.failure.__cause__ = exc

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.db(at.renew, self.worker, self.lease)
            except Exception as exc:  # the next renewal may succeed; the lease has slack
                log.warning("lease_renewal_failed", extra={"error": type(exc).__name__})

    async def run(self, only: Sequence[str] | None) -> CycleRun:
        owned: list[Adapter] = []
        renewer = recorder = sending = None
        try:
            names = await self.db(_cycle_start, self.cycle_id)
            runs = []
            for ep_id, name in sorted(names.items()):
                if only is not None and name not in only:
                    continue
                cfg = next((e for e in self.settings.endpoints if e.name == name), None)
                if cfg is None or not cfg.enabled:
                    why = "not in the config" if cfg is None else "disabled in the config"
                    n = await self.db(at.skip_remaining, self.cycle_id, ep_id,
                                      error_class="config", message=f"endpoint {why}")
                    if self.options.on_progress and n:
                        self.options.on_progress(n)
                    continue
                given = (self.options.adapters or {}).get(name)
                adapter = given or make_adapter(cfg)
                if given is None:
                    owned.append(adapter)
                spent = await self.db(_spent, ep_id, cfg)
                runs.append(_EndpointRun(self, cfg, ep_id, adapter, spent))
            recorder = asyncio.create_task(self.recorder.run())
            renewer = asyncio.create_task(self._renew())
            sending = asyncio.ensure_future(asyncio.gather(*(r.go() for r in runs)))
            both: set[asyncio.Future[Any]] = {sending, recorder}
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
            if recorder.done():  # it only ends early when storing failed: stop sending
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)
                recorder.result()
                raise RuntimeError("recorder stopped early")
            await sending
            await self.recorder.queue.put(_DONE)
            await recorder
            if self.failure is not None:
                raise self.failure
            prices = await self.db(_prices, self.settings)
            finished = await self.db(at.finish_cycle, self.cycle_id, prices)
            done = finished is not None
            summary = await self.db(at.summarize, self.cycle_id, prices)
            for r in runs:
                if r.shared is not None and r.cfg.name in summary:
                    summary[r.cfg.name].update(_queue_stats(r.queued))
            log.info("cycle_run", extra={"cycle": self.cycle_id, "done": done,
                                         "recorded": self.recorder.recorded})
            return CycleRun(self.cycle_id, done, self.recorder.recorded, summary,
                            completed=finished == "completed")
        finally:
            if sending is not None and not sending.done():  # cancelled: stop the senders
                sending.cancel()  # before the database they record into closes
                await asyncio.gather(sending, return_exceptions=True)
            if recorder is not None and not recorder.done():
                recorder.cancel()
            if renewer is not None:
                renewer.cancel()
            try:  # whatever is still claimed (cancelled, crashed) goes back to the to-do list
                await asyncio.shield(self.db(at.release, self.worker, status="interrupted",
                                             message="run ended before the answer"))
            finally:
                for adapter in owned:
                    await adapter.aclose()
                self.db.close()


async def run_cycle(store: Store, settings: Settings, cycle_id: int, *,
                    endpoints: Sequence[str] | None = None,
                    options: RunOptions | None = None) -> CycleRun:
    """Sends every unfinished attempt of the cycle (of ``endpoints``, default all) and
    records the outcomes. Safe to call again after a crash: it resumes."""
    return await _CycleRunner(store, settings, cycle_id, options or RunOptions()).run(endpoints)


async def resume(store: Store, settings: Settings, *, endpoints: Sequence[str] | None = None,
                 options: RunOptions | None = None) -> list[CycleRun]:
    """Finishes every unfinished probe or fingerprint cycle, oldest first."""
    with store.session() as session:
        ids = None
        if endpoints is not None:
            ids = list(session.scalars(select(Endpoint.id).where(Endpoint.name.in_(endpoints))))
        cycles = at.unfinished_cycles(session, ids)
    return [await run_cycle(store, settings, c, endpoints=endpoints, options=options)
            for c in cycles]


def prepare(store: Store, settings: Settings, *, kind: str = "probe",
            endpoints: Sequence[str] | None = None, canaries: Sequence[str] | None = None,
            schedule_key: str | None = None) -> at.Planned:
    """Loads and syncs the registry and endpoints, then plans and commits a cycle."""
    if endpoints:
        chosen = [settings.endpoint(n) for n in endpoints]
        off = [e.name for e in chosen if not e.enabled]
        if off:
            raise AuditorError(f"endpoint(s) {', '.join(off)} are disabled",
                               [Problem("enabled = false in the config",
                                        fix="set enabled = true, or leave them out")])
    elif kind == "fingerprint":
        chosen = settings.by_role("protected")
        if not chosen:
            raise AuditorError("no enabled endpoint has role 'protected'; "
                               "set role = \"protected\" on the model you protect")
    else:
        chosen = [e for e in settings.endpoints if e.enabled]
    for ep in chosen:
        ep.api_key()  # a missing key variable stops us before anything is planned
    registry = load_registry(settings.canaries_path)
    with store.session() as session:
        sync_registry(session, registry)
        sync_endpoints(session, settings)
        return at.plan_cycle(session, chosen, kind=kind, canary_ids=canaries,
                             schedule_key=schedule_key)


async def probe_once(store: Store, settings: Settings, *, kind: str = "probe",
                     endpoints: Sequence[str] | None = None,
                     canaries: Sequence[str] | None = None,
                     options: RunOptions | None = None) -> CycleRun:
    """Plans one cycle now (committed first) and runs it."""
    planned = prepare(store, settings, kind=kind, endpoints=endpoints, canaries=canaries)
    return await run_cycle(store, settings, planned.cycle_id, options=options)


def run_cycle_sync(*args: Any, **kwargs: Any) -> CycleRun:
    return asyncio.run(run_cycle(*args, **kwargs))


def resume_sync(*args: Any, **kwargs: Any) -> list[CycleRun]:
    return asyncio.run(resume(*args, **kwargs))


def probe_once_sync(*args: Any, **kwargs: Any) -> CycleRun:
    return asyncio.run(probe_once(*args, **kwargs))
