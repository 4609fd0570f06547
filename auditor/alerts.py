"""Alerts: a suspect's monitoring e-value crossed ``1/alpha``; stored once, delivered to sinks.

The e-process in ``monitor_states`` is anytime-valid: checking it after every cycle and
raising the alarm the first time ``e_value >= 1/alpha`` keeps the false-alarm probability
below ``alpha`` however long monitoring runs. So an alert is written once per (suspect,
protected, kind), never every cycle; the unique constraint on ``alerts`` makes a second
writer (another daemon) fail harmlessly.

Sinks: a WARNING log line (``alerts.log``) and HTTP webhooks (``[[alerts.webhooks]]``):
``POST`` of the alert as JSON with ``X-Auditor-Signature: sha256=<hex HMAC-SHA256 of the
body>`` keyed by the secret in the environment variable ``secret_env``, retried with
exponential backoff on connection errors, 429 and 5xx. An alert that some sink could not
take stays undelivered and is tried again at the next check, up to the webhook's
``max_deliveries``; then it is marked undeliverable to that sink (an ERROR log line, the
``auditor_alerts_undeliverable`` gauge) and offered again, one try, once per
``resume_after_seconds``: when that try (or any other delivery to the same webhook)
succeeds, the webhook works again and all its undeliverable alerts are sent.
"""

from __future__ import annotations

__all__ = [
    "KIND_EPROCESS",
    "Delivery",
    "check_alerts",
    "deliver_pending",
    "new_alerts",
    "payload",
    "post_webhook",
    "sign",
    "sink_name",
]

import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from auditor.config import Settings, Webhook
from auditor.store.models import Alert, Endpoint, MonitorState, Verdict, utcnow

log = logging.getLogger("auditor.alerts")

KIND_EPROCESS = "eprocess"
SIGNATURE_HEADER = "X-Auditor-Signature"


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def new_alerts(session: Session, settings: Settings) -> list[Alert]:
    """Writes an alert for each pair whose e-value reached ``1/alpha`` and has none yet."""
    threshold = 1.0 / settings.analysis.alpha
    names = dict(session.execute(select(Endpoint.id, Endpoint.name)).tuples().all())
    alerted = set(session.execute(
        select(Alert.suspect_id, Alert.protected_id).where(Alert.kind == KIND_EPROCESS)
    ).tuples().all())
    created: list[Alert] = []
    for state in session.scalars(select(MonitorState).where(MonitorState.e_value >= threshold)
                                 .order_by(MonitorState.id)):
        if (state.suspect_id, state.protected_id) in alerted:
            continue
        verdict_id = session.scalar(
            select(Verdict.id).where(Verdict.suspect_id == state.suspect_id,
                                     Verdict.protected_id == state.protected_id,
                                     Verdict.segment.is_(None))
            .order_by(Verdict.created_at.desc(), Verdict.id.desc()).limit(1))
        suspect = names.get(state.suspect_id, str(state.suspect_id))
        protected = names.get(state.protected_id, str(state.protected_id))
        alert = Alert(
            suspect_id=state.suspect_id, protected_id=state.protected_id, verdict_id=verdict_id,
            kind=KIND_EPROCESS, value=float(state.e_value), threshold=threshold,
            message=(f"suspect {suspect}: monitoring e-value {state.e_value:.4g} reached "
                     f"{threshold:.4g} (1/alpha, alpha={settings.analysis.alpha:g}) against "
                     f"the protected model {protected!r}"),
            created_at=utcnow())
        try:
            with session.begin_nested():  # another daemon may write it first
                session.add(alert)
                session.flush()
        except IntegrityError:
            log.info("alert already written by another process",
                     extra={"suspect": suspect, "protected": protected})
            continue
        created.append(alert)
        log.info("alert written", extra={"alert_id": alert.id, "suspect": suspect,
                                         "protected": protected, "e_value": alert.value})
    return created


def payload(session: Session, alert: Alert) -> dict[str, Any]:
    """The alert as sent to webhooks: names, numbers and times; never canary text."""
    names = dict(session.execute(
        select(Endpoint.id, Endpoint.name)
        .where(Endpoint.id.in_([alert.suspect_id, alert.protected_id]))).tuples().all())
    return {
        "alert_id": alert.id,
        "kind": alert.kind,
        "suspect": names.get(alert.suspect_id),
        "protected": names.get(alert.protected_id),
        "value": alert.value,
        "threshold": alert.threshold,
        "verdict_id": alert.verdict_id,
        "message": alert.message,
        "created_at": alert.created_at.isoformat(),
    }


@dataclass
class Delivery:
    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "attempts": self.attempts, "status": self.status,
                "error": self.error}


def post_webhook(
    hook: Webhook,
    body: bytes,
    *,
    client: httpx.Client,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POSTs ``body``, signed when ``secret_env`` is set; retries transient failures."""
    headers = {"Content-Type": "application/json", "User-Agent": "canary-auditor"}
    if hook.secret_env:
        secret = os.environ.get(hook.secret_env)
        if not secret:
            # Refuse to send unsigned what the receiver expects signed.
            return Delivery(False, 0, error=f"environment variable {hook.secret_env} is not set")
        headers[SIGNATURE_HEADER] = sign(body, secret)
    attempt, status, error = 0, None, None
    while attempt <= hook.max_retries:
        attempt += 1
        try:
            response = client.post(hook.url, content=body, headers=headers)
            status = response.status_code
            if 200 <= status < 300:
                return Delivery(True, attempt, status)
            error = f"HTTP {status}"
            if status != 429 and status < 500 and status != 408:
                return Delivery(False, attempt, status, error)  # the receiver refuses it
        except httpx.HTTPError as exc:
            status, error = None, f"{exc.__class__.__name__}: {exc}"
        if attempt <= hook.max_retries:
            sleep(min(max_backoff, backoff * 2 ** (attempt - 1)))
    return Delivery(False, attempt, status, error)


def sink_name(url: str) -> str:
    """``webhook:<host>:<hash>``: names a webhook without its path (which may hold a token)."""
    host = httpx.URL(url).host or "?"
    return f"webhook:{host}:{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def deliver_pending(
    session: Session,
    settings: Settings,
    *,
    client: httpx.Client | None = None,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    now: datetime | None = None,
) -> list[Alert]:
    """Delivers every undelivered alert to every sink not yet done; returns those delivered.

    On PostgreSQL the alerts are locked (``FOR UPDATE SKIP LOCKED``) while they are
    delivered, so two daemons do not both send one.
    """
    q = select(Alert).where(Alert.delivered_at.is_(None)).order_by(Alert.id)
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    pending = list(session.scalars(q))
    if not pending:
        return []
    now = now or utcnow()
    own = client is None
    http = client or httpx.Client(timeout=10.0)
    delivered: list[Alert] = []
    works: dict[str, bool] = {}  # sink -> a delivery succeeded (True) or a probe failed
    try:
        for alert in pending:
            data = payload(session, alert)
            body = json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")
            done: dict[str, Any] = dict(alert.delivery or {})
            if settings.alerts.log and not (done.get("log") or {}).get("ok"):
                log.warning("ALERT %s", alert.message, extra={"alert": data})
                done["log"] = Delivery(True, 1).as_dict()
            for hook in settings.alerts.webhooks:
                key = sink_name(hook.url)
                state = done.get(key) or {}
                if state.get("ok"):
                    continue
                if state.get("undeliverable"):
                    if not _may_resume(state, hook, works.get(key), now):
                        continue
                    hook = hook.model_copy(update={"max_retries": 0})  # one try
                result = post_webhook(hook, body, client=http, backoff=backoff, sleep=sleep)
                done[key] = _delivery_state(state, result, hook, now)
                if result.ok or state.get("undeliverable"):
                    works[key] = result.ok
                level = logging.INFO if result.ok else logging.ERROR
                log.log(level, "webhook delivery " + ("ok" if result.ok else "failed"),
                        extra={"alert_id": alert.id, "sink": key, "status": result.status,
                               "attempts": result.attempts, "error": result.error})
                if done[key].get("undeliverable") and not state.get("undeliverable"):
                    log.error("alert undeliverable: the webhook refused it max_deliveries "
                              "times; offered again once per resume_after_seconds",
                              extra={"alert_id": alert.id, "sink": key,
                                     "deliveries": done[key]["deliveries"],
                                     "resume_after_seconds": hook.resume_after_seconds})
            alert.delivery = done
            if all(v.get("ok") for v in done.values()):
                alert.delivered_at = utcnow()
                delivered.append(alert)
        session.flush()
    finally:
        if own:
            http.close()
    return delivered


def _may_resume(state: dict[str, Any], hook: Webhook, works: bool | None,
                now: datetime) -> bool:
    """An undeliverable alert is offered again when the webhook just worked, or (one
    probe per sweep) when ``resume_after_seconds`` passed since its last try."""
    if works is not None:
        return works
    last = state.get("last_try_at")
    return last is None or (now - datetime.fromisoformat(last)).total_seconds() >= (
        hook.resume_after_seconds)


def _delivery_state(state: dict[str, Any], result: Delivery, hook: Webhook,
                    now: datetime) -> dict[str, Any]:
    deliveries = int(state.get("deliveries", 0)) + 1
    out = {**result.as_dict(), "attempts": int(state.get("attempts", 0)) + result.attempts,
           "deliveries": deliveries, "last_try_at": now.isoformat()}
    if not result.ok and (state.get("undeliverable") or deliveries >= hook.max_deliveries):
        out["undeliverable"] = True
    return out


def check_alerts(session: Session, settings: Settings, **kwargs: Any) -> list[Alert]:
    """Writes new alerts, then delivers every pending one; returns the new alerts."""
    created = new_alerts(session, settings)
    deliver_pending(session, settings, **kwargs)
    return created
