"""Wiring for alerts/: its config, receivers and worker jobs, built from Settings."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alerts.engine import AlertConfig
from alerts.notifiers import ReceiverSettings, build_notifiers, keepalive_of
from alerts.routing import load_routing
from auditwatch.settings import Settings

log = logging.getLogger(__name__)


def rules_dir(settings: Settings) -> Path:
    return Path(settings.alerts_rules_dir) if settings.alerts_rules_dir else settings.resolved_data_dir() / "alert-rules"


def receiver_settings(settings: Settings) -> ReceiverSettings:
    sink = Path(settings.alerts_sink_path) if settings.alerts_sink_path else (
        settings.resolved_data_dir() / "alerts" / "notifications.jsonl")
    return ReceiverSettings(
        sink_path=sink, slack_token=settings.slack_bot_token, slack_api_url=settings.slack_api_url,
        slack_channel_critical=settings.slack_channel_critical, slack_channel_warning=settings.slack_channel_warning,
        slack_webhook_url=settings.slack_webhook_url, pagerduty_routing_key=settings.pagerduty_routing_key,
        pagerduty_url=settings.pagerduty_events_url, pagerduty_ca_bundle=settings.pagerduty_ca_bundle,
        webhook_url=settings.alerts_webhook_url, webhook_secret=settings.alerts_webhook_secret,
        ca_bundle=settings.alerts_ca_bundle, webhook_format=settings.alerts_webhook_format,
        alertmanager_urls=tuple(u.strip() for u in settings.alertmanager_urls.split(",") if u.strip()),
        external_url=public_url(settings))


def public_url(settings: Settings) -> str:
    return settings.public_url or f"http://{settings.host}:{settings.port}"


def alert_config(settings: Settings) -> AlertConfig:
    notifiers = build_notifiers(receiver_settings(settings))
    return AlertConfig(routing=load_routing(settings.alerts_routing_file or None), receivers=frozenset(notifiers),
                       rules_dir=rules_dir(settings), public_url=public_url(settings),
                       keepalive=keepalive_of(notifiers))


def evaluate_kwargs(settings: Settings) -> dict[str, Any]:
    config = alert_config(settings)
    rules = config.load_rules()  # validate at start: problems are logged now, with file, line and field
    log.info("alerting: %d rules (%s and %s), receivers: %s", len(rules), "the packaged pack", config.rules_dir,
             ", ".join(sorted(config.receivers)))
    return {"config": config}


def deliver_kwargs(settings: Settings) -> dict[str, Any]:
    receivers = receiver_settings(settings)
    return {"notifiers": build_notifiers(receivers), "secrets": receivers.secrets(), "config": alert_config(settings)}
