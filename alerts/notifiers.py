"""Notifiers: small classes behind one protocol. Each makes one delivery attempt and says how it went.

No retries here: a failure raises DeliveryError (retryable or not, with any Retry-After) and the
dispatcher's retry stage decides. Client libraries' own retry loops are switched off for that reason.
Secrets come in through ReceiverSettings and never appear in messages or errors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import ssl
import time
import urllib.error
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import pagerduty
import requests
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from alerts import alertmanager
from alerts.errors import DeliveryError

log = logging.getLogger(__name__)
SEVERITY_EMOJI = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}
STATUS_WORD = {"firing": "FIRING", "resolved": "RESOLVED", "acknowledged": "ACKNOWLEDGED"}
_FATAL_SLACK_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "channel_not_found",
                       "not_in_channel", "is_archived", "invalid_blocks", "msg_too_long", "missing_scope"}


class Notifier(Protocol):
    """One receiver. ``send`` delivers a notification once or raises DeliveryError.

    ``confirm`` answers, after a crash left an attempt unrecorded, whether that attempt arrived; a
    notifier whose receiver deduplicates (PagerDuty's dedup_key) or that cannot tell returns False
    and the notification is simply sent again.

    A notifier whose receiver forgets an alert it is not told of again (Alertmanager drops one at its
    ``endsAt``) has a ``keepalive`` attribute: how often it must hear of every firing alert, acknowledged
    ones included (``keepalive_of``).
    """

    name: str

    def send(self, notification_id: int, payload: Mapping[str, Any]) -> None: ...

    def confirm(self, notification_id: int, payload: Mapping[str, Any]) -> bool: ...


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _status_error(what: str, status: int, headers: Mapping[str, str] | None, body: str = "") -> DeliveryError:
    retryable = status == 429 or status >= 500 or status in (408, 409)
    return DeliveryError(f"{what} answered HTTP {status}: {body[:200]}", retryable=retryable, status_code=status,
                         retry_after=_retry_after(headers) if status in (429, 503) else None)


# -- message text -------------------------------------------------------------------------------------

def summary_line(payload: Mapping[str, Any]) -> str:
    alerts = payload.get("alerts", [])
    status = STATUS_WORD.get(payload.get("status", ""), str(payload.get("status", "")).upper())
    first = alerts[0]["title"] if alerts else payload.get("group_key", "")
    more = f" (+{len(alerts) - 1} more)" if len(alerts) > 1 else ""
    return f"[{status}] {first}{more}"


def slack_escape(value: Any) -> str:
    """Text for Slack mrkdwn with its control characters escaped, as Slack asks.

    Titles and entities carry what attackers typed (an sshd user name, a resource id): unescaped,
    ``<!channel>`` would notify a whole on-call channel and ``<https://evil|Runbook>`` would be a link.
    """
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, label: str) -> str:
    # Inside <url|label>, `|` and `>` would end the parts early.
    return f"<{slack_escape(url).replace('|', '%7C')}|{label}>"


def slack_text(payload: Mapping[str, Any]) -> str:
    """The notification's fallback ``text`` (Slack parses it as mrkdwn too)."""
    return slack_escape(summary_line(payload))


def slack_blocks(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Block Kit: a header, then per alert its title, severity, entity, counts and dashboard link."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text",
                                                                "text": slack_text(payload)[:150]}}]
    for alert in payload.get("alerts", [])[:20]:
        entity = ", ".join(f"{k}={v}" for k, v in alert.get("group_values", {}).items()) or "—"
        fields = [
            {"type": "mrkdwn", "text": f"*Severity*\n{SEVERITY_EMOJI.get(alert.get('severity'), '')} "
                                       f"{slack_escape(alert.get('severity'))}"},
            {"type": "mrkdwn", "text": f"*Status*\n{slack_escape(alert.get('status'))}"},
            {"type": "mrkdwn", "text": f"*Entity*\n{slack_escape(entity)}"},
            {"type": "mrkdwn", "text": f"*Count*\n{alert.get('count', 0)} (now {alert.get('value', 0)})"},
        ]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*{slack_escape(alert.get('title'))}*"},
                       "fields": fields})
        links = [_link(alert["dashboard_url"], "Open in dashboard")] if alert.get("dashboard_url") else []
        if alert.get("runbook_url"):
            links.append(_link(alert["runbook_url"], "Runbook"))
        context = [f"rule `{slack_escape(alert.get('rule_id'))}`",
                   f"since {alert.get('firing_at') or alert.get('started_at')}"]
        if alert.get("acknowledged_by"):
            context.append(f"acknowledged by {slack_escape(alert['acknowledged_by'])}")
        if alert.get("flapping"):
            context.append("flapping")
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links + context)}]})
    if len(payload.get("alerts", [])) > 20:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                        "text": f"and {len(payload['alerts']) - 20} more"}]})
    return blocks


# -- Slack ----------------------------------------------------------------------------------------------

class SlackChat:
    """chat.postMessage to a channel with a bot token; message metadata marks the notification id."""

    def __init__(self, name: str, *, token: str, channel: str, base_url: str = "https://slack.com/api/",
                 timeout: float = 10, ssl_context: ssl.SSLContext | None = None) -> None:
        self.name = name
        self.channel = channel
        self._client = WebClient(token=token, base_url=base_url, timeout=int(timeout), ssl=ssl_context,
                                 retry_handlers=[])

    def send(self, notification_id: int, payload: Mapping[str, Any]) -> None:
        try:
            self._client.chat_postMessage(
                channel=self.channel, text=slack_text(payload), blocks=slack_blocks(payload),
                metadata={"event_type": "auditwatch_notification",
                          "event_payload": {"notification_id": notification_id}})
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            status = exc.response.status_code if exc.response is not None else 0
            if status == 429 or error == "ratelimited":
                raise DeliveryError("Slack rate-limited chat.postMessage", status_code=429,
                                    retry_after=_retry_after(exc.response.headers)) from None
            raise DeliveryError(f"Slack refused chat.postMessage: {error or status}", status_code=status,
                                retryable=error not in _FATAL_SLACK_ERRORS and (status >= 500 or status == 0
                                                                                or error == "internal_error"),
                                ) from None
        except (SlackClientError, urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"cannot reach Slack: {type(exc).__name__}: {exc}") from None

    def confirm(self, notification_id: int, payload: Mapping[str, Any]) -> bool:
        try:
            response = self._client.conversations_history(channel=self.channel, limit=100,
                                                          include_all_metadata=True)
        except (SlackClientError, urllib.error.URLError, OSError) as exc:
            log.warning("could not check Slack for notification %s (%s); sending again", notification_id,
                        type(exc).__name__)
            return False
        for message in response.get("messages", []):
            meta = message.get("metadata") or {}
            if meta.get("event_type") == "auditwatch_notification" and \
                    (meta.get("event_payload") or {}).get("notification_id") == notification_id:
                return True
        return False


class SlackWebhook:
    """A Slack incoming webhook (a channel fixed by the webhook URL)."""

    def __init__(self, name: str, *, url: str, timeout: float = 10,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.name = name
        self._client = WebhookClient(url, timeout=int(timeout), ssl=ssl_context, retry_handlers=[])

    def send(self, notification_id: int, payload: Mapping[str, Any]) -> None:
        try:
            response = self._client.send(text=slack_text(payload), blocks=slack_blocks(payload))
        except (SlackClientError, urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"cannot reach the Slack webhook: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise _status_error("the Slack webhook", response.status_code, response.headers, response.body or "")

    def confirm(self, notification_id: int, payload: Mapping[str, Any]) -> bool:
        return False


# -- PagerDuty --------------------------------------------------------------------------------------------

class PagerDuty:
    """Events API v2 through the ``pagerduty`` client: trigger / acknowledge / resolve, dedup_key = fingerprint."""

    SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}

    def __init__(self, name: str, *, routing_key: str, base_url: str = "https://events.pagerduty.com",
                 ca_bundle: str | None = None, timeout: float = 10) -> None:
        self.name = name
        verify = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
        self._client = pagerduty.EventsApiV2Client(routing_key, base_url=base_url.rstrip("/"), verify=verify)
        self._client.timeout = timeout
        # Retry is the dispatcher's stage: with a limit of one and max_http_attempts < 0, the client
        # returns the first error response instead of sleeping and retrying (429 included).
        self._client.retry = {status: 1 for status in (429, 500, 502, 503, 504)}
        self._client.max_http_attempts = -1
        self._client.max_network_attempts = 0

    def send(self, notification_id: int, payload: Mapping[str, Any]) -> None:
        for alert in payload.get("alerts", []):
            action = {"firing": "trigger", "resolved": "resolve", "acknowledged": "acknowledge"}[alert["status"]]
            try:
                if action == "trigger":
                    self._client.trigger(
                        summary=alert["title"][:1024], source="auditwatch", dedup_key=alert["fingerprint"],
                        severity=self.SEVERITY.get(alert.get("severity"), "warning"),
                        payload={"timestamp": alert.get("firing_at") or alert.get("started_at"),
                                 "component": alert.get("rule_id"), "class": alert.get("rule_id")},
                        custom_details={"labels": alert.get("labels", {}), "count": alert.get("count"),
                                        "entity": alert.get("group_values", {}), "runbook": alert.get("runbook_url")},
                        links=[{"href": alert["dashboard_url"], "text": "Auditwatch dashboard"}]
                        if alert.get("dashboard_url") else None)
                else:
                    self._client.send_event(action, dedup_key=alert["fingerprint"])
            except pagerduty.HttpError as exc:
                response = exc.response
                raise _status_error(f"PagerDuty ({action})", response.status_code, response.headers,
                                    response.text) from None
            except pagerduty.Error as exc:
                raise DeliveryError(f"cannot reach PagerDuty ({action}): {type(exc.__cause__ or exc).__name__}") \
                    from None

    def confirm(self, notification_id: int, payload: Mapping[str, Any]) -> bool:
        return False  # sending again is harmless: PagerDuty deduplicates on dedup_key


# -- generic webhook -----------------------------------------------------------------------------------

class Webhook:
    """POST the notification as JSON, signed: X-Auditwatch-Signature = sha256 HMAC of "<timestamp>.<body>".

    ``format="auditwatch"`` sends our own payload; ``"alertmanager"`` sends Alertmanager's webhook payload
    (version 4), so receivers written for Alertmanager take our alerts unchanged (signed when a secret is set).
    """

    FORMATS = ("auditwatch", "alertmanager")

    def __init__(self, name: str, *, url: str, secret: str, timeout: float = 10, verify: str | bool = True,
                 format: str = "auditwatch", external_url: str = "") -> None:
        if format not in self.FORMATS:
            raise ValueError(f"webhook format must be one of {', '.join(self.FORMATS)}, not {format!r}")
        self.name = name
        self._url = url
        self._secret = secret.encode()
        self._timeout = timeout
        self._verify = verify
        self._format = format
        self._external_url = external_url

    def body(self, notification_id: int, payload: Mapping[str, Any]) -> bytes:
        document = alertmanager.webhook_payload(payload, external_url=self._external_url) \
            if self._format == "alertmanager" else {"notification_id": notification_id, **payload}
        return json.dumps(document, separators=(",", ":"), default=str).encode()

    def send(self, notification_id: int, payload: Mapping[str, Any]) -> None:
        body = self.body(notification_id, payload)
        headers = {"Content-Type": "application/json", "Idempotency-Key": f"auditwatch-{notification_id}"}
        if self._secret:
            stamp = str(int(time.time()))
            signature = hmac.new(self._secret, stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            headers.update({"X-Auditwatch-Timestamp": stamp, "X-Auditwatch-Signature": f"sha256={signature}"})
        try:
            response = requests.post(self._url, data=body, timeout=self._timeout, verify=self._verify,
                                     headers=headers)
        except requests.RequestException as exc:
            raise DeliveryError(f"cannot reach the webhook: {type(exc).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise _status_error("the webhook", response.status_code, response.headers, response.text)

    def confirm(self, notification_id: int, payload: Mapping[str, Any]) -> bool:
        return False  # receivers deduplicate on Idempotency-Key


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """For webhook receivers (and tests): does the signature match?"""
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", signature)


# -- local sink -------------------------------------------------------------------------------------------

class LocalSink:
    """JSON lines under the data directory: the default receiver, and the dashboard's notification feed."""

    def __init__(self, name: str, *, path: Path) -> None:
        self.name = name
        self.path = Path(path)

    def send(self, notification_id: int, payload: Mapping[str, Any]) -> None:
        line = json.dumps({"notification_id": notification_id, **payload}, separators=(",", ":"), default=str)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise DeliveryError(f"cannot write the local alert sink {self.path}: {exc}") from None

    def confirm(self, notification_id: int, payload: Mapping[str, Any]) -> bool:
        return any(n.get("notification_id") == notification_id for n in read_feed(self.path, limit=1000))


def read_feed(path: Path, *, limit: int = 100) -> list[dict[str, Any]]:
    """The newest notifications of a local sink file, newest first (for the dashboard)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 4 * 1024 * 1024))
        lines = f.read().splitlines()
    out = []
    for raw in reversed(lines[1:] if size > 4 * 1024 * 1024 else lines):
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue  # a line cut by a crash mid-write
        if len(out) >= limit:
            break
    return out


# -- building receivers from settings ------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceiverSettings:
    """Credentials and endpoints (from settings / environment); an empty credential disables a receiver."""

    sink_path: Path
    slack_token: str = ""
    slack_api_url: str = "https://slack.com/api/"
    slack_channel_critical: str = "#sec-oncall"
    slack_channel_warning: str = "#sec-alerts"
    slack_webhook_url: str = ""
    pagerduty_routing_key: str = ""
    pagerduty_url: str = "https://events.pagerduty.com"
    pagerduty_ca_bundle: str = ""
    webhook_url: str = ""
    webhook_secret: str = ""
    ca_bundle: str = ""  # extra CA for Slack and the webhook (self-hosted proxies, tests)
    timeout: float = 10.0
    webhook_format: str = "auditwatch"  # or "alertmanager": Alertmanager's webhook payload, version 4
    alertmanager_urls: tuple[str, ...] = ()  # push alerts to these Alertmanagers (POST /api/v2/alerts)
    external_url: str = ""  # this installation's public URL (externalURL of Alertmanager-format payloads)

    def secrets(self) -> list[str]:
        return [s for s in (self.slack_token, self.slack_webhook_url, self.pagerduty_routing_key,
                            self.webhook_secret) if s]


def keepalive_of(notifiers: Mapping[str, Notifier]) -> dict[str, timedelta]:
    """The receivers that must be told again of what still fires, and how often (see ``Notifier``)."""
    return {name: every for name, n in notifiers.items() if (every := getattr(n, "keepalive", None))}


def build_notifiers(settings: ReceiverSettings) -> dict[str, Notifier]:
    """The receivers that have credentials, by the names the routing tree uses; local always."""
    context = ssl.create_default_context(cafile=settings.ca_bundle) if settings.ca_bundle else None
    out: dict[str, Notifier] = {"local": LocalSink("local", path=settings.sink_path)}
    if settings.slack_token:
        for name, channel in (("slack-oncall", settings.slack_channel_critical),
                              ("slack-alerts", settings.slack_channel_warning)):
            out[name] = SlackChat(name, token=settings.slack_token, channel=channel, base_url=settings.slack_api_url,
                                  timeout=settings.timeout, ssl_context=context)
    elif settings.slack_webhook_url:
        for name in ("slack-oncall", "slack-alerts"):
            out[name] = SlackWebhook(name, url=settings.slack_webhook_url, timeout=settings.timeout,
                                     ssl_context=context)
    if settings.pagerduty_routing_key:
        out["pagerduty"] = PagerDuty("pagerduty", routing_key=settings.pagerduty_routing_key,
                                     base_url=settings.pagerduty_url, ca_bundle=settings.pagerduty_ca_bundle or None,
                                     timeout=settings.timeout)
    # Our own format is always signed; Alertmanager-format receivers often cannot check a signature.
    if settings.webhook_url and (settings.webhook_secret or settings.webhook_format == "alertmanager"):
        out["webhook"] = Webhook("webhook", url=settings.webhook_url, secret=settings.webhook_secret,
                                 timeout=settings.timeout, verify=settings.ca_bundle or True,
                                 format=settings.webhook_format, external_url=settings.external_url)
    if settings.alertmanager_urls:
        out["alertmanager"] = alertmanager.AlertmanagerPush("alertmanager", urls=list(settings.alertmanager_urls),
                                                            timeout=settings.timeout,
                                                            verify=settings.ca_bundle or True)
    return out
