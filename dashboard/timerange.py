"""The global time range (last 15 min … 30 days, or custom) resolved against an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dashboard.errors import TimeRangeError

PRESETS: dict[str, tuple[str, timedelta]] = {
    "15m": ("Last 15 minutes", timedelta(minutes=15)),
    "1h": ("Last hour", timedelta(hours=1)),
    "6h": ("Last 6 hours", timedelta(hours=6)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}
DEFAULT = "24h"
MAX_SPAN = timedelta(days=400)


def _parse(value: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip())
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (AttributeError, ValueError, OverflowError):
        raise TimeRangeError(f"the custom {name} {value!r} is not a date and time like 2024-05-01T09:30") from None


def resolve(spec: dict[str, Any] | None, *, now: datetime, override: str | None = None) -> tuple[datetime, datetime]:
    """[start, end) for a range spec ``{"preset", "start", "end"}``; a widget's preset override wins."""
    spec = spec or {}
    preset = override or spec.get("preset") or DEFAULT
    if preset in PRESETS:
        return now - PRESETS[preset][1], now
    if preset != "custom":
        raise TimeRangeError(f"unknown time range {preset!r}; choose one of {', '.join(PRESETS)} or custom")
    if not spec.get("start") or not spec.get("end"):
        raise TimeRangeError("a custom range needs both a start and an end (UTC)")
    start, end = _parse(spec["start"], "start"), _parse(spec["end"], "end")
    if start >= end:
        raise TimeRangeError("the custom range starts after it ends; swap start and end")
    if end - start > MAX_SPAN:
        raise TimeRangeError("the custom range is longer than 400 days; narrow it")
    return start, min(end, now + timedelta(minutes=5))


def describe(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"
