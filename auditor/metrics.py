"""Prometheus metrics of one daemon or worker process, served as text on a local port.

Counters count what *this* process did since it started (Prometheus sums processes and
handles restarts); gauges of verdicts and e-values are read from the store after each
analysis, so every daemon shows the same numbers. ``daemon.metrics_port = 0`` serves
nothing.
"""

from __future__ import annotations

__all__ = ["Metrics", "serve"]

import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from auditor.store.models import Alert, Endpoint, MonitorState, Verdict

log = logging.getLogger("auditor.metrics")

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


class Metrics:
    """The process's metric families, in a registry of their own (no global state)."""

    def __init__(self, role: str = "daemon") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.attempts = Counter(
            "auditor_attempts", "Attempts of the cycles this process completed (marked done: "
            "one process per cycle), by final outcome (ok, skipped, or the error class).",
            ["endpoint", "outcome"], registry=r)
        self.requests = Counter(
            "auditor_requests", "Requests this process sent (each try), by outcome "
            "(ok or the error class).", ["endpoint", "outcome"], registry=r)
        self.latency = Histogram(
            "auditor_request_latency_seconds", "Latency of requests (each try).",
            ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.attempt_latency = Histogram(
            "auditor_attempt_latency_seconds", "Latency of finished attempts (last try), "
            "counted by the process that completed their cycle.",
            ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.queued = Histogram(
            "auditor_shared_limit_wait_seconds", "Time requests waited for a slot of their "
            "shared limit (limits.shared) before being sent; not part of the latency.",
            ["limit", "endpoint"], buckets=(0.0,) + _LATENCY_BUCKETS, registry=r)
        self.cycles = Counter(
            "auditor_cycles", "Cycles this process ran to the end or stopped, by outcome.",
            ["endpoint", "outcome"], registry=r)
        self.cycle_finished = Gauge(
            "auditor_last_cycle_finished_timestamp_seconds",
            "When the endpoint's last cycle run by this process ended (Unix time).",
            ["endpoint"], registry=r)
        self.next_fire = Gauge(
            "auditor_next_cycle_timestamp_seconds", "When the endpoint's next cycle fires.",
            ["endpoint"], registry=r)
        self.e_value = Gauge(
            "auditor_monitor_e_value", "Current e-value of the (suspect, protected) e-process.",
            ["suspect", "protected"], registry=r)
        self.verdict_p = Gauge(
            "auditor_last_verdict_p_value", "p-value of the latest verdict per suspect.",
            ["suspect", "protected", "method"], registry=r)
        self.verdict_significant = Gauge(
            "auditor_last_verdict_significant", "1 if the latest verdict is significant.",
            ["suspect", "protected", "method"], registry=r)
        self.alerts = Counter("auditor_alerts", "Alerts this process wrote.", registry=r)
        self.analysis_failures = Counter(
            "auditor_analysis_failures", "Analysis failures, by (suspect, protected) pair and "
            "channel ('*': the whole pair; all three '*': the whole analysis).",
            ["suspect", "protected", "channel"], registry=r)
        self.analysis_left_out = Gauge(
            "auditor_analysis_channel_left_out", "1 while a channel is left out of the pair's "
            "verdict for lack of controls or data (latest analysis).",
            ["suspect", "protected", "channel"], registry=r)
        self.analysis_ok = Gauge(
            "auditor_last_analysis_ok_timestamp_seconds",
            "When the last analysis run by this process ended without failure (Unix time).",
            registry=r)
        self.alerts_undeliverable = Gauge(
            "auditor_alerts_undeliverable", "Alerts some webhook refused max_deliveries times "
            "(offered again once per resume_after_seconds), from the store.", registry=r)
        self.reloads = Counter("auditor_reloads", "Config and registry reloads, by result.",
                               ["result"], registry=r)
        self.heartbeat = Gauge("auditor_heartbeat_timestamp_seconds",
                               "Last heartbeat of this process (Unix time).", registry=r)
        self.in_flight = Gauge("auditor_cycles_in_flight", "Cycles this process is running.",
                               registry=r)
        self.up = Gauge("auditor_up", "1 while the process runs.", ["role"], registry=r)
        self.up.labels(role=role).set(1)

    # -- observations ----------------------------------------------------------------------

    def observe_attempt(self, endpoint: str, status: str, error_class: str | None,
                        latency_ms: float | None) -> None:
        """One finished attempt (its final outcome; the latency of its last try)."""
        outcome = status if status in ("ok", "skipped") else (error_class or status)
        self.attempts.labels(endpoint=endpoint, outcome=outcome).inc()
        if latency_ms is not None:
            self.attempt_latency.labels(endpoint=endpoint).observe(latency_ms / 1000.0)

    def observe_queued(self, endpoint: str, limit: str, seconds: float) -> None:
        """One request's wait for a slot of a shared limit."""
        self.queued.labels(limit=limit, endpoint=endpoint).observe(seconds)

    def refresh_from_store(self, session: Session) -> None:
        """Latest verdict and e-value per (suspect, protected) pair, from the store."""
        names = dict(session.execute(select(Endpoint.id, Endpoint.name)).tuples().all())
        for state in session.scalars(select(MonitorState)):
            self.e_value.labels(suspect=names.get(state.suspect_id, "?"),
                                protected=names.get(state.protected_id, "?")).set(state.e_value)
        self.alerts_undeliverable.set(sum(
            1 for delivery in session.scalars(select(Alert.delivery)
                                              .where(Alert.delivered_at.is_(None)))
            if any(isinstance(v, dict) and v.get("undeliverable")
                   for v in (delivery or {}).values())))
        latest = (select(Verdict.suspect_id, Verdict.protected_id, Verdict.method,
                         func.max(Verdict.id).label("id"))
                  .where(Verdict.segment.is_(None))
                  .group_by(Verdict.suspect_id, Verdict.protected_id, Verdict.method).subquery())
        rows = session.execute(select(Verdict).join(latest, Verdict.id == latest.c.id)).scalars()
        for v in rows:
            labels = {"suspect": names.get(v.suspect_id, "?"),
                      "protected": names.get(v.protected_id, "?"), "method": v.method}
            self.verdict_p.labels(**labels).set(v.p_value)
            self.verdict_significant.labels(**labels).set(1.0 if v.significant else 0.0)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _Served:
    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self.server, self.thread = server, thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(metrics: Metrics, port: int, host: str = "127.0.0.1") -> _Served | None:
    """Serves ``/metrics`` on ``host:port`` in a daemon thread; ``port = 0`` serves nothing."""
    if port == 0:
        return None
    from prometheus_client import start_http_server

    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    log.info("metrics served", extra={"host": host, "port": port})
    return _Served(server, thread)
