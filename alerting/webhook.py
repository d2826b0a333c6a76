"""Signed webhook alert sink (Standard Webhooks, https://www.standardwebhooks.com).

Each alert is POSTed as the spec's envelope, ``{"type": "churn.alert", "timestamp":
<RFC 3339 time the alert was detected>, "data": <the alert>}``, identical on every retry, with
three headers:

- ``webhook-id``: the alert id, identical on every retry: receivers deduplicate on it;
- ``webhook-timestamp``: Unix seconds of the attempt;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, keyed with
  the base64-decoded part of the ``whsec_<base64>`` secret.

So any Standard Webhooks library verifies the requests (the official ``standardwebhooks``
package does in the tests); :func:`verify_signature` does the same here. Secrets are
``whsec_`` + base64 of 24 to 64 random bytes (:func:`secret_key`; plain text is refused,
:data:`GENERATE_SECRET` makes one). 5xx, 429, timeouts and connection errors are retried with
capped exponential backoff and full jitter (``Retry-After`` wins when present); other
responses are final. An alert that cannot be delivered goes to ``on_dead_letter`` so
:meth:`WebhookSink.send` returns only when each alert is delivered or dead-lettered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Annotated, Literal

import httpx
import msgspec

from alerting.alert import Alert
from alerting.sinks.base import SinkReport, actions_of
from churnwatch.infra.runtime.metrics import Metrics
from churnwatch.infra.webhook_keys import secret_key

log = logging.getLogger("churnwatch.webhook")

EVENT_TYPE = "churn.alert"
_RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

DeadLetterHandler = Callable[[Alert, str], Awaitable[None]]


class WebhookEnvelope(msgspec.Struct, frozen=True):
    """The body of a webhook request (Standard Webhooks): the event type, the alert's
    detection time (RFC 3339, UTC, milliseconds) and the alert itself."""

    type: Literal["churn.alert"]
    timestamp: Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]
    data: Alert


def envelope(alert: Alert, payload: bytes) -> bytes:
    """The request body: the Standard Webhooks envelope around the alert's JSON ``payload``,
    timestamped with the alert's detection time (so every retry sends the same bytes)."""
    when = datetime.fromtimestamp(alert.detected_at / 1000, tz=timezone.utc)
    stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    # the alert's bytes as published (msgspec.Raw), not a re-encoding
    return _envelope_encoder.encode(WebhookEnvelope(EVENT_TYPE, stamp, msgspec.Raw(payload)))


_envelope_encoder = msgspec.json.Encoder()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) for one message."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify_signature(secret: str | bytes, headers: Mapping[str, str], body: bytes, *,
                     tolerance_s: int = 300, now: float | None = None) -> bool:
    """True if ``body`` with ``headers`` was signed with ``secret`` within ``tolerance_s``
    seconds of ``now`` (either way). ``webhook-signature`` may list several space-separated
    signatures (key rotation); one valid ``v1`` signature suffices."""
    h = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (h.get("webhook-id"), h.get("webhook-timestamp"),
                                 h.get("webhook-signature"))
    if not msg_id or not stamp or not signatures:
        return False
    try:
        timestamp = int(stamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret_key(secret), msg_id, timestamp, body).encode()
    return any(s.startswith("v1,") and hmac.compare_digest(expected, s.encode())
               for s in signatures.split())


@dataclass
class WebhookReport:
    """Outcome of one :meth:`WebhookSink.send` call."""

    delivered: int = 0
    dead_lettered: int = 0
    retries: int = 0  # attempts beyond the first, over all alerts
    lost_actions: int = field(default=0, compare=False)  # actions of those dead-lettered


class WebhookSink:
    """POSTs signed alerts to one URL, with bounded concurrency, retries and dead letters
    (an :class:`~alerting.sinks.AlertSink`: :meth:`write`).

    ``client`` (an ``httpx.AsyncClient``) is created, and closed by :meth:`aclose`, when not
    given. ``sleep``, ``clock`` and ``rng`` are injectable for tests.
    """

    def __init__(self, url: str, secret: str | bytes, *, timeout_s: float = 5,
                 max_attempts: int = 6, base_delay_s: float = 0.2, max_delay_s: float = 10,
                 concurrency: int = 8, client: httpx.AsyncClient | None = None,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 clock: Callable[[], float] = time.time,
                 on_dead_letter: DeadLetterHandler | None = None,
                 rng: random.Random | None = None, metrics: Metrics | None = None) -> None:
        if httpx.URL(url).scheme not in ("http", "https"):
            raise ValueError(f"webhook url must be http(s)://…, got {url!r}")
        if max_attempts < 1 or concurrency < 1:
            raise ValueError("max_attempts and concurrency must be at least 1")
        self.url = url
        self._key = secret_key(secret)
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.concurrency = concurrency
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._sleep = sleep
        self._clock = clock
        self._on_dead_letter = on_dead_letter
        self._rng = rng or random.Random()
        self._metrics = metrics

    async def aclose(self) -> None:
        """Close the HTTP client if this sink created it."""
        if self._owns_client:
            await self._client.aclose()

    name = "webhook"
    waits_out_redis = False

    async def write(self, alerts: Sequence[Alert], payloads: Sequence[bytes]) -> SinkReport:
        """:meth:`send`, counted: every alert delivered or dead-lettered when it returns."""
        report = await self.send(list(alerts), list(payloads))
        if self._metrics is not None:
            self._metrics.webhook_deliveries.labels("delivered").inc(report.delivered)
            self._metrics.webhook_deliveries.labels("dead_letter").inc(report.dead_lettered)
            self._metrics.webhook_retries.inc(report.retries)
        return SinkReport(sent=actions_of(alerts) - report.lost_actions,
                          dead_letter=report.lost_actions)

    async def send(self, alerts: list[Alert], payloads: list[bytes]) -> WebhookReport:
        """Deliver or dead-letter every alert (``payloads[i]`` is ``alerts[i]`` as JSON).
        Raises what ``on_dead_letter`` raises (or an unexpected client error), after
        cancelling the other sends."""
        report = WebhookReport()
        gate = asyncio.Semaphore(self.concurrency)

        async def one(alert: Alert, payload: bytes) -> None:
            async with gate:
                await self._deliver(alert, payload, report)

        try:
            async with asyncio.TaskGroup() as group:  # a failure cancels the other sends
                for alert, payload in zip(alerts, payloads, strict=True):
                    group.create_task(one(alert, payload))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return report

    async def _deliver(self, alert: Alert, payload: bytes, report: WebhookReport) -> None:
        body = envelope(alert, payload)
        for attempt in range(1, self.max_attempts + 1):
            retry_after = None
            try:
                response = await self._client.post(
                    self.url, content=body, headers=self._headers(alert.alert_id, body),
                    timeout=self.timeout_s)
            except _RETRY_ERRORS as exc:
                reason = type(exc).__name__
            else:
                status = response.status_code
                if 200 <= status < 300:
                    report.delivered += 1
                    return
                reason = f"HTTP {status}"
                if status != 429 and status < 500:
                    await self._dead_letter(alert, f"{reason} (not retried)", report)
                    return
                retry_after = self._retry_after(response.headers.get("retry-after"))
            if attempt == self.max_attempts:
                break
            delay = self._backoff(attempt, retry_after)
            log.debug("webhook %s: %s, retry %d in %.2fs", alert.alert_id, reason, attempt, delay)
            report.retries += 1
            await self._sleep(delay)
        await self._dead_letter(alert, f"{reason} after {self.max_attempts} attempts", report)

    def _headers(self, msg_id: str, body: bytes) -> dict[str, str]:
        timestamp = int(self._clock())
        return {"content-type": "application/json", "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self._key, msg_id, timestamp, body)}

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay_s)
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return self._rng.uniform(0, cap)

    def _retry_after(self, value: str | None) -> float | None:
        """``Retry-After`` as seconds from now (delta-seconds or HTTP date), None if absent
        or unreadable."""
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": UTC by RFC 5322
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, when.timestamp() - self._clock())

    async def _dead_letter(self, alert: Alert, reason: str, report: WebhookReport) -> None:
        log.warning("webhook gave up on alert %s: %s", alert.alert_id, reason)
        if self._on_dead_letter is not None:
            await self._on_dead_letter(alert, reason)
        report.dead_lettered += 1
        report.lost_actions += len(alert.actions)
