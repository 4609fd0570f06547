"""What one endpoint may spend: token buckets, server pacing hints, backoff, daily budget.

All of it is per endpoint and in-process (asyncio, one event loop). Requests per minute
and tokens per minute are token buckets; a ``429`` with ``Retry-After`` or a rate-limit
header announcing zero remaining pauses the whole endpoint, not only the one request.
A :class:`SharedLimiter` is the one limit of several endpoints (``limits.shared``), for
example personas served by one local model server; it too is per process.
"""

from __future__ import annotations

__all__ = [
    "Backoff",
    "Budget",
    "BudgetWait",
    "EndpointLimiter",
    "SharedLimiter",
    "SharedLimiters",
    "TokenBucket",
    "parse_duration_header",
    "reset_delay",
    "retry_after",
]

import asyncio
import random
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from auditor.config import Limits, SharedLimit


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` banked (the burst)."""

    def __init__(self, rate: float, capacity: float) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self.level = capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, amount: float = 1.0) -> None:
        """Waits until ``amount`` (or a full bucket, if larger) is banked, then takes it.

        Taking more than the capacity leaves the bucket in debt, which later callers wait
        out: the long-run rate holds even for requests larger than the burst.
        """
        need = min(amount, self.capacity)
        async with self._lock:
            self._refill()
            while self.level < need:
                await asyncio.sleep((need - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def credit(self, amount: float) -> None:
        """Returns (positive) or charges (negative) tokens after the fact."""
        self._refill()
        self.level = min(self.capacity, self.level + amount)


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration_header(value: str) -> float | None:
    """``"1s"``, ``"6m0s"``, ``"20ms"``, ``"1h2m3.5s"`` or plain seconds -> seconds."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _GO_DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * unit[u] for n, u in parts)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asks us to wait: ``retry-after-ms`` or ``retry-after``."""
    h = _lower(headers)
    if "retry-after-ms" in h:
        try:
            return max(0.0, float(h["retry-after-ms"]) / 1000.0)
        except ValueError:
            pass
    value = h.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _until(value: str) -> float | None:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return parse_duration_header(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def reset_delay(headers: Mapping[str, str]) -> float | None:
    """Seconds until a limit the server says is exhausted resets (OpenAI, Anthropic styles)."""
    h = _lower(headers)
    waits = []
    for prefix in ("x-ratelimit-", "anthropic-ratelimit-"):
        for what in ("requests", "tokens", "input-tokens", "output-tokens"):
            if prefix == "x-ratelimit-":
                remaining, reset = f"{prefix}remaining-{what}", f"{prefix}reset-{what}"
            else:
                remaining, reset = f"{prefix}{what}-remaining", f"{prefix}{what}-reset"
            try:
                left = float(h.get(remaining, "1"))
            except ValueError:
                continue
            if left <= 0 and reset in h:
                wait = _until(h[reset])
                if wait is not None:
                    waits.append(wait)
    return max(waits) if waits else None


class EndpointLimiter:
    """Requests and tokens per minute for one endpoint, plus pauses the server asks for."""

    def __init__(self, limits: Limits) -> None:
        rps = limits.requests_per_minute / 60.0
        self.burst = max(1.0, min(rps, float(limits.concurrency)))
        self.requests = TokenBucket(rps, self.burst)
        self.tokens = (
            TokenBucket(limits.tokens_per_minute / 60.0, max(1.0, limits.tokens_per_minute / 60.0))
            if limits.tokens_per_minute else None
        )
        self._paused_until = 0.0

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def acquire(self, estimated_tokens: int) -> None:
        while (wait := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        await self.requests.acquire(1.0)
        if self.tokens is not None:
            await self.tokens.acquire(float(estimated_tokens))

    def settle(self, estimated_tokens: int, actual_tokens: int | None) -> None:
        """Corrects the token bucket once the real usage is known."""
        if self.tokens is not None and actual_tokens is not None:
            self.tokens.credit(float(estimated_tokens - actual_tokens))

    def observe(self, headers: Mapping[str, str]) -> None:
        """Pauses the endpoint when the server says a limit is exhausted."""
        wait = reset_delay(headers)
        if wait:
            self.pause(min(wait, 300.0))


class SharedLimiter:
    """At most ``concurrency`` requests in flight (and ``requests_per_minute``) across all
    the endpoints that name this limit; waiters are served first come, first served."""

    def __init__(self, name: str, limit: SharedLimit) -> None:
        self.name, self.limit = name, limit
        self._slots = asyncio.Semaphore(limit.concurrency)
        rps = (limit.requests_per_minute or 0.0) / 60.0
        burst = max(1.0, min(rps, float(limit.concurrency)))
        self._rate = TokenBucket(rps, burst) if rps else None

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[float]:
        """Holds one slot for the body of the ``with``; yields the seconds spent queueing."""
        t0 = time.monotonic()
        async with self._slots:
            if self._rate is not None:
                await self._rate.acquire(1.0)
            yield time.monotonic() - t0


class SharedLimiters:
    """The shared limiters of one process, by name; a changed limit gets a new limiter."""

    def __init__(self) -> None:
        self._by_name: dict[str, SharedLimiter] = {}

    def get(self, name: str, limit: SharedLimit) -> SharedLimiter:
        current = self._by_name.get(name)
        if current is None or current.limit != limit:
            current = self._by_name[name] = SharedLimiter(name, limit)
        return current


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter; a server's ``Retry-After`` is a floor."""

    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 120.0

    def delay(self, retry: int, server_hint: float | None = None) -> float:
        """Seconds before retry number ``retry`` (0 for the first retry)."""
        ceiling = min(self.cap, self.base * (2.0 ** retry))
        wait = ceiling / 2 + random.uniform(0, ceiling / 2)
        return max(wait, server_hint or 0.0)


class BudgetWait(Exception):
    """The budget may allow the request once the requests in flight have settled."""


class Budget:
    """The daily spend of one endpoint: ``spent`` so far today plus what is in flight.

    A request is let through only if, even using all of its ``max_tokens``, it keeps the
    day's spend within the budget; so the budget is never exceeded.
    """

    def __init__(self, limits: Limits, spent_today: float = 0.0) -> None:
        self.limit = limits.daily_budget_usd
        self.price_in = limits.price_per_million_input_tokens / 1e6
        self.price_out = limits.price_per_million_output_tokens / 1e6
        self.spent = spent_today
        self.reserved = 0.0
        self.exhausted = False

    def cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> float:
        return (prompt_tokens or 0) * self.price_in + (completion_tokens or 0) * self.price_out

    def reserve(self, prompt_tokens: int, max_tokens: int) -> float | None:
        """The amount set aside for one request; None when the budget cannot allow it.

        Raises :class:`BudgetWait` when only requests still in flight stand in the way:
        the caller waits for them to settle and asks again.
        """
        worst = self.cost(prompt_tokens, max_tokens)
        if self.limit is None:
            return worst
        if self.exhausted or self.spent + worst > self.limit:
            self.exhausted = True
            return None
        if self.spent + self.reserved + worst > self.limit:
            raise BudgetWait
        self.reserved += worst
        return worst

    def settle(self, reserved: float, prompt_tokens: int | None,
               completion_tokens: int | None) -> None:
        self.reserved = max(0.0, self.reserved - reserved)
        self.spent += self.cost(prompt_tokens, completion_tokens)
