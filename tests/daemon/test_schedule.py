"""Fire times every daemon agrees on: crontab weekdays, anchored intervals, fixed jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.config import Schedule
from auditor.daemon.schedule import EndpointTrigger, cron_trigger, jitter_offset, schedule_key

SAT = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)  # a Saturday


def test_cron_weekday_zero_is_sunday_as_in_crontab() -> None:
    fire = cron_trigger("0 3 * * 0").get_next_fire_time(None, SAT)
    assert fire == datetime(2026, 3, 8, 3, 0, tzinfo=UTC)
    assert fire.strftime("%A") == "Sunday"


def test_cron_weekday_range_one_to_five_skips_the_weekend() -> None:
    fire = cron_trigger("30 6 * * 1-5").get_next_fire_time(None, SAT)
    assert fire == datetime(2026, 3, 9, 6, 30, tzinfo=UTC)  # Monday


def test_interval_fire_times_do_not_depend_on_when_the_process_started() -> None:
    a = EndpointTrigger("ep", Schedule(interval="6h"))
    b = EndpointTrigger("ep", Schedule(interval="6h"))
    t1, t2 = SAT + timedelta(minutes=7), SAT + timedelta(hours=2, seconds=13)
    assert a.next_fire(t1) == b.next_fire(t2) == datetime(2026, 3, 7, 18, 0, tzinfo=UTC)


def test_jitter_is_deterministic_bounded_and_maps_back_to_its_nominal_time() -> None:
    trig = EndpointTrigger("ep", Schedule(cron="0 3 * * *", jitter_seconds=600))
    fire = trig.next_fire(SAT)
    nominal = datetime(2026, 3, 8, 3, 0, tzinfo=UTC)
    assert nominal <= fire < nominal + timedelta(seconds=600)
    again = EndpointTrigger("ep", Schedule(cron="0 3 * * *", jitter_seconds=600))
    assert again.next_fire(SAT) == fire
    assert trig.nominal_of_fire(fire + timedelta(seconds=5)) == nominal
    assert jitter_offset("other", nominal, 600) != jitter_offset("ep", nominal, 600)


def test_successive_fires_follow_nominal_times_without_drift() -> None:
    trig = EndpointTrigger("ep", Schedule(interval="2s", jitter_seconds=0.9))
    fire = trig.get_next_fire_time(None, SAT)
    nominals = []
    for _ in range(50):
        nominals.append(trig.nominal_of_fire(fire))
        fire = trig.get_next_fire_time(fire, fire)
    gaps = {b - a for a, b in zip(nominals, nominals[1:], strict=False)}
    assert gaps == {timedelta(seconds=2)}


def test_jitter_longer_than_half_the_period_is_reduced() -> None:
    assert EndpointTrigger("ep", Schedule(interval="10s", jitter_seconds=60)).jitter == 5


def test_schedule_key_names_endpoint_and_nominal_time_in_utc() -> None:
    assert schedule_key("ep", SAT) == "ep@2026-03-07T12:00:00Z"


@settings(max_examples=400, deadline=None)
@given(
    interval_ms=st.integers(min_value=1, max_value=90_000_000),
    start_us=st.integers(min_value=0, max_value=40 * 365 * 86400 * 10**6),
    jitter=st.sampled_from([0.0, 0.05, 0.9, 30.0]),
)
def test_every_interval_advances_strictly(interval_ms: int, start_us: int, jitter: float) -> None:
    """Fractional intervals (100ms, 1.1s) once returned the previous fire time itself."""
    from auditor.daemon.schedule import ANCHOR

    trig = EndpointTrigger("ep", Schedule(interval=f"{interval_ms}ms", jitter_seconds=jitter))
    now = ANCHOR + timedelta(microseconds=start_us)
    fire = trig.get_next_fire_time(None, now)
    assert fire is not None and fire > now
    for _ in range(5):
        nxt = trig.get_next_fire_time(fire, fire)
        assert nxt is not None and nxt > fire, (interval_ms, fire, nxt)
        assert trig.nominal_of_fire(nxt) > trig.nominal_of_fire(fire)
        fire = nxt


def test_a_100ms_interval_advances_from_the_reported_wedge() -> None:
    trig = EndpointTrigger("ep", Schedule(interval="100ms"))
    prev = datetime(2026, 3, 7, 13, 0, 0, 100000, tzinfo=UTC)
    assert trig.get_next_fire_time(prev, prev) == prev + timedelta(milliseconds=100)
    assert schedule_key("ep", prev) != schedule_key("ep", prev + timedelta(milliseconds=100))
