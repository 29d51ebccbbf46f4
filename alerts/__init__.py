"""Alerting: rules over rollups, raw counts and anomalies → lifecycle → route → Slack / PagerDuty."""
