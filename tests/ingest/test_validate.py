"""Field-level validation of one event: R1 (required fields), R2 (time window), R7 (metadata)
and the shape of every other field. Pure functions, so no database here."""

from __future__ import annotations

import re
import socket
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.errors import EventRejected
from ingest.validate import (
    ALLOWED,
    EVENT_TYPE,
    LIMITS,
    REQUIRED,
    SERVER_SET,
    ValidationPolicy,
    ValidEvent,
    parse_ip,
    parse_timestamp,
    validate_event,
)
from storage.events import Outcome

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
POLICY = ValidationPolicy()
SKEW = POLICY.clock_skew
EVENT_ID = "6f1c1f2e-8a4f-4c8e-9d55-1f2f3f4f5f6f"


def event(**fields: Any) -> dict[str, Any]:
    """A valid event; keyword ``None``-valued fields are set to null, use ``drop`` to remove them."""
    base: dict[str, Any] = {
        "event_id": EVENT_ID,
        "timestamp": "2024-06-01T12:00:00Z",
        "event_type": "user_login",
        "user_id": "alice",
    }
    base.update(fields)
    return base


def without(field: str) -> dict[str, Any]:
    body = event()
    body.pop(field)
    return body


def check(obj: Any, *, now: datetime = NOW, policy: ValidationPolicy = POLICY, backfill: bool = False) -> ValidEvent:
    return validate_event(obj, now=now, policy=policy, backfill=backfill)


def rejected(obj: Any, **kwargs: Any) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        check(obj, **kwargs)
    return info.value


def iso(moment: datetime) -> str:
    return moment.isoformat()


# -- a valid event ---------------------------------------------------------------------------------


def test_minimal_event_is_valid_with_defaults():
    valid = check(event())
    assert valid == ValidEvent(
        event_id=uuid.UUID(EVENT_ID), timestamp=NOW, event_type="user_login", user_id="alice",
        outcome=Outcome.UNKNOWN, source=None, source_ip=None, user_agent=None, resource_id=None, metadata={},
    )


def test_full_event_keeps_every_field():
    valid = check(event(
        outcome="failure", source="vpn-gw", source_ip="203.0.113.9", user_agent="curl/8.5",
        resource_id="doc:42", metadata={"attempt": 3, "tags": ["a", "b"], "ok": False, "ratio": 0.5},
    ))
    assert valid.outcome is Outcome.FAILURE
    assert (valid.source, valid.source_ip, valid.user_agent, valid.resource_id) == (
        "vpn-gw", "203.0.113.9", "curl/8.5", "doc:42")
    assert valid.metadata == {"attempt": 3, "tags": ["a", "b"], "ok": False, "ratio": 0.5}


def test_optional_fields_may_be_null():
    valid = check(event(outcome=None, source=None, source_ip=None, user_agent=None, resource_id=None, metadata=None))
    assert valid.outcome is Outcome.UNKNOWN
    assert valid.source is valid.source_ip is valid.user_agent is valid.resource_id is None
    assert valid.metadata == {}


@pytest.mark.parametrize("value", [[], "event", 1, 1.5, None, True])
def test_event_must_be_an_object(value):
    err = rejected(value)
    assert (err.code, err.field) == ("wrong_type", None)
    assert err.status == 422


# -- R1: required fields -------------------------------------------------------------------------------


@pytest.mark.parametrize("field", REQUIRED)
def test_r1_missing_required_field(field):
    err = rejected(without(field))
    assert (err.code, err.field) == ("missing_field", field)
    assert "R1" in err.message


@pytest.mark.parametrize("field", REQUIRED)
@pytest.mark.parametrize("value", [None, "", "   ", "\t"], ids=["null", "empty", "blank", "tab"])
def test_r1_null_or_empty_required_field(field, value):
    err = rejected(event(**{field: value}))
    assert (err.code, err.field) == ("missing_field", field)


def test_r1_reports_the_first_missing_field_in_order():
    err = rejected({})
    assert (err.code, err.field) == ("missing_field", "event_id")
    err = rejected({"event_id": EVENT_ID, "timestamp": "2024-06-01T12:00:00Z"})
    assert err.field == "event_type"


# -- R2: the time window ----------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [timedelta(0), SKEW, -SKEW, SKEW - timedelta(microseconds=1)])
def test_r2_timestamps_inside_the_window_are_accepted(offset):
    assert check(event(timestamp=iso(NOW + offset))).timestamp == NOW + offset


@pytest.mark.parametrize("offset", [SKEW + timedelta(microseconds=1), timedelta(hours=1), timedelta(days=3650)])
def test_r2_future_is_rejected(offset):
    err = rejected(event(timestamp=iso(NOW + offset)))
    assert (err.code, err.field) == ("timestamp_out_of_window", "timestamp")
    assert "future" in err.message


@pytest.mark.parametrize("offset", [SKEW + timedelta(microseconds=1), timedelta(hours=1), timedelta(days=365)])
def test_r2_past_is_rejected_without_backfill(offset):
    err = rejected(event(timestamp=iso(NOW - offset)))
    assert (err.code, err.field) == ("timestamp_out_of_window", "timestamp")
    assert "past" in err.message and "backfill" in err.message


@pytest.mark.parametrize("offset", [SKEW + timedelta(seconds=1), timedelta(days=1), timedelta(days=365 * 20)])
def test_r2_backfill_allows_the_past(offset):
    assert check(event(timestamp=iso(NOW - offset)), backfill=True).timestamp == NOW - offset


@pytest.mark.parametrize("offset", [SKEW + timedelta(microseconds=1), timedelta(days=1)])
def test_r2_backfill_keeps_the_future_closed(offset):
    err = rejected(event(timestamp=iso(NOW + offset)), backfill=True)
    assert (err.code, err.field) == ("timestamp_out_of_window", "timestamp")


@pytest.mark.parametrize("value", ["1969-12-31T23:59:59Z", "0001-01-01T00:00:00+00:00"])
def test_r2_backfill_still_rejects_before_1970(value):
    err = rejected(event(timestamp=value), backfill=True)
    assert (err.code, err.field) == ("timestamp_out_of_window", "timestamp")


def test_r2_window_follows_the_policy_skew():
    policy = ValidationPolicy(clock_skew=timedelta(seconds=10))
    assert check(event(timestamp=iso(NOW + timedelta(seconds=10))), policy=policy)
    err = rejected(event(timestamp=iso(NOW + timedelta(seconds=11))), policy=policy)
    assert err.code == "timestamp_out_of_window"
    assert "10 s" in err.message


def test_r2_window_follows_the_injected_now():
    later = NOW + timedelta(days=1)
    assert check(event(timestamp="2024-06-02T12:00:00Z"), now=later).timestamp == later
    assert rejected(event(timestamp="2024-06-02T12:00:00Z")).code == "timestamp_out_of_window"


@pytest.mark.parametrize("value", [
    "2024-06-01T14:00:00+02:00", "2024-06-01T07:00:00-05:00", "2024-06-01T12:00:00Z",
    "2024-06-01T12:00:00+00:00", "2024-06-01 12:00:00Z", "2024-06-01T12:00:00.000000Z", "20240601T120000Z",
])
def test_r2_offsets_are_converted_to_utc(value):
    ts = check(event(timestamp=value)).timestamp
    assert ts == NOW
    assert ts.utcoffset() == timedelta(0)


def test_r2_fractional_seconds_are_kept():
    assert check(event(timestamp="2024-06-01T12:00:00.123456Z")).timestamp == NOW.replace(microsecond=123456)


@pytest.mark.parametrize("value", ["2024-06-01T12:00:00", "2024-06-01T12:00:00.5", "2024-06-01 12:00:00"])
def test_r2_naive_timestamps_are_rejected(value):
    err = rejected(event(timestamp=value))
    assert (err.code, err.field) == ("invalid_timestamp", "timestamp")
    assert "time zone" in err.message


@pytest.mark.parametrize("value", [
    "yesterday at noon please",
    "2024-06-01",  # a date, no time
    "1717243200",  # epoch seconds as a string
    "1717243200000000",
    "2024-13-01T12:00:00Z",
    "2024-06-31T12:00:00Z",
    "2024-06-01T25:00:00Z",
    "2024-06-01T12:00:60Z",
    "2024-06-01T12:00:00+25:00",
    "Sat, 01 Jun 2024 12:00:00 GMT",
    "2024-06-01T12:00:00Z and more text",
    pytest.param("2024-06-01T12:00:00Z" + " " * 10_000, id="trailing-10k-spaces"),
    pytest.param("9" * 1_000_000, id="a-megabyte-of-digits"),
    "２０２４-06-01T12:00:00Z",
    "2024-06-01T12:00:00\x00Z",  # fromisoformat alone accepts this
    "2024-06-01x12:00:00Z",  # ... and any date/time separator
    "2024-06-01\x0012:00:00Z",
    "2024-06-01T12:00:00Z\x00",
    # valid ISO, but out of datetime's range once moved to UTC
    "0001-01-01T00:30:00+01:00",
    "9999-12-31T23:59:59-01:00",
])
def test_r2_non_iso_timestamps_are_invalid(value):
    err = rejected(event(timestamp=value), backfill=True)
    assert (err.code, err.field) == ("invalid_timestamp", "timestamp")
    assert value not in err.message


@pytest.mark.parametrize("value", [1717243200, 1717243200.5, True, ["2024-06-01T12:00:00Z"],
                                   {"iso": "2024-06-01T12:00:00Z"}])
def test_r2_non_string_timestamps_are_wrong_type(value):
    err = rejected(event(timestamp=value))
    assert (err.code, err.field) == ("wrong_type", "timestamp")
    assert "ISO 8601" in err.message


def test_parse_timestamp_names_the_field():
    assert parse_timestamp("2024-06-01T12:00:00Z", "since") == NOW
    with pytest.raises(EventRejected) as info:
        parse_timestamp("soon", "since")
    assert info.value.field == "since"


# -- R7: metadata -----------------------------------------------------------------------------------------


def _metadata_of_size(size: int, char: str = "x") -> dict[str, str]:
    overhead = len(orjson.dumps({"k": ""}))
    body = {"k": char * ((size - overhead) // len(char.encode()))}
    assert len(orjson.dumps(body)) == size
    return body


def test_r7_metadata_just_under_the_limit_is_accepted():
    metadata = _metadata_of_size(POLICY.max_metadata_bytes - 1)
    assert check(event(metadata=metadata)).metadata == metadata


@pytest.mark.parametrize("size", [10 * 1024, 10 * 1024 + 1, 100_000])
def test_r7_metadata_at_or_over_the_limit_is_rejected(size):
    err = rejected(event(metadata=_metadata_of_size(size)))
    assert (err.code, err.field) == ("metadata_too_large", "metadata")
    assert "R7" in err.message and str(size) in err.message


def test_r7_size_counts_utf8_bytes_not_characters():
    metadata = _metadata_of_size(POLICY.max_metadata_bytes, char="é")
    assert len(metadata["k"]) < POLICY.max_metadata_bytes // 2 + 10
    assert rejected(event(metadata=metadata)).code == "metadata_too_large"


def test_r7_limit_follows_the_policy():
    policy = ValidationPolicy(max_metadata_bytes=100)
    assert check(event(metadata=_metadata_of_size(99)), policy=policy)
    assert rejected(event(metadata=_metadata_of_size(100)), policy=policy).code == "metadata_too_large"


def nested(levels: int, *, as_list: bool = False) -> dict[str, Any]:
    """A metadata object ``levels`` containers deep (the object itself counts as one)."""
    node: Any = {}
    for _ in range(levels - 2):
        node = [node] if as_list else {"a": node}
    return {"a": node}


def test_nested_helper_counts_levels():
    assert nested(3) == {"a": {"a": {}}}
    assert nested(3, as_list=True) == {"a": [{}]}


@pytest.mark.parametrize("as_list", [False, True])
def test_r7_nesting_up_to_the_limit_is_accepted(as_list):
    metadata = nested(POLICY.max_metadata_depth, as_list=as_list)
    assert check(event(metadata=metadata)).metadata == metadata


@pytest.mark.parametrize("levels", [POLICY.max_metadata_depth + 1, 100])
@pytest.mark.parametrize("as_list", [False, True])
def test_r7_deep_nesting_is_rejected(levels, as_list):
    err = rejected(event(metadata=nested(levels, as_list=as_list)))
    assert (err.code, err.field) == ("too_deep", "metadata")


def test_r7_nesting_deeper_than_the_json_encoder_allows_is_rejected_cleanly():
    # orjson decodes up to 1024 levels but encodes only 255: this must be a rejection, not a TypeError.
    metadata = orjson.loads(b'{"a":' * 500 + b"{}" + b"}" * 500)
    err = rejected(event(metadata=metadata))
    assert (err.code, err.field) == ("too_deep", "metadata")


@pytest.mark.parametrize("metadata", [
    {"bad\x00key": 1},
    {"ok": "nul\x00value"},
    {"ok": "escape \x1b[31m red"},
    {"ok": "del\x7f"},
    {"ok": "bell\x07"},
    {"ok": {"deeper": ["fine", "vertical\x0btab"]}},
    {"ok": [{"x\x01": 1}]},
    {"list": ["a", ["b", "form\x0cfeed"]]},
])
def test_r7_control_characters_in_metadata_are_rejected(metadata):
    err = rejected(event(metadata=metadata))
    assert (err.code, err.field) == ("control_characters", "metadata")


def test_r7_whitespace_controls_and_unicode_are_allowed_in_metadata():
    metadata = {"query": "SELECT 1\n\tFROM t\r\n", "name": "Zoë ✓ 日本", "multi\nline key": True}
    assert check(event(metadata=metadata)).metadata == metadata


@pytest.mark.parametrize("value", [[], [{"a": 1}], "a string", 42, 1.5, True])
def test_r7_metadata_must_be_an_object(value):
    err = rejected(event(metadata=value))
    assert (err.code, err.field) == ("wrong_type", "metadata")


def test_r7_empty_and_null_metadata_are_empty():
    assert check(event(metadata={})).metadata == {}
    assert check(event(metadata=None)).metadata == {}


def test_r7_metadata_json_cannot_carry_is_rejected_cleanly():
    err = rejected(event(metadata={"n": 10**30}))
    assert (err.code, err.field) == ("wrong_type", "metadata")


# -- event_id ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "not-a-uuid", "1234", "g" * 32, EVENT_ID + "0", EVENT_ID[:-1],
    pytest.param(EVENT_ID + " " * 50, id="padded"), pytest.param("x" * 10_000, id="10k"),
    "6f1c1f2e-8a4f-4c8e-9d55-1f2f3f4f5f6", "6f1c1f2e_8a4f_4c8e_9d55_1f2f3f4f5f6f",
])
def test_invalid_uuid_strings_are_rejected(value):
    err = rejected(event(event_id=value))
    assert (err.code, err.field) == ("invalid_uuid", "event_id")
    assert value not in err.message


@pytest.mark.parametrize("value", [123, 1.5, True, [EVENT_ID], {"id": EVENT_ID}])
def test_non_string_event_ids_are_rejected(value):
    err = rejected(event(event_id=value))
    assert (err.code, err.field) == ("invalid_uuid", "event_id")


@pytest.mark.parametrize("value", [EVENT_ID.upper(), EVENT_ID.replace("-", ""), "{" + EVENT_ID + "}"])
def test_uuid_spellings_normalise(value):
    assert check(event(event_id=value)).event_id == uuid.UUID(EVENT_ID)


# -- event_type and the text fields --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["user_login", "a", "config.change_v2", "x" * 64, "a1._"])
def test_event_type_pattern_accepts(value):
    assert check(event(event_type=value)).event_type == value


@pytest.mark.parametrize("value", ["UserLogin", "1login", "_login", ".login", "user-login", "user login",
                                   "x" * 65, "login✓", "user/login"])
def test_event_type_pattern_rejects(value):
    err = rejected(event(event_type=value))
    assert (err.code, err.field) == ("invalid_event_type", "event_type")


TEXT_FIELDS = ("event_type", "user_id", "source", "source_ip", "user_agent", "resource_id")


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("value", [1, 1.5, True, False, [], ["alice"], {}, {"a": "b"}])
def test_text_fields_must_be_strings(field, value):
    err = rejected(event(**{field: value}))
    assert (err.code, err.field) == ("wrong_type", field)


@pytest.mark.parametrize("field", ["user_id", "source", "user_agent", "resource_id"])
@pytest.mark.parametrize("value", ["nul\x00", "new\nline", "carriage\rreturn", "tab\there", "esc\x1b[2J",
                                   "del\x7f", "\x01"])
def test_control_characters_in_text_fields_are_rejected(field, value):
    err = rejected(event(**{field: value}))
    assert (err.code, err.field) == ("control_characters", field)
    assert value not in err.message


def test_control_characters_in_event_type_are_rejected():
    err = rejected(event(event_type="user_login\x00"))
    assert (err.code, err.field) == ("control_characters", "event_type")


@pytest.mark.parametrize("field", ["user_id", "source", "user_agent", "resource_id"])
def test_text_fields_up_to_their_limit_are_accepted(field):
    value = "x" * LIMITS[field]
    assert getattr(check(event(**{field: value})), field) == value


@pytest.mark.parametrize("field", ["user_id", "source", "user_agent", "resource_id", "source_ip"])
def test_over_long_text_fields_are_rejected(field):
    err = rejected(event(**{field: "1" * (LIMITS[field] + 1)}))
    assert (err.code, err.field) == ("too_long", field)
    assert str(LIMITS[field]) in err.message


def test_unicode_user_ids_are_kept_exactly():
    for user_id in ("zoë@example.com", "日本語ユーザー", "  padded  ", "CN=Alice,OU=Ops", "a" * 256):
        assert check(event(user_id=user_id)).user_id == user_id


# -- source_ip ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "normalised"), [
    ("192.0.2.1", "192.0.2.1"),
    ("8.8.8.8", "8.8.8.8"),
    ("2001:db8::1", "2001:db8::1"),
    ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
    ("::1", "::1"),
    ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),  # IPv4-mapped, as PostgreSQL prints it
])
def test_valid_ips_are_normalised(value, normalised):
    assert check(event(source_ip=value)).source_ip == normalised


@pytest.mark.parametrize("value", [
    "", "256.1.1.1", "1.2.3", "1.2.3.4.5", "01.02.03.04", "192.0.2.1/24", " 192.0.2.1", "192.0.2.1 ",
    "fe80::1%eth0", "fe80::1%1", "2001:db8::1%", "localhost", "example.com", "::g", "1::2::3", "0x7f000001",
])
def test_invalid_ips_are_rejected(value):
    err = rejected(event(source_ip=value))
    assert (err.code, err.field) == ("invalid_ip", "source_ip")


def test_parse_ip_names_the_field():
    assert parse_ip("2001:DB8::1", "ip") == "2001:db8::1"
    with pytest.raises(EventRejected) as info:
        parse_ip("fe80::1%eth0", "ip")
    assert (info.value.code, info.value.field) == ("invalid_ip", "ip")
    assert "zone" in info.value.message


# -- outcome -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["success", "failure", "unknown"])
def test_outcomes(value):
    assert check(event(outcome=value)).outcome is Outcome(value)


@pytest.mark.parametrize("value", ["SUCCESS", "Success", "ok", "failed", "", " success", 1, 0, True, ["success"],
                                   {"v": "success"}])
def test_invalid_outcomes_are_rejected(value):
    err = rejected(event(outcome=value))
    assert (err.code, err.field) == ("invalid_outcome", "outcome")


# -- unknown and server-set fields ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["foo", "eventid", "userId", "Timestamp", "severity", "Event-Type", "_id"])
def test_unknown_fields_are_rejected_and_named(field):
    err = rejected(event(**{field: "x"}))
    assert (err.code, err.field) == ("unknown_field", field)
    assert "allowed fields" in err.message and "user_id" in err.message


def test_unknown_field_that_is_not_printable_is_not_echoed():
    key = "evil\x00key <script>"
    err = rejected(event(**{key: "x"}))
    assert (err.code, err.field) == ("unknown_field", "(unprintable)")
    assert "evil" not in err.message and "<script>" not in err.message


@pytest.mark.parametrize("field", sorted(SERVER_SET))
def test_server_set_fields_are_rejected(field):
    err = rejected(event(**{field: "2024-06-01T12:00:00Z" if field == "received_at" else "US"}))
    assert (err.code, err.field) == ("unknown_field", field)
    assert "set by the server" in err.message


def test_unknown_fields_are_checked_before_anything_else():
    err = rejected({"received_at": "now"})
    assert (err.code, err.field) == ("unknown_field", "received_at")


def test_error_json_shape():
    err = rejected(without("user_id"))
    assert err.to_json() == {"code": "missing_field", "message": err.message, "field": "user_id"}
    assert isinstance(err, ValueError)


# -- properties --------------------------------------------------------------------------------------------

user_ids = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="".join(map(chr, [*range(32), 127]))),
    min_size=1, max_size=LIMITS["user_id"],
).filter(str.strip)
clean_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)
metadata_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | clean_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(clean_text, children, max_size=3),
    max_leaves=10,
)
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def valid_events(draw) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid event and what validation should make of it."""
    event_id = draw(st.uuids())
    moment = NOW + draw(st.timedeltas(-SKEW, SKEW))
    sent = moment.astimezone(draw(offsets))
    body: dict[str, Any] = {
        "event_id": draw(st.sampled_from([str, lambda u: str(u).upper(), lambda u: u.hex]))(event_id),
        "timestamp": sent.isoformat(),
        "event_type": draw(st.from_regex(EVENT_TYPE, fullmatch=True)),
        "user_id": draw(user_ids),
    }
    expected = {**body, "event_id": event_id, "timestamp": moment, "outcome": Outcome.UNKNOWN, "source": None,
                "source_ip": None, "user_agent": None, "resource_id": None, "metadata": {}}
    if draw(st.booleans()):
        body["outcome"] = expected["outcome"] = draw(st.sampled_from(list(Outcome)))
        body["outcome"] = str(body["outcome"])
    for field in ("source", "user_agent", "resource_id"):
        if draw(st.booleans()):
            body[field] = expected[field] = draw(user_ids.filter(lambda s, f=field: len(s) <= LIMITS[f]))
    if draw(st.booleans()):
        ip = draw(st.ip_addresses())
        body["source_ip"] = ip.exploded if draw(st.booleans()) else str(ip)
        # Canonical as PostgreSQL prints it (IPv4-mapped and -compatible forms in dotted quads).
        family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
        expected["source_ip"] = socket.inet_ntop(family, ip.packed)
    if draw(st.booleans()):
        body["metadata"] = expected["metadata"] = draw(st.dictionaries(clean_text, metadata_values, max_size=5))
    return body, expected



json_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)
MARK = "\u2983secret\u2984"  # brackets no identifier pattern admits, so a leak is unmistakable
secret_text = st.text(max_size=20).map(lambda s: f"{MARK}{s}{MARK}")
secret_metadata = st.dictionaries(st.text(max_size=10) | secret_text, secret_text | json_values, max_size=4)


@st.composite
def mostly_valid_events(draw) -> dict[str, Any]:
    """A valid event with a secret user_id and metadata, and up to two fields (or extra ones) made arbitrary,
    so that every check, the last ones included, gets arbitrary input."""
    body, _ = draw(valid_events())
    body["user_id"] = draw(secret_text)
    body["metadata"] = draw(secret_metadata)
    for field in draw(st.sets(st.sampled_from([*sorted(ALLOWED), *sorted(SERVER_SET), "extra"]), max_size=2)):
        body[field] = draw(json_values | secret_text)
    return body


def _secrets_in(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj] if MARK in obj else []
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in _secrets_in(k) + _secrets_in(v)]
    if isinstance(obj, list):
        return [s for v in obj for s in _secrets_in(v)]
    return []


@settings(max_examples=200, deadline=None)
@given(obj=mostly_valid_events(), backfill=st.booleans())
def test_property_mostly_valid_events_are_accepted_or_rejected_never_crash(obj, backfill):
    _accepted_or_rejected(obj, backfill)


@settings(max_examples=100, deadline=None)
@given(obj=st.dictionaries(st.sampled_from(sorted(ALLOWED)), json_values) | json_values, backfill=st.booleans())
def test_property_any_json_is_accepted_or_rejected_never_crashes(obj, backfill):
    _accepted_or_rejected(obj, backfill)


def _accepted_or_rejected(obj: Any, backfill: bool) -> None:
    """validate_event returns a ValidEvent or raises EventRejected, and its errors never echo secrets."""
    try:
        valid = check(obj, backfill=backfill)
    except EventRejected as exc:
        assert exc.code and isinstance(exc.message, str)
        assert exc.field is None or exc.field in ALLOWED or exc.field == "(unprintable)" \
            or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}", exc.field)
        # Errors are logged and returned: they never echo the user or the metadata.
        rendered = orjson.dumps(exc.to_json()).decode()
        assert MARK not in rendered and MARK not in str(exc)
        if isinstance(obj, dict):
            for secret in _secrets_in(obj.get("user_id")) + _secrets_in(obj.get("metadata")):
                assert secret not in rendered
    else:
        assert isinstance(valid, ValidEvent)
        assert isinstance(obj, dict) and obj.keys() <= ALLOWED


@settings(max_examples=200, deadline=None)
@given(case=valid_events(), backfill=st.booleans())
def test_property_valid_events_pass_and_round_trip(case, backfill):
    body, expected = case
    valid = check(body, backfill=backfill)
    assert {f: getattr(valid, f) for f in expected} == expected
    assert valid.timestamp.tzinfo is not None and valid.timestamp.utcoffset() == timedelta(0)


@settings(max_examples=200, deadline=None)
@given(offset=st.timedeltas(-3 * SKEW, 3 * SKEW), backfill=st.booleans())
def test_property_window_is_exactly_plus_minus_skew(offset, backfill):
    body = event(timestamp=iso(NOW + offset))
    inside = offset <= SKEW and (backfill or offset >= -SKEW)
    if inside:
        assert check(body, backfill=backfill).timestamp == NOW + offset
    else:
        assert rejected(body, backfill=backfill).code == "timestamp_out_of_window"


def test_allowed_fields_are_the_documented_ones():
    assert ALLOWED == {"event_id", "timestamp", "event_type", "user_id", "outcome", "source", "source_ip",
                       "user_agent", "resource_id", "metadata"}
    assert not ALLOWED & SERVER_SET
