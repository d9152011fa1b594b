"""Webhooks: administrators subscribe URLs to case events; the worker delivers them signed.

A delivery is written to the outbox (`webhook_delivery`) by a hook on the engine's case
events, so it commits with the event or not at all; `zerorun worker` sends it outside any
case transaction, so a receiver that is slow, down or answering errors never affects a case.
Each request carries `X-Zerorun-Signature: sha256=<hex>`, the HMAC-SHA256 of
`<timestamp>.<body>` under the subscription's secret, and the timestamp in
`X-Zerorun-Timestamp` (receivers reject old timestamps to stop replays).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import os
import secrets
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select
from sqlalchemy.orm import Session

from agency.models import WebhookDelivery, WebhookSubscription
from agency.oversight import WARNING_TASKS
from engine.actors import Actor
from engine.audit import chain as audit
from engine.audit.chain import NewEvent
from engine.cases import Engine
from engine.config import Config, ConfigError
from engine.errors import N_, EngineError, Forbidden, NotFound
from engine.store.models import Case, Event, HumanTask

log = logging.getLogger(__name__)

EVENT_TYPES = ("case_started", "case_ended", "task_ready", "task_completed",
               "warning_raised", "message_received")
TIMEOUT_SECONDS = 10  # per request: a slow receiver holds one worker this long at most
MAX_ATTEMPTS = 8  # then the delivery is marked failed (about 4 hours of retries)
LEASE = timedelta(minutes=2)  # a worker sending a delivery holds it this long
MAX_BODY_LOG = 500  # characters of a receiver's error kept in the log

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
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


# The secret is kept encrypted (Fernet: AES-128-CBC with an HMAC) under a key outside the
# database, as the seal key is: a copy of the database alone cannot sign deliveries.
SEALED = "fernet:"


def secrets_key(config: Config) -> Fernet:
    """The key encrypting webhook secrets: from the setting, the key file, or a new file.

    A new key is only created at the default place under the instance folder; a key file
    named in the settings must exist."""
    if config.webhook_key:
        return _fernet(config.webhook_key.encode("ascii", "replace"), "ZERORUN_WEBHOOK_KEY")
    path = config.webhook_key_path
    if not path.exists():
        if config.webhook_key_file:
            raise ConfigError(f"the webhook key file {path} (ZERORUN_WEBHOOK_KEY_FILE) does "
                              "not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker created it first: read theirs
        else:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(Fernet.generate_key())
    return _fernet(path.read_bytes().strip(), str(path))


def _fernet(key: bytes, where: str) -> Fernet:
    try:
        return Fernet(key)
    except ValueError as exc:
        raise ConfigError(f"the webhook key in {where} is not a Fernet key (32 bytes, "
                          "url-safe base64)") from exc


def seal_secret(config: Config, secret: str) -> str:
    """What the database keeps of a signing secret."""
    return SEALED + secrets_key(config).encrypt(secret.encode()).decode("ascii")


def open_secret(config: Config, stored: str) -> str:
    """The signing secret back from what the database keeps (a secret stored before they
    were encrypted is read as it is, and encrypted by the next delivery round)."""
    if not stored.startswith(SEALED):
        return stored
    try:
        return secrets_key(config).decrypt(stored[len(SEALED):].encode("ascii")).decode()
    except InvalidToken as exc:
        raise ConfigError("a webhook secret cannot be decrypted with the webhook key "
                          "(ZERORUN_WEBHOOK_KEY / ZERORUN_WEBHOOK_KEY_FILE changed?)") from exc


def seal_plain_secrets(s: Session, config: Config) -> int:
    """Encrypt the secrets stored in plain text before they were encrypted; how many."""
    rows = list(s.scalars(select(WebhookSubscription).where(
        ~WebhookSubscription.secret.startswith(SEALED))))
    for row in rows:
        row.secret = seal_secret(config, row.secret)
    return len(rows)


def _require_admin(actor: Actor) -> None:
    if not (actor.is_system or actor.role == "admin"):
        raise Forbidden(N_("只有管理员可以管理 Webhook 订阅"))


class RefusedAddress(OSError):
    """A webhook receiver resolves to an address deliveries may not go to."""


def allowed_networks(config: Config) -> tuple[IPNetwork, ...]:
    """The networks an operator lets receivers be in although they are not public
    (ZERORUN_WEBHOOK_ALLOW: an intranet receiver)."""
    found = []
    for part in config.webhook_allow.split(","):
        if part.strip():
            try:
                found.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError as exc:
                raise ConfigError(f"ZERORUN_WEBHOOK_ALLOW: {part.strip()!r} is not a network "
                                  "(e.g. 10.20.0.0/16)") from exc
    return tuple(found)


def address_refusal(address: str, allowed: tuple[IPNetwork, ...]) -> str | None:
    """Why deliveries may not go to an IP address (None: they may): loopback, private,
    link-local, unspecified, multicast and reserved addresses are refused unless they are
    in an allowed network; an IPv4 address written as IPv6 is judged as IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == net.version and ip in net for net in allowed):
        return None
    if ip.is_global and not ip.is_multicast:
        return None
    return f"{ip} is not a public address"


def resolve(host: str, port: int | None) -> list[str]:
    """Every address a host name (or literal address, in any notation) resolves to."""
    try:
        infos = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise EngineError(N_("Webhook 地址的主机名无法解析"), host=host) from exc
    return sorted({str(info[4][0]) for info in infos})


def check_url(url: str, allowed: tuple[IPNetwork, ...] | None = None) -> str:
    """An http(s) URL with a host, as the admin typed it; anything else is refused. With
    `allowed`, its host is resolved too and every address it has must be public (or in an
    allowed network): a receiver is never this server, its neighbours or their metadata."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 500:
        raise EngineError(N_("Webhook 地址必须是带主机名的 http 或 https 地址"))
    if parts.username or parts.password:
        raise EngineError(N_("Webhook 地址不能包含用户名或密码"))
    try:
        port = parts.port
    except ValueError as exc:
        raise EngineError(N_("Webhook 地址必须是带主机名的 http 或 https 地址")) from exc
    if allowed is not None:
        for address in resolve(parts.hostname, port):
            refusal = address_refusal(address, allowed)
            if refusal is not None:
                raise EngineError(N_("Webhook 地址指向本机、内网、链路本地或保留地址，不能订阅"
                                     "（内网接收方须由运维列入 ZERORUN_WEBHOOK_ALLOW）"),
                                  address=address)
    return url


def subscribe(engine: Engine, url: str, event_types: list[str], actor: Actor
              ) -> tuple[SubscriptionView, str]:
    """Subscribe a URL to event types; the signing secret is returned once."""
    _require_admin(actor)
    url = check_url(url, allowed_networks(engine.config))
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown or not event_types:
        raise EngineError(N_("请选择至少一种事件类型"), unknown=unknown)
    secret = secrets.token_urlsafe(32)
    now = engine.clock()
    with engine.db.transaction() as s:
        row = WebhookSubscription(url=url, event_types=sorted(set(event_types)),
                                  secret=seal_secret(engine.config, secret), active=True,
                                  created_by=actor.username, created_at=now)
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
    """A receiver's redirect is an error, never followed: a delivery goes only to the URL
    checked, so no hop can lead it to an address that was not."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _checked_connection(allowed: tuple[IPNetwork, ...], address: tuple[str, int],
                        timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
                        source_address: Any = None) -> socket.socket:
    """A connection to the receiver, made only after every address its name resolves to
    has been checked, and to one of those very addresses (a name that resolves to another
    address between the check and the connection, DNS rebinding, gains nothing)."""
    host, port = address
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for info in infos:
        refusal = address_refusal(str(info[4][0]), allowed)
        if refusal is not None:
            raise RefusedAddress(f"refused: {host} resolves to {refusal}")
    error: OSError | None = None
    for family, kind, proto, _name, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error or OSError(f"{host} has no address")


class _CheckedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, allowed: tuple[IPNetwork, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = functools.partial(_checked_connection, allowed)


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, allowed: tuple[IPNetwork, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = functools.partial(_checked_connection, allowed)


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, allowed: tuple[IPNetwork, ...]) -> None:
        super().__init__()
        self.allowed = allowed

    def http_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(functools.partial(_CheckedHTTPConnection, allowed=self.allowed),
                            req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, allowed: tuple[IPNetwork, ...]) -> None:
        super().__init__()
        self.allowed = allowed

    def https_open(self, req: urllib.request.Request) -> Any:
        return self.do_open(functools.partial(_CheckedHTTPSConnection, allowed=self.allowed),
                            req, context=self._context)  # type: ignore[attr-defined]


def _opener(allowed: tuple[IPNetwork, ...]) -> urllib.request.OpenerDirector:
    # No proxy from the environment either: the address checked is the one connected to.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect,
                                       _CheckedHTTPHandler(allowed),
                                       _CheckedHTTPSHandler(allowed))


def post(url: str, body: bytes, headers: dict[str, str],
         allowed: tuple[IPNetwork, ...] = ()) -> tuple[int | None, str | None]:
    """POST a delivery; (HTTP status, error text or None when the receiver took it).

    The log keeps what went wrong in our words only (a status, a refusal, the kind of
    network error), never what the receiver wrote: its body and reason phrase are not
    read back, so a delivery log cannot be used to read an internal service's answers."""
    check_url(url)  # an http(s) URL only, checked again before every request
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _opener(allowed).open(request, timeout=TIMEOUT_SECONDS) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        if 300 <= exc.code < 400:
            return exc.code, f"HTTP {exc.code}: redirects are not followed"
        return exc.code, f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, RefusedAddress):
            return None, str(reason)[:MAX_BODY_LOG]
        return None, f"URLError: {type(reason).__name__}"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}"
    if 200 <= status < 300:
        return status, None
    return status, f"HTTP {status}"


def deliver(engine: Engine, limit: int = 50, send: Sender | None = None) -> tuple[int, int]:
    """Send the deliveries that are due; return (sent, failed this round)."""
    if send is None:
        send = functools.partial(post, allowed=allowed_networks(engine.config))
    now = engine.clock()
    with engine.db.transaction() as s:
        seal_plain_secrets(s, engine.config)
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
            batch.append((delivery.id, delivery.event_type, delivery.body, sub.url,
                          open_secret(engine.config, sub.secret)))
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
