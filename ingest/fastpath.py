"""The common case of ``validate_event``, decided with what repeats across events decided once.

Most events of a batch are well-formed and share their event type, users, sources, user agents,
addresses and timestamps to the second. ``BatchValidator`` accepts an event only when every check of
``validate_event`` passes, using remembered answers for the values that repeat; anything it is not sure
about (a missing or odd field, a value not seen before that fails a cheap test) goes to ``validate_event``
itself, so what is refused, and every error message, is exactly what ``validate_event`` says.
``tests/ingest/test_fastpath.py`` holds the two equal over valid and invalid events.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson

from ingest.errors import EventRejected
from ingest.validate import (
    _CONTROL,
    _EPOCH,
    _METADATA_CONTROL,
    _OUTCOMES,
    ALLOWED,
    EVENT_TYPE,
    INGEST_KEY,
    LIMITS,
    ValidationPolicy,
    ValidEvent,
    normal_ip,
    parse_timestamp,
    validate_event,
)
from storage.events import Outcome
from storage.platform import is_platform_principal, is_platform_source

_MAX_REMEMBERED = 50_000  # per cache; cleared when full (the values are cheap to decide again)
_SCALARS = (int, float, bool, type(None))


def _remember(cache: dict | set, size: int = _MAX_REMEMBERED) -> None:
    if len(cache) >= size:
        cache.clear()


class _Seen:
    """Per-process answers for values that repeat: valid event types, users, sources, user agents, addresses."""

    def __init__(self) -> None:
        self.types: set[str] = set()
        self.users: dict[int, set[str]] = {}  # by text_limit_scale
        self.sources: dict[int, set[str]] = {}
        self.agents: dict[int, set[str]] = {}
        self.ips: dict[str, str] = {}
        self.keys: set[str] = set()  # metadata keys without control characters


_SEEN = _Seen()


class BatchValidator:
    """``validate_event`` for the events of one batch (one ``now``, one policy, one backfill flag)."""

    def __init__(self, *, now: datetime, policy: ValidationPolicy, backfill: bool) -> None:
        self._now = now
        self._policy = policy
        self._backfill = backfill
        self._latest = now + policy.clock_skew
        self._earliest = _EPOCH if backfill else max(_EPOCH, now - policy.clock_skew)
        self._times: dict[str, datetime] = {}
        scale = policy.text_limit_scale
        self._user_max, self._source_max = LIMITS["user_id"] * scale, LIMITS["source"] * scale
        self._agent_max, self._resource_max = LIMITS["user_agent"] * scale, LIMITS["resource_id"] * scale
        self._users = _SEEN.users.setdefault(scale, set())
        self._sources = _SEEN.sources.setdefault(scale, set())
        self._agents = _SEEN.agents.setdefault(scale, set())

    def __call__(self, obj: Any) -> ValidEvent:
        """The event, or EventRejected exactly as ``validate_event`` raises it."""
        event = self._fast(obj) if type(obj) is dict else None
        if event is None:
            return validate_event(obj, now=self._now, policy=self._policy, backfill=self._backfill)
        return event

    def _fast(self, obj: dict[str, Any]) -> ValidEvent | None:  # noqa: C901, PLR0911, PLR0912 - one flat pass
        if not obj.keys() <= ALLOWED:
            return None
        get = obj.get
        raw_id, raw_ts, event_type, user_id = get("event_id"), get("timestamp"), get("event_type"), get("user_id")
        if (type(raw_id) is not str or len(raw_id) != 36 or type(raw_ts) is not str or type(event_type) is not str
                or type(user_id) is not str):
            return None
        try:
            event_id = uuid.UUID(raw_id)
        except ValueError:
            return None

        timestamp = self._times.get(raw_ts)
        if timestamp is None:
            try:
                timestamp = parse_timestamp(raw_ts)
            except EventRejected:
                return None
            if len(self._times) < 10_000:
                self._times[raw_ts] = timestamp
        if not self._earliest <= timestamp <= self._latest:
            return None

        if event_type not in _SEEN.types:
            if not EVENT_TYPE.fullmatch(event_type):
                return None
            _remember(_SEEN.types)
            _SEEN.types.add(event_type)
        if user_id not in self._users:
            if (not user_id.strip() or len(user_id) > self._user_max
                    or _CONTROL.search(user_id) or is_platform_principal(user_id)):
                return None
            _remember(self._users)
            self._users.add(user_id)

        source = get("source")
        if source is not None and (type(source) is not str or source not in self._sources):
            if (type(source) is not str or len(source) > self._source_max or _CONTROL.search(source)
                    or is_platform_source(source)):
                return None
            _remember(self._sources)
            self._sources.add(source)
        user_agent = get("user_agent")
        if user_agent is not None and (type(user_agent) is not str or user_agent not in self._agents):
            if type(user_agent) is not str or len(user_agent) > self._agent_max or _CONTROL.search(user_agent):
                return None
            _remember(self._agents, 4096)
            self._agents.add(user_agent)
        resource_id = get("resource_id")
        if resource_id is not None and (type(resource_id) is not str or len(resource_id) > self._resource_max
                                        or _CONTROL.search(resource_id)):
            return None

        raw_outcome = get("outcome")
        if raw_outcome is None:
            outcome = Outcome.UNKNOWN
        else:
            outcome = _OUTCOMES.get(raw_outcome) if type(raw_outcome) is str else None
            if outcome is None:
                return None

        source_ip = get("source_ip")
        if source_ip is not None:
            normal = _SEEN.ips.get(source_ip) if type(source_ip) is str else None
            if normal is None:
                if (type(source_ip) is not str or len(source_ip) > LIMITS["source_ip"] or "%" in source_ip
                        or _CONTROL.search(source_ip)):
                    return None
                normal = normal_ip(source_ip)
                if normal is None:
                    return None
                _remember(_SEEN.ips)
                _SEEN.ips[source_ip] = normal
            source_ip = normal

        metadata = get("metadata")
        if metadata is None:
            metadata = {}
        elif type(metadata) is not dict or (metadata and not self._metadata_ok(metadata)):
            return None

        return ValidEvent(event_id, timestamp, event_type, user_id, outcome, source, source_ip, user_agent,
                          resource_id, metadata)

    def _metadata_ok(self, metadata: dict[str, Any]) -> bool:
        """A flat object of scalars, no control characters, under the size limit; anything else: not sure."""
        if INGEST_KEY in metadata:
            return False
        keys = _SEEN.keys
        texts = []
        for key, value in metadata.items():
            if key not in keys:
                if type(key) is not str or _METADATA_CONTROL.search(key):
                    return False
                _remember(keys)
                keys.add(key)
            if type(value) is str:
                texts.append(value)
            elif type(value) not in _SCALARS:
                return False
        if texts and _METADATA_CONTROL.search("".join(texts)):
            return False
        if self._policy.max_metadata_depth < 1:
            return False
        try:
            return len(orjson.dumps(metadata)) < self._policy.max_metadata_bytes
        except orjson.JSONEncodeError:
            return False

