"""Webhooks: administrators subscribe URLs to case events; the worker delivers them signed.

A delivery is written to the outbox (`webhook_delivery`) by a hook on the engine's case
events, so it commits with the event or not at all; `zerorun worker` sends it outside any
case transaction, so a receiver that is slow, down or answering errors never affects a case.
Each request carries `X-Zerorun-Signature: sha256=<hex>`, the HMAC-SHA256 of
`<timestamp>.<body>` under the subscription's secret, and the timestamp in
`X-Zerorun-Timestamp` (receivers reject old timestamps to stop replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.models import WebhookDelivery, WebhookSubscription
from agency.oversight import WARNING_TASKS
from engine.actors import Actor
from engine.audit import chain as audit
from engine.audit.chain import NewEvent
from engine.cases import Engine
from engine.errors import N_, EngineError, Forbidden, NotFound
from engine.store.models import Case, Event, HumanTask

log = logging.getLogger(__name__)

EVENT_TYPES = ("case_started", "case_ended", "task_ready", "task_completed",
               "warning_raised", "message_received")
TIMEOUT_SECONDS = 10  # per request: a slow receiver holds one worker this long at most
MAX_ATTEMPTS = 8  # then the delivery is marked failed (about 4 hours of retries)
LEASE = timedelta(minutes=2)  # a worker sending a delivery holds it this long
MAX_BODY_LOG = 500  # characters of a receiver's error kept in the log

Sender = Callable[[str, bytes, dict[str, str]], tuple[int | None, str | None]]


@dataclass(frozen=True)
class SubscriptionView:
    """A subscription as the admin area lists it (never its secret)."""

    id: int
    url: str
    event_types: list[str]
    active: bool
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class DeliveryView:
    """One line of a subscription's delivery log."""

    id: int
    event_type: str
    case_id: int | None
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def _subscription_view(row: WebhookSubscription) -> SubscriptionView:
    return SubscriptionView(row.id, row.url, list(row.event_types), row.active, row.created_by,
                            row.created_at)


def _delivery_view(row: WebhookDelivery) -> DeliveryView:
    return DeliveryView(row.id, row.event_type, row.case_id, row.status, row.attempts,
                        row.next_attempt_at, row.last_status, row.last_error, row.created_at,
                        row.sent_at)


def _require_admin(actor: Actor) -> None:
    if not (actor.is_system or actor.role == "admin"):
        raise Forbidden(N_("只有管理员可以管理 Webhook 订阅"))


def check_url(url: str) -> str:
    """An http(s) URL with a host, as the admin typed it; anything else is refused."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 500:
        raise EngineError(N_("Webhook 地址必须是带主机名的 http 或 https 地址"))
    if parts.username or parts.password:
        raise EngineError(N_("Webhook 地址不能包含用户名或密码"))
    return url


def subscribe(engine: Engine, url: str, event_types: list[str], actor: Actor
              ) -> tuple[SubscriptionView, str]:
    """Subscribe a URL to event types; the signing secret is returned once."""
    _require_admin(actor)
    url = check_url(url)
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown or not event_types:
        raise EngineError(N_("请选择至少一种事件类型"), unknown=unknown)
    secret = secrets.token_urlsafe(32)
    now = engine.clock()
    with engine.db.transaction() as s:
        row = WebhookSubscription(url=url, event_types=sorted(set(event_types)), secret=secret,
                                  active=True, created_by=actor.username, created_at=now)
        s.add(row)
        s.flush()
        audit.append_ops(s, NewEvent("webhook_subscribed", actor.username, now, {
            "subscription_id": row.id, "url": url, "event_types": row.event_types}))
        view = _subscription_view(row)
    return view, secret


def deactivate(engine: Engine, subscription_id: int, actor: Actor) -> SubscriptionView:
    """Stop sending to a subscription; its pending deliveries are not sent."""
    _require_admin(actor)
    now = engine.clock()
    with engine.db.transaction() as s:
        row = s.get(WebhookSubscription, subscription_id)
        if row is None:
            raise NotFound(f"webhook subscription {subscription_id} does not exist")
        if row.active:
            row.active = False
            audit.append_ops(s, NewEvent("webhook_unsubscribed", actor.username, now, {
                "subscription_id": row.id, "url": row.url}))
        return _subscription_view(row)


def subscriptions(engine: Engine) -> list[SubscriptionView]:
    """Every subscription, newest first."""
    with engine.db.reading() as s:
        return [_subscription_view(r) for r in s.scalars(
            select(WebhookSubscription).order_by(WebhookSubscription.id.desc()))]


def delivery_log(engine: Engine, subscription_id: int, limit: int = 100
                 ) -> tuple[SubscriptionView, list[DeliveryView]]:
    """A subscription and its latest deliveries."""
    with engine.db.reading() as s:
        row = s.get(WebhookSubscription, subscription_id)
        if row is None:
            raise NotFound(f"webhook subscription {subscription_id} does not exist")
        rows = s.scalars(select(WebhookDelivery).where(
            WebhookDelivery.subscription_id == subscription_id)
            .order_by(WebhookDelivery.id.desc()).limit(limit))
        return _subscription_view(row), [_delivery_view(d) for d in rows]


# Writing the outbox (a hook on every case event) -------------------------------------


def _case_part(case: Case) -> dict[str, Any]:
    return {"id": case.id, "process_id": case.process_id, "title": case.title,
            "project_code": case.project_code, "status": case.status}


def _happenings(s: Session, case: Case, event: Event) -> list[tuple[str, dict[str, Any]]]:
    """The webhook event types one case event stands for, with what each tells."""
    found: list[tuple[str, dict[str, Any]]] = []
    data = event.data or {}
    if event.type == "case_started":
        found.append(("case_started", {}))
    elif event.type == "task_completed":
        found.append(("task_completed", {"task_id": data.get("task_id"),
                                         "task_spec": data.get("task_spec")}))
    elif event.type == "message_received":
        found.append(("message_received", {"message": data.get("message"),
                                           "element": data.get("element")}))
    workflow = event.type in ("case_started", "task_completed", "timer_fired",
                              "case_terminated", "message_received", "job_completed")
    if workflow:
        # The command's clock is pinned, so the tasks it raised carry the event's time.
        for task in s.scalars(select(HumanTask).where(
                HumanTask.case_id == case.id, HumanTask.state == "ready",
                HumanTask.created_at == event.at).order_by(HumanTask.id)):
            told = {"task_id": task.id, "task_spec": task.spec_name, "title": task.title,
                    "department": task.department, "item_code": task.item_code,
                    "due_at": task.due_at.isoformat() if task.due_at else None}
            found.append(("task_ready", told))
            if task.spec_name in WARNING_TASKS:
                found.append(("warning_raised", {**told,
                                                 "level": WARNING_TASKS[task.spec_name]}))
        if case.status != "running" and case.ended_at == event.at:
            found.append(("case_ended", {"status": case.status,
                                         "end_reason": case.end_reason}))
    return found


# Every command asks: built once, read as plain rows (the ORM version cost twice the CPU).
_ACTIVE_SUBSCRIPTIONS = select(WebhookSubscription.id, WebhookSubscription.event_types).where(
    WebhookSubscription.active.is_(True))


def record(s: Session, case: Case, event: Event) -> None:
    """Queue a delivery for every active subscription to what the event stands for."""
    subscribed = s.connection().execute(_ACTIVE_SUBSCRIPTIONS).all()  # nothing to flush first
    if not subscribed:
        return
    for kind, told in _happenings(s, case, event):
        for sub in subscribed:
            if kind not in sub.event_types:
                continue
            body = json.dumps({
                "id": str(uuid.uuid4()), "type": kind, "occurred_at": event.at.isoformat(),
                "case": _case_part(case),
                "event": {"seq": event.seq, "type": event.type, "actor": event.actor,
                          "hash": event.hash},
                "data": told}, ensure_ascii=False, separators=(",", ":"))
            s.add(WebhookDelivery(subscription_id=sub.id, event_type=kind, case_id=case.id,
                                  body=body, status="pending", attempts=0,
                                  next_attempt_at=event.at, created_at=event.at))


# Sending (the worker) ----------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: HMAC-SHA256 over `<timestamp>.<body>`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A receiver's redirect is an error: deliveries go only to the configured URL."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
    """POST a delivery; (HTTP status, error text or None when the receiver took it)."""
    check_url(url)  # an http(s) URL only, checked again before every request
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _OPENER.open(request, timeout=TIMEOUT_SECONDS) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}: {exc.reason}"[:MAX_BODY_LOG]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"[:MAX_BODY_LOG]
    if 200 <= status < 300:
        return status, None
    return status, f"HTTP {status}"


def deliver(engine: Engine, limit: int = 50, send: Sender = post) -> tuple[int, int]:
    """Send the deliveries that are due; return (sent, failed this round)."""
    now = engine.clock()
    with engine.db.transaction() as s:
        query = (select(WebhookDelivery, WebhookSubscription)
                 .join(WebhookSubscription,
                       WebhookSubscription.id == WebhookDelivery.subscription_id)
                 .where(WebhookDelivery.status == "pending",
                        WebhookDelivery.next_attempt_at <= now,
                        WebhookSubscription.active.is_(True))
                 .order_by(WebhookDelivery.id).limit(limit))
        if engine.db.postgres:
            query = query.with_for_update(of=WebhookDelivery, skip_locked=True)
        batch = []
        for delivery, sub in s.execute(query).all():
            delivery.next_attempt_at = now + LEASE  # leased: no other worker sends it now
            batch.append((delivery.id, delivery.event_type, delivery.body, sub.url, sub.secret))
    sent = failed = 0
    for delivery_id, kind, body, url, secret in batch:
        raw = body.encode("utf-8")
        timestamp = str(int(engine.clock().timestamp()))
        status, error = send(url, raw, {
            "Content-Type": "application/json", "User-Agent": "zerorun-webhooks/1",
            "X-Zerorun-Event": kind, "X-Zerorun-Delivery": str(delivery_id),
            "X-Zerorun-Timestamp": timestamp,
            "X-Zerorun-Signature": signature(secret, timestamp, raw)})
        with engine.db.transaction() as s:
            row = s.get(WebhookDelivery, delivery_id)
            if row is None:
                continue
            row.attempts += 1
            row.last_status, row.last_error = status, error
            if error is None:
                row.status, row.sent_at = "sent", engine.clock()
                sent += 1
                continue
            failed += 1
            if row.attempts >= MAX_ATTEMPTS:
                row.status = "failed"
            else:
                row.next_attempt_at = engine.clock() + timedelta(minutes=2 ** row.attempts)
            log.warning("webhook delivery %s to %s failed (attempt %s): %s", delivery_id, url,
                        row.attempts, error)
    return sent, failed
