"""Rate limits are kept, and the servers' pacing headers are understood."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from probe.helpers import FAST, canary, endpoint, make_settings, run
from probe.servers import FakeServer

from auditor.config import Limits
from auditor.metrics import Metrics
from auditor.probe import RunOptions, prepare, run_cycle
from auditor.ratelimit import (
    Backoff,
    Budget,
    BudgetWait,
    EndpointLimiter,
    SharedLimiters,
    TokenBucket,
    parse_duration_header,
    reset_delay,
    retry_after,
)
from auditor.store import open_store


def _max_excess(times: list[float], rate: float, slack: float) -> float:
    """Largest (requests in a window) - (rate x window length + slack) over all windows."""
    times = sorted(times)
    worst = float("-inf")
    for i in range(len(times)):
        for j in range(i, len(times)):
            count = j - i + 1
            worst = max(worst, count - rate * (times[j] - times[i] + slack))
    return worst


@pytest.mark.parametrize("provider", ["openai", "http"])
def test_requests_never_exceed_the_rate_by_more_than_one_burst(
        tmp_path: Path, sqlite_url: str, server: FakeServer, provider: str) -> None:
    rpm, concurrency = 1200.0, 8  # 20 per second, burst min(20, 8) = 8
    s = make_settings(tmp_path, sqlite_url, [endpoint(
        "ep", provider, server.url,
        limits={"requests_per_minute": rpm, "concurrency": concurrency})],
        [canary("c-many", samples=50)])
    burst = EndpointLimiter(s.endpoints[0].limits).burst
    st = open_store(s, migrate=True)
    try:
        run(st, s)
    finally:
        st.close()
    times = [r.at for r in server.requests()]
    assert len(times) == 50
    # 200 ms of slack for the trip from our event loop to the server's: the first requests
    # of a client are slower to leave (connections, lazy setup) and arrive bunched with
    # the next. Without a limit, all 50 would arrive within ~0.1 s (excess > 40).
    assert _max_excess(times, rpm / 60.0, slack=0.2) <= burst


def test_tokens_per_minute_paces_by_estimated_tokens() -> None:
    limiter = EndpointLimiter(Limits(requests_per_minute=1e6, tokens_per_minute=600))
    assert limiter.tokens is not None and limiter.tokens.capacity == 10

    async def go() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(3):
            await limiter.acquire(5)  # 15 tokens at 10 per second: the third one waits
        return loop.time() - start

    assert asyncio.run(go()) >= 0.45


def test_bucket_allows_a_burst_then_paces() -> None:
    async def go() -> tuple[float, float]:
        bucket = TokenBucket(rate=20.0, capacity=3.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(3):
            await bucket.acquire()
        burst_done = loop.time() - start
        for _ in range(4):
            await bucket.acquire()
        return burst_done, loop.time() - start

    burst, total = asyncio.run(go())
    assert total >= 4 / 20.0 - 0.01 and total > burst


def test_retry_after_reads_seconds_milliseconds_and_dates() -> None:
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    hint = retry_after({"retry-after": later})
    assert hint is not None and 25 < hint <= 30
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


def test_reset_delay_reads_openai_and_anthropic_headers() -> None:
    assert reset_delay({"x-ratelimit-remaining-requests": "0",
                        "x-ratelimit-reset-requests": "1m30s"}) == 90.0
    assert reset_delay({"x-ratelimit-remaining-requests": "5",
                        "x-ratelimit-reset-requests": "1m30s"}) is None
    at = (datetime.now(UTC) + timedelta(seconds=20)).isoformat().replace("+00:00", "Z")
    wait = reset_delay({"anthropic-ratelimit-tokens-remaining": "0",
                        "anthropic-ratelimit-tokens-reset": at})
    assert wait is not None and 15 < wait <= 20


def test_duration_header_forms() -> None:
    assert parse_duration_header("20ms") == 0.02
    assert parse_duration_header("6m0s") == 360.0
    assert parse_duration_header("1h2m3.5s") == 3723.5
    assert parse_duration_header("2.5") == 2.5
    assert parse_duration_header("later") is None


def test_backoff_grows_is_capped_and_honours_the_server_hint() -> None:
    b = Backoff(base=1.0, cap=8.0)
    assert 0.5 <= b.delay(0) <= 1.0
    assert 4.0 <= b.delay(3) <= 8.0
    assert 4.0 <= b.delay(10) <= 8.0
    assert b.delay(0, server_hint=5.0) == 5.0


def test_budget_refuses_what_would_exceed_it_and_waits_for_requests_in_flight() -> None:
    budget = Budget(Limits(daily_budget_usd=1.0, price_per_million_input_tokens=1e5,
                           price_per_million_output_tokens=1e5))  # $0.1 per token
    first = budget.reserve(2, 3)  # worst case $0.5
    assert first == pytest.approx(0.5)
    with pytest.raises(BudgetWait):
        budget.reserve(4, 3)  # $0.7 fits the day, not next to the $0.5 in flight
    budget.settle(first, 1, 1)  # it cost $0.2
    second = budget.reserve(4, 3)
    assert second == pytest.approx(0.7)
    budget.settle(second, 4, 4)  # it cost $0.8: the day's $1.0 is spent
    assert budget.reserve(1, 0) is None and budget.exhausted


def test_budget_without_a_limit_never_stops() -> None:
    budget = Budget(Limits(price_per_million_input_tokens=1e6))
    assert all(budget.reserve(1000, 1000) is not None for _ in range(100))


def _personas(server: FakeServer, shared: str | None, **limits: float) -> list[dict[str, Any]]:
    """Three persona endpoints of one server, each at concurrency 2."""
    extra = {"shared": shared} if shared else {}
    return [endpoint(f"persona-{i}", "http", server.url,
                     limits={"concurrency": 2, **limits, **extra}) for i in range(3)]


def test_endpoints_naming_one_shared_limit_never_exceed_it_together(
        tmp_path: Path, sqlite_url: str) -> None:
    metrics = Metrics()
    with FakeServer(delay=0.05) as server:
        s = make_settings(tmp_path, sqlite_url, _personas(server, "box"),
                          [canary("c-p", samples=4)],
                          shared_limits={"box": {"concurrency": 1}})
        st = open_store(s, migrate=True)
        try:
            summary = run(st, s, options=RunOptions(
                backoff=FAST, on_queued=metrics.observe_queued)).summary
        finally:
            st.close()
        assert len(server.requests()) == 12
        assert server.peak == 1
    for name in ("persona-0", "persona-1", "persona-2"):
        assert summary[name]["ok"] == 4
        assert summary[name]["queue_p50_ms"] is not None
        assert summary[name]["queue_p95_ms"] >= summary[name]["queue_p50_ms"]
        counted = metrics.registry.get_sample_value(
            "auditor_shared_limit_wait_seconds_count", {"limit": "box", "endpoint": name})
        assert counted == 4
    # one at a time with six workers waiting: someone queued
    assert max(s["queue_p95_ms"] for s in summary.values()) > 0


def test_without_a_shared_limit_the_same_endpoints_overlap(
        tmp_path: Path, sqlite_url: str) -> None:
    """The control of the test above: the server does see overlap when nothing is shared."""
    with FakeServer(delay=0.05) as server:
        s = make_settings(tmp_path, sqlite_url, _personas(server, None),
                          [canary("c-p", samples=4)])
        st = open_store(s, migrate=True)
        try:
            summary = run(st, s).summary
        finally:
            st.close()
        assert server.peak > 1
    assert all("queue_p50_ms" not in s for s in summary.values())


def test_a_shared_limit_holds_across_cycles_run_at_once(
        tmp_path: Path, sqlite_url: str) -> None:
    """The daemon runs each endpoint's cycle on its own; one SharedLimiters spans them."""
    with FakeServer(delay=0.05) as server:
        s = make_settings(tmp_path, sqlite_url, _personas(server, "box"),
                          [canary("c-p", samples=3)],
                          shared_limits={"box": {"concurrency": 1}})
        st = open_store(s, migrate=True)
        shared = SharedLimiters()

        async def both() -> None:
            cycles = [prepare(st, s, endpoints=[e.name]).cycle_id for e in s.endpoints]
            await asyncio.gather(*(run_cycle(st, s, c, options=RunOptions(
                backoff=FAST, shared=shared)) for c in cycles))

        try:
            asyncio.run(both())
        finally:
            st.close()
        assert len(server.requests()) == 9
        assert server.peak == 1


def test_a_shared_request_rate_holds_across_endpoints(tmp_path: Path, sqlite_url: str,
                                                      server: FakeServer) -> None:
    rpm = 600.0  # 10 per second for all three together; each alone may send a million
    s = make_settings(tmp_path, sqlite_url, _personas(server, "box"),
                      [canary("c-p", samples=8)],
                      shared_limits={"box": {"concurrency": 8, "requests_per_minute": rpm}})
    st = open_store(s, migrate=True)
    try:
        run(st, s)
    finally:
        st.close()
    times = [r.at for r in server.requests()]
    assert len(times) == 24
    # burst of the shared bucket: min(rate per second, concurrency) = 8
    assert _max_excess(times, rpm / 60.0, slack=0.2) <= 8
