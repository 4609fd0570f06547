"""Alerts: written once when an e-value reaches 1/alpha, delivered to log and signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from auditor.alerts import (
    SIGNATURE_HEADER,
    check_alerts,
    deliver_pending,
    new_alerts,
    sink_name,
)
from auditor.config import Settings
from auditor.metrics import Metrics
from auditor.store import Store, sync_endpoints
from auditor.store.models import Alert, MonitorState, utcnow


class Hook:
    """A webhook receiver on loopback that fails the first ``fail`` requests with 503."""

    def __init__(self, fail: int = 0) -> None:
        self.fail, self.bodies, self.headers = fail, [], []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.bodies.append(body)
                hook.headers.append(dict(self.headers))
                code = 503 if len(hook.bodies) <= hook.fail else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


def _settings(*webhooks: dict[str, Any], alpha: float = 0.05) -> Settings:
    return Settings.model_validate({
        "analysis": {"alpha": alpha},
        "alerts": {"log": True, "webhooks": list(webhooks)},
        "endpoints": [
            {"name": "prot", "provider": "http", "model": "p", "role": "protected",
             "base_url": "http://127.0.0.1:9/v1"},
            {"name": "sus", "provider": "http", "model": "s", "role": "suspect",
             "base_url": "http://127.0.0.1:9/v1"},
        ]})


def _state(store: Store, settings: Settings, e_value: float) -> None:
    with store.session() as s:
        rows = sync_endpoints(s, settings)
        state = s.scalars(select(MonitorState)).first()
        if state is None:
            state = MonitorState(suspect_id=rows["sus"].id, protected_id=rows["prot"].id,
                                 state={})
            s.add(state)
        state.e_value = e_value


def _alerts(store: Store) -> list[Alert]:
    with store.session() as s:
        return list(s.scalars(select(Alert)))


def test_no_alert_below_one_over_alpha(store: Store) -> None:
    settings = _settings()
    _state(store, settings, 19.9)
    with store.session() as s:
        assert new_alerts(s, settings) == []


def test_crossing_writes_one_alert_not_one_per_cycle(store: Store) -> None:
    settings = _settings()
    _state(store, settings, 20.0)
    for value in (20.0, 45.0, 300.0):  # three later cycles, still above
        _state(store, settings, value)
        with store.session() as s:
            new_alerts(s, settings)
    (alert,) = _alerts(store)
    assert alert.value == 20.0 and alert.threshold == 20.0 and alert.kind == "eprocess"


def test_webhook_body_is_signed_with_hmac_sha256_of_the_secret(
        store: Store, hook: Hook, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cret-value")
    settings = _settings({"url": hook.url, "secret_env": "HOOK_SECRET"})
    _state(store, settings, 50.0)
    with store.session() as s:
        check_alerts(s, settings, sleep=lambda _: None)
    (body,) = hook.bodies
    expected = "sha256=" + hmac.new(b"s3cret-value", body, hashlib.sha256).hexdigest()
    assert hook.headers[0][SIGNATURE_HEADER] == expected
    data = json.loads(body)
    assert data["suspect"] == "sus" and data["protected"] == "prot" and data["value"] == 50.0
    assert _alerts(store)[0].delivered_at is not None


def test_webhook_is_retried_with_backoff_until_it_accepts(store: Store) -> None:
    hook = Hook(fail=2)
    try:
        settings = _settings({"url": hook.url, "max_retries": 3})
        _state(store, settings, 50.0)
        waits: list[float] = []
        with store.session() as s:
            check_alerts(s, settings, sleep=waits.append, backoff=0.5)
        assert len(hook.bodies) == 3
        assert waits == [0.5, 1.0]
        (alert,) = _alerts(store)
        assert alert.delivered_at is not None
    finally:
        hook.close()


def test_undelivered_alert_is_tried_again_at_the_next_check_and_not_rewritten(
        store: Store) -> None:
    hook = Hook(fail=1)
    try:
        settings = _settings({"url": hook.url, "max_retries": 0})
        _state(store, settings, 50.0)
        with store.session() as s:
            check_alerts(s, settings, sleep=lambda _: None)
        assert _alerts(store)[0].delivered_at is None
        with store.session() as s:
            assert check_alerts(s, settings, sleep=lambda _: None) == []
        (alert,) = _alerts(store)
        assert alert.delivered_at is not None and len(hook.bodies) == 2
    finally:
        hook.close()


def test_missing_secret_sends_nothing_unsigned(store: Store, hook: Hook,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    settings = _settings({"url": hook.url, "secret_env": "HOOK_SECRET"})
    _state(store, settings, 50.0)
    with store.session() as s:
        check_alerts(s, settings, sleep=lambda _: None)
    assert hook.bodies == []
    assert _alerts(store)[0].delivered_at is None


def test_alert_goes_to_the_log_once(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings()
    _state(store, settings, 50.0)
    with caplog.at_level(logging.WARNING, logger="auditor.alerts"):
        for _ in range(2):
            with store.session() as s:
                check_alerts(s, settings)
    assert [r.getMessage() for r in caplog.records].count(
        f"ALERT {_alerts(store)[0].message}") == 1


def test_delivery_of_nothing_pending_sends_nothing(store: Store, hook: Hook) -> None:
    settings = _settings({"url": hook.url})
    with store.session() as s:
        sync_endpoints(s, settings)
        assert deliver_pending(s, settings) == []
    assert hook.bodies == []


def _undeliverable_gauge(store: Store) -> float:
    metrics = Metrics()
    with store.session() as s:
        metrics.refresh_from_store(s)
    return float(metrics.alerts_undeliverable._value.get())


def _down(store: Store, settings: Settings, checks: int, **kwargs: Any) -> None:
    for _ in range(checks):
        with store.session() as s:
            check_alerts(s, settings, sleep=lambda _: None, **kwargs)


def test_a_webhook_that_always_fails_is_capped_and_the_alert_marked_undeliverable(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    hook = Hook(fail=10**6)
    try:
        settings = _settings({"url": hook.url, "max_retries": 1, "max_deliveries": 3})
        _state(store, settings, 50.0)
        with caplog.at_level(logging.INFO, logger="auditor.alerts"):
            _down(store, settings, 8)  # eight cycles
        assert len(hook.bodies) == 3 * 2  # three deliveries of two tries, then no more
        (alert,) = _alerts(store)
        state = alert.delivery[sink_name(hook.url)]
        assert alert.delivered_at is None and state["undeliverable"] and state["deliveries"] == 3
        given_up = [r for r in caplog.records if r.getMessage().startswith("alert undeliverable")]
        assert len(given_up) == 1 and given_up[0].levelno == logging.ERROR
        assert _undeliverable_gauge(store) == 1
    finally:
        hook.close()


def test_delivery_resumes_once_the_webhook_works_again(store: Store) -> None:
    hook = Hook(fail=10**6)
    try:
        settings = _settings({"url": hook.url, "max_retries": 0, "max_deliveries": 2,
                              "resume_after_seconds": 600})
        _state(store, settings, 50.0)
        _down(store, settings, 3)
        assert len(hook.bodies) == 2 and _alerts(store)[0].delivery[
            sink_name(hook.url)]["undeliverable"]
        hook.fail = 0  # the webhook is fixed
        _down(store, settings, 1)  # before resume_after_seconds: not offered again
        assert len(hook.bodies) == 2
        _down(store, settings, 1, now=utcnow() + timedelta(seconds=601))
        (alert,) = _alerts(store)
        assert len(hook.bodies) == 3 and alert.delivered_at is not None
        assert alert.delivery[sink_name(hook.url)]["ok"]
        assert _undeliverable_gauge(store) == 0
    finally:
        hook.close()
