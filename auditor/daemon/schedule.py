"""When each endpoint's cycle fires, the same on every machine.

Every daemon derives its schedules from the config, so several daemons agree on each
*nominal* fire time: a cron expression (UTC, standard crontab weekdays, 0 = Sunday) or
an interval anchored at 2000-01-01T00:00Z (not at the process's start). The jitter is
deterministic too: a hash of the endpoint name and the nominal time picks an offset in
``[0, jitter_seconds)``, so probes do not all land on the minute, yet a fire time maps
back to exactly one nominal time. That nominal time names the cycle
(``schedule_key = "<endpoint>@<nominal ISO time>"``); the unique key on ``cycles`` lets
exactly one process plan it.
"""

from __future__ import annotations

__all__ = [
    "ANCHOR",
    "EndpointTrigger",
    "cron_trigger",
    "jitter_offset",
    "schedule_key",
    "trigger_for",
]

import hashlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from auditor.config import Endpoint, Schedule

log = logging.getLogger(__name__)

ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_DAY_NUMBER = {name: i for i, name in enumerate(_DAYS)}


def _weekday_numbers(field: str) -> list[int]:
    """A crontab weekday field (0 or 7 = Sunday; names allowed) -> sorted day numbers."""

    def number(token: str) -> int:
        token = token.strip().lower()[:3]
        if token in _DAY_NUMBER:
            return _DAY_NUMBER[token]
        value = int(token)
        if not 0 <= value <= 7:
            raise ValueError(f"weekday {token!r} is outside 0-7")
        return value % 7 if value == 7 else value

    days: set[int] = set()
    for item in field.split(","):
        part, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if part == "*":
            lo, hi = 0, 6
        elif "-" in part:
            a, b = part.split("-", 1)
            lo, hi = number(a), number(b)
            if b.strip() == "7":
                hi = 7
        else:
            lo = number(part)
            hi = 6 if step_text else lo
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return sorted(days)


def cron_trigger(expr: str) -> CronTrigger:
    """A UTC cron trigger with crontab's weekday numbering (APScheduler 3 counts from Monday)."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"cron {expr!r} must have five fields")
    minute, hour, day, month, weekday = fields
    dow = None if weekday == "*" else ",".join(_DAYS[d] for d in _weekday_numbers(weekday))
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=dow,
                       timezone=UTC)


def jitter_offset(name: str, nominal: datetime, jitter: float) -> float:
    """Seconds in ``[0, jitter)`` fixed by the endpoint name and the nominal time."""
    if jitter <= 0:
        return 0.0
    digest = hashlib.sha256(f"{name}|{nominal.astimezone(UTC).isoformat()}".encode()).digest()
    return jitter * int.from_bytes(digest[:8], "big") / 2**64


def schedule_key(endpoint: str, nominal: datetime) -> str:
    """``<endpoint>@<UTC time>``; sub-second nominal times (intervals like ``100ms``) keep
    their microseconds, so two nominal times never share a key."""
    t = nominal.astimezone(UTC)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if t.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return f"{endpoint}@{t.strftime(fmt)}"


class EndpointTrigger(BaseTrigger):
    """Nominal fire times from a cron or anchored interval, plus a deterministic jitter."""

    def __init__(self, name: str, schedule: Schedule) -> None:
        self.name = name
        self.interval = schedule.interval_seconds
        self.inner: BaseTrigger
        self.step: timedelta | None = None  # interval schedules only
        if schedule.cron:
            self.inner = cron_trigger(schedule.cron)
            period = self._cron_min_period()
        else:
            seconds = self.interval or 86400.0
            self.interval = seconds
            self.inner = IntervalTrigger(seconds=seconds, start_date=ANCHOR, timezone=UTC)
            # Nominal times are counted in whole microseconds: float arithmetic on a
            # fractional interval (0.1 s) once gave back the previous fire time.
            self.step = timedelta(microseconds=max(1, round(seconds * 1e6)))
            period = seconds
        jitter = schedule.jitter_seconds
        if jitter >= period / 2:
            log.warning("jitter reduced to half the schedule's period",
                         extra={"endpoint": name, "jitter_seconds": jitter, "period": period})
            jitter = period / 2
        self.jitter = jitter
        self.period = period

    def _cron_min_period(self) -> float:
        """The shortest gap between two nominal times over the next two weeks (bounded)."""
        t = self.inner.get_next_fire_time(None, ANCHOR)
        best = float("inf")
        for _ in range(200):
            if t is None:
                break
            nxt = self.inner.get_next_fire_time(None, t + timedelta(microseconds=1))
            if nxt is None:
                break
            best = min(best, (nxt - t).total_seconds())
            t = nxt
        return best if best != float("inf") else 86400.0

    # -- nominal times -----------------------------------------------------------------

    def next_nominal(self, after: datetime) -> datetime | None:
        """The first nominal time at or after ``after``."""
        if self.step is not None:
            return ANCHOR + self.step * -(-(after.astimezone(UTC) - ANCHOR) // self.step)
        return self.inner.get_next_fire_time(None, after)

    def nominal_at_or_before(self, when: datetime,
                             lookback: float | None = None) -> datetime | None:
        """The latest nominal time ``<= when`` (None if none within ``lookback`` seconds)."""
        when = when.astimezone(UTC)
        if self.step is not None:
            nominal = ANCHOR + self.step * ((when - ANCHOR) // self.step)
            if lookback is not None and (when - nominal).total_seconds() > lookback:
                return None
            return nominal
        span = lookback if lookback is not None else self.period + self.jitter
        t = self.next_nominal(when - timedelta(seconds=span))
        last = None
        while t is not None and t <= when:
            last = t
            t = self.next_nominal(t + timedelta(microseconds=1))
        return last

    def fire_time(self, nominal: datetime) -> datetime:
        return nominal + timedelta(seconds=jitter_offset(self.name, nominal, self.jitter))

    def nominal_of_fire(self, fired: datetime) -> datetime | None:
        """The nominal time whose jittered fire time is the latest one ``<= fired``."""
        candidate = self.nominal_at_or_before(fired, self.jitter + 1)
        if candidate is None or self.fire_time(candidate) > fired:
            before = candidate - timedelta(microseconds=1) if candidate is not None else fired
            candidate = self.nominal_at_or_before(before, max(self.period, 8 * 86400.0))
        return candidate

    def next_fire(self, now: datetime) -> datetime | None:
        """The first jittered fire time strictly after ``now``."""
        nominal = self.nominal_at_or_before(now, self.jitter + 1) or self.next_nominal(now)
        while nominal is not None:
            fire = self.fire_time(nominal)
            if fire > now:
                return fire
            nominal = self.next_nominal(nominal + timedelta(microseconds=1))
        return None

    # -- APScheduler ---------------------------------------------------------------------

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        if previous_fire_time is not None:
            prev_nominal = self.nominal_of_fire(previous_fire_time)
            if prev_nominal is not None:
                nxt = self.next_nominal(prev_nominal + timedelta(microseconds=1))
                if nxt is None:
                    return None
                fire = self.fire_time(nxt)
                if fire > previous_fire_time:
                    return fire
            # Never hand APScheduler the previous time again: its loop would spin on it.
            return self.next_fire(max(now, previous_fire_time))
        return self.next_fire(now)

    def __str__(self) -> str:
        return f"endpoint[{self.name}, {self.inner}, jitter={self.jitter:g}s]"

    def __getstate__(self) -> dict[str, Any]:  # memory job store only; never pickled
        raise TypeError("EndpointTrigger is not serialisable; schedules come from the config")


def trigger_for(endpoint: Endpoint) -> EndpointTrigger:
    return EndpointTrigger(endpoint.name, endpoint.schedule)

