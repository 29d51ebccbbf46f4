"""The ingest pipeline against a real TimescaleDB: catalogue checks (R3, R4), dedup (R5), the shared
rate limit (R6), and redaction (R9) and enrichment (R8) before anything is stored."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from auditwatch.services import Services
from ingest.enrich import NoGeo
from ingest.errors import EventRejected, IngestError, RateLimited
from ingest.pipeline import BatchResult, IngestPipeline, IngestPolicy, RequestContext
from ingest.redact import REDACTED, REDACTED_CARD, Redactor
from storage.events import Outcome
from storage.timescale import catalog
from tests.conftest import opened_services

CTX = RequestContext(principal="tests")
SENDER = {"_ingest": {"sender": "tests"}}  # what the pipeline records about CTX's sender in every event


def utc_now() -> datetime:
    return datetime.now(UTC)


def body(user: str = "alice", event_type: str = "user_login", *, at: datetime | None = None,
         event_id: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "timestamp": (at or utc_now()).isoformat(),
        "event_type": event_type,
        "user_id": user,
        **fields,
    }


def statuses(result: BatchResult) -> list[str]:
    return [r.status for r in result.results]


def codes(result: BatchResult) -> list[str | None]:
    return [r.error.code if r.error else None for r in result.results]


def stored(conn: psycopg.Connection, event_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM audit_events WHERE event_id = %s", (event_id,)).fetchone()


def count(conn: psycopg.Connection, user_id: str | None = None) -> int:
    if user_id is None:
        return conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
    return conn.execute("SELECT count(*) FROM audit_events WHERE user_id = %s", (user_id,)).fetchone()[0]


def user_row(conn: psycopg.Connection, user_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM users WHERE user_id = %s", (user_id,)).fetchone()


def pipeline_over(services: Services, *, now: datetime | None = None, geo=None, redactor: Redactor | None = None,
                  **policy: Any) -> IngestPipeline:
    """A pipeline over a Services' pool and writer, with its own policy and (optionally) a fixed clock."""
    return IngestPipeline(
        pool=services.pool, committer=services.committer, geo=geo or NoGeo(), redactor=redactor or Redactor(),
        policy=IngestPolicy(**policy), now=(lambda: now) if now else utc_now,
    )


@pytest.fixture
def now() -> datetime:
    """A fixed clock reading for a test, well inside one minute's rate-limit window."""
    return utc_now().replace(second=20, microsecond=0)


# -- the happy path ----------------------------------------------------------------------------------------


def test_valid_event_is_stored_with_every_field(services, users, conn, now):
    users("alice")
    pipeline = pipeline_over(services, now=now)
    sent = body(at=now - timedelta(seconds=30), outcome="failure", source="vpn", source_ip="192.0.2.10",
                user_agent="curl/8.5", resource_id="doc:1", metadata={"attempt": 2, "ok": False})
    result = pipeline.ingest([sent], CTX)
    assert statuses(result) == ["created"]
    assert (result.accepted, result.duplicates, result.rejected, result.retry_after) == (1, 0, 0, None)
    assert result.results[0].event_id == sent["event_id"]
    row = stored(conn, sent["event_id"])
    assert row is not None
    assert row["timestamp"] == now - timedelta(seconds=30)
    assert row["received_at"] == now
    assert (row["event_type"], row["user_id"], row["outcome"], row["source"], str(row["source_ip"]),
            row["user_agent"], row["resource_id"]) == (
        "user_login", "alice", "failure", "vpn", "192.0.2.10", "curl/8.5", "doc:1")
    assert row["metadata"] == {"attempt": 2, "ok": False, **SENDER}
    assert row["source_country"] is None and row["source_asn"] is None  # a documentation address


class _FixedGeo:
    def lookup(self, ip: str) -> tuple[str | None, str | None]:
        return ("NZ", f"AS for {ip}")


def test_enrichment_and_redaction_land_in_their_own_columns(services, users, conn, now):
    users("alice")
    pipeline = pipeline_over(services, now=now, geo=_FixedGeo())
    sent = body(at=now, source="src?token=s3cr3t", source_ip="198.51.100.7", user_agent="agent?token=a9ent",
                resource_id="res?token=r3s", metadata={"password": "x", "n": 1})
    ctx = RequestContext(principal="apikey:test", remote_addr="203.0.113.9", user_agent="ctx-agent")
    assert statuses(pipeline.ingest([sent], ctx)) == ["created"]
    row = stored(conn, sent["event_id"])
    assert (row["source"], str(row["source_ip"]), row["source_country"], row["source_asn"], row["user_agent"],
            row["resource_id"]) == ("src?token=[REDACTED]", "198.51.100.7", "NZ", "AS for 198.51.100.7",
                                    "agent?token=[REDACTED]", "res?token=[REDACTED]")
    assert row["metadata"] == {"password": "[REDACTED]", "n": 1, "_ingest": {"sender": "apikey:test"}}
    bare = body(at=now)
    assert statuses(pipeline.ingest([bare], ctx)) == ["created"]
    row = stored(conn, bare["event_id"])
    assert (str(row["source_ip"]), row["source_country"], row["source_asn"], row["user_agent"]) == (
        "203.0.113.9", "NZ", "AS for 203.0.113.9", "ctx-agent")


def test_defaults_for_optional_fields(services, users, conn):
    users("alice")
    sent = body()
    assert statuses(services.pipeline.ingest([sent], CTX)) == ["created"]
    row = stored(conn, sent["event_id"])
    assert row["outcome"] == str(Outcome.UNKNOWN)
    assert row["metadata"] == SENDER
    assert row["source"] is row["source_ip"] is row["user_agent"] is row["resource_id"] is None


def test_empty_batch_writes_nothing(services, conn):
    result = services.pipeline.ingest([], CTX)
    assert result.results == [] and result.accepted == 0
    assert count(conn) == 0


# -- R3: the event type catalogue ----------------------------------------------------------------------------


def test_r3_every_builtin_type_is_accepted(services, users, conn):
    users("alice")
    types = [t.event_type for t in catalog.event_types(services.pool) if not t.reserved]
    assert "user_login" in types and len(types) >= 10
    result = services.pipeline.ingest([body(event_type=t) for t in types], CTX)
    assert statuses(result) == ["created"] * len(types)
    assert count(conn) == len(types)


def test_r3_unknown_event_type_is_rejected_and_not_stored(services, users, conn):
    users("alice")
    sent = body(event_type="made_up_type")
    result = services.pipeline.ingest([sent], CTX)
    assert statuses(result) == ["rejected"]
    err = result.results[0].error
    assert isinstance(err, EventRejected)
    assert (err.code, err.field) == ("unknown_event_type", "event_type")
    assert "R3" in err.message and "made_up_type" in err.message
    assert result.results[0].event_id == sent["event_id"]
    assert stored(conn, sent["event_id"]) is None


def test_r3_an_added_type_is_accepted_once_a_miss_refreshes_the_cache(services, users, conn):
    users("alice")
    pipeline = services.pipeline  # the default policy: a 10 s TTL, and misses refresh after 1 s
    assert pipeline.policy.catalog_ttl >= 10
    assert codes(pipeline.ingest([body(event_type="vpn_connect")], CTX)) == ["unknown_event_type"]

    assert catalog.add_event_type(services.pool, "vpn_connect", "A VPN session started", None, "tests")
    time.sleep(1.1)
    sent = body(event_type="vpn_connect")
    assert statuses(pipeline.ingest([sent], CTX)) == ["created"]
    assert stored(conn, sent["event_id"])["event_type"] == "vpn_connect"


def test_r3_a_short_catalog_ttl_picks_up_new_types_quickly(services, users):
    users("alice")
    pipeline = pipeline_over(services, catalog_ttl=0.05)
    assert codes(pipeline.ingest([body(event_type="badge_swipe")], CTX)) == ["unknown_event_type"]
    catalog.add_event_type(services.pool, "badge_swipe", "", "Entity Management [3004]", "tests")
    time.sleep(0.1)
    assert statuses(pipeline.ingest([body(event_type="badge_swipe")], CTX)) == ["created"]


# -- what only the platform writes (issue 14 #3) ------------------------------------------------------------------

PLATFORM_ONLY = ("query_executed", "export_requested", "event_erased",
                 "events_expired", "events_archived", "legal_hold", "report_generated",
                 # data subjects and PHI (migration 0019)
                 "gdpr_access_exported", "gdpr_erasure_requested", "gdpr_erasure_approved", "gdpr_erasure_started",
                 "gdpr_erasure_executed", "phi_revealed")


def test_the_catalogue_marks_the_platforms_own_types_reserved(services):
    reserved = {t.event_type for t in catalog.event_types(services.pool) if t.reserved}
    assert reserved == set(PLATFORM_ONLY)


@pytest.mark.parametrize("event_type", PLATFORM_ONLY)
def test_reserved_event_types_are_refused(services, users, conn, event_type):
    users("alice")
    sent = body(event_type=event_type)
    result = services.pipeline.ingest([sent], CTX)
    assert codes(result) == ["reserved_event_type"]
    error = result.results[0].error
    assert (error.field, error.status) == ("event_type", 422) and "only Auditwatch writes it" in error.message
    assert stored(conn, sent["event_id"]) is None


@pytest.mark.parametrize("event_type", ["api_key_created", "api_key_revoked"])
def test_an_applications_own_api_key_events_are_stored_the_platforms_cannot_be_posed_as(services, users, conn,
                                                                                          event_type):
    """Migration 0026: an application records the keys it creates (the insider chain's key step reaches the
    detectors); what marks the platform's own key records, its principals and its source, stays refused."""
    users("alice")
    sent = body(event_type=event_type, source="crm", metadata={"scope": "admin", "key_id": "k_1"})
    assert statuses(services.pipeline.ingest([sent], CTX)) == ["created"]
    assert stored(conn, sent["event_id"])["event_type"] == event_type
    posing = [body(event_type=event_type, source="auditwatch"), body("apikey:admin-1", event_type=event_type)]
    assert codes(services.pipeline.ingest(posing, CTX)) == ["reserved_source", "reserved_principal"]
    assert [stored(conn, p["event_id"]) for p in posing] == [None, None]


def test_a_forged_erasure_tombstone_is_refused(services, users, conn):
    """The reproduction: an ingest key posing as the platform's erasure record, whose
    metadata.integrity.erased_leaves verify would accept as the excuse for a deleted event."""
    users("alice")
    forged = body(event_type="event_erased", source="auditwatch", metadata={
        "reason": "gdpr", "integrity": {"erased_leaves": ["ab" * 32], "batch_seq": 1}})
    for attempt in (forged, {**forged, "source": "app"}, {**forged, "source": None}):
        result = services.pipeline.ingest([{k: v for k, v in attempt.items() if v is not None}], CTX)
        assert result.accepted == 0 and codes(result)[0] in ("reserved_event_type", "reserved_source")
    assert conn.execute("SELECT count(*) FROM audit_events WHERE event_type = 'event_erased'").fetchone()[0] == 0


@pytest.mark.parametrize("user_id", ["apikey:admin", "APIKEY:admin", "cli:root", " apikey:ops"])
def test_the_platforms_principals_are_refused_as_user_id(services, users, conn, user_id):
    users(user_id)
    result = services.pipeline.ingest([body(user_id, event_type="data_export")], CTX)
    assert codes(result) == ["reserved_principal"] and result.results[0].error.field == "user_id"
    assert count(conn) == 0


@pytest.mark.parametrize("source", ["auditwatch", "Auditwatch", "auditwatch-cli", "auditwatch-dashboard "])
def test_the_platforms_source_is_refused(services, users, conn, source):
    users("alice")
    result = services.pipeline.ingest([body(source=source)], CTX)
    assert codes(result) == ["reserved_source"] and result.results[0].error.field == "source"
    assert count(conn) == 0


def test_the_platforms_own_records_are_reserved_by_construction():
    """Whatever the platform writes as itself, ingest refuses: the self-audit builder's source, a key's
    principal, an operator's."""
    from datetime import UTC as utc

    from storage.auth import ApiKey, Role
    from storage.platform import is_platform_principal, is_platform_source
    from storage.timescale import self_audit

    record = self_audit.record("event_erased", "apikey:ops", now=datetime.now(utc))
    assert is_platform_source(record.source) and is_platform_source("auditwatch-cli")
    key = ApiKey(key_id=uuid.uuid4(), name="ops", role=Role.ADMIN, created_at=datetime.now(utc))
    assert all(is_platform_principal(p) for p in (key.principal, "cli:alice"))
    assert not any(is_platform_principal(p) for p in ("alice", "host:web1", "svc-backup", "worker"))


def test_every_event_records_its_sending_key(services, users, conn):
    users("alice")
    a, b = body(metadata={"k": 1}), body()
    services.pipeline.ingest([a], RequestContext(principal="apikey:billing"))
    services.pipeline.ingest([b], RequestContext(principal="syslog", rate_limited=False))
    assert stored(conn, a["event_id"])["metadata"] == {"k": 1, "_ingest": {"sender": "apikey:billing"}}
    assert stored(conn, b["event_id"])["metadata"] == {"_ingest": {"sender": "syslog"}}


def test_a_client_cannot_set_the_sender_record(services, users, conn):
    users("alice")
    sent = body(metadata={"_ingest": {"sender": "apikey:admin"}})
    result = services.pipeline.ingest([sent], CTX)
    assert codes(result) == ["reserved_metadata"] and result.results[0].error.field == "metadata"
    assert count(conn) == 0


# -- R4: users -------------------------------------------------------------------------------------------------


def test_r4_unknown_user_is_rejected_by_default(services, conn):
    assert services.pipeline.policy.unknown_users == "reject"
    sent = body(user="mallory")
    result = services.pipeline.ingest([sent], CTX)
    err = result.results[0].error
    assert (result.results[0].status, err.code, err.field) == ("rejected", "unknown_user", "user_id")
    assert "R4" in err.message and "mallory" not in err.message
    assert stored(conn, sent["event_id"]) is None
    assert user_row(conn, "mallory") is None


def test_r4_known_and_unknown_users_in_one_batch(services, users, conn):
    users("alice", "bob")
    sent = [body("alice"), body("mallory"), body("bob"), body("mallory")]
    result = services.pipeline.ingest(sent, CTX)
    assert statuses(result) == ["created", "rejected", "created", "rejected"]
    assert codes(result) == [None, "unknown_user", None, "unknown_user"]
    assert count(conn) == 2 and count(conn, "mallory") == 0


def test_r4_a_user_registered_later_is_accepted(services, users):
    assert codes(services.pipeline.ingest([body("carol")], CTX)) == ["unknown_user"]
    users("carol")
    assert statuses(services.pipeline.ingest([body("carol")], CTX)) == ["created"]


def test_r4_register_policy_registers_unknown_users(settings, conn):
    with opened_services(settings.replace(unknown_users="register")) as svc:
        assert svc.pipeline.policy.unknown_users == "register"
        sent = [body("new.user@example.com"), body("new.user@example.com"), body("svc-backup")]
        result = svc.pipeline.ingest(sent, CTX)
        assert statuses(result) == ["created"] * 3
    for user_id in ("new.user@example.com", "svc-backup"):
        row = user_row(conn, user_id)
        assert row is not None and row["registered_by"] == "ingest:tests" and row["kind"] == "human"
    assert count(conn) == 3


def test_r4_the_request_may_ask_to_register(services, conn):
    ctx = RequestContext(principal="cli:ops", register_users=True)
    sent = body("dave")
    assert statuses(services.pipeline.ingest([sent], ctx)) == ["created"]
    assert user_row(conn, "dave")["registered_by"] == "ingest:cli:ops"
    assert stored(conn, sent["event_id"])["user_id"] == "dave"


def test_r4_the_request_may_refuse_to_register(settings, conn):
    with opened_services(settings.replace(unknown_users="register")) as svc:
        ctx = RequestContext(principal="tests", register_users=False)
        assert codes(svc.pipeline.ingest([body("erin")], ctx)) == ["unknown_user"]
    assert user_row(conn, "erin") is None


def test_r4_invalid_events_do_not_register_their_users(settings, conn):
    with opened_services(settings.replace(unknown_users="register")) as svc:
        result = svc.pipeline.ingest([body("frank", event_type="no_such_type"), body("grace", outcome="meh")], CTX)
        assert codes(result) == ["unknown_event_type", "invalid_outcome"]
    assert user_row(conn, "frank") is None and user_row(conn, "grace") is None


# -- R5: duplicates --------------------------------------------------------------------------------------------


def test_r5_the_same_event_twice_is_stored_once(services, users, conn):
    users("alice")
    sent = body()
    first = services.pipeline.ingest([sent], CTX)
    second = services.pipeline.ingest([dict(sent)], CTX)
    assert statuses(first) == ["created"] and statuses(second) == ["duplicate"]
    assert second.duplicates == 1 and second.accepted == 0 and second.results[0].error is None
    assert second.results[0].event_id == sent["event_id"]
    assert count(conn) == 1


def test_r5_duplicates_inside_one_batch(services, users, conn):
    users("alice")
    a, b = body(), body()
    result = services.pipeline.ingest([a, a, b, dict(a), b], CTX)
    assert statuses(result) == ["created", "duplicate", "created", "duplicate", "duplicate"]
    assert (result.accepted, result.duplicates, result.rejected) == (2, 3, 0)
    assert count(conn) == 2


def test_r5_a_resent_event_keeps_what_was_stored_first(services, users, conn):
    users("alice")
    sent = body(metadata={"version": 1})
    services.pipeline.ingest([sent], CTX)
    changed = {**sent, "metadata": {"version": 2}, "outcome": "failure"}
    assert statuses(services.pipeline.ingest([changed], CTX)) == ["duplicate"]
    row = stored(conn, sent["event_id"])
    assert row["metadata"] == {"version": 1, **SENDER} and row["outcome"] == "unknown"


def test_r5_the_same_event_in_equivalent_spellings_is_a_duplicate(services, users, conn):
    users("alice")
    moment = utc_now().replace(microsecond=0)
    event_id = uuid.uuid4()
    first = body(event_id=str(event_id), at=moment)
    again = body(event_id=str(event_id).upper(), at=moment.astimezone(timezone(timedelta(hours=2))))
    assert statuses(services.pipeline.ingest([first, again], CTX)) == ["created", "duplicate"]
    assert count(conn) == 1


# -- a batch: every event its own outcome ------------------------------------------------------------------------


def test_valid_events_are_stored_even_when_others_are_rejected(services, users, conn):
    users("alice")
    good1, good2 = body(), body(outcome="success")
    bad_id = str(uuid.uuid4())
    items: list[Any] = [
        good1,
        {**body(), "user_id": None},  # R1
        body(event_type="nope_type"),  # R3
        EventRejected("malformed_json", "line 4 is not valid JSON"),  # a line that did not parse
        ["not", "an", "object"],
        {**body(event_id=bad_id), "timestamp": (utc_now() + timedelta(hours=1)).isoformat()},  # R2
        body(event_id="not a uuid <script>"),
        body("mallory"),  # R4
        good2,
    ]
    result = services.pipeline.ingest(items, CTX)
    assert statuses(result) == ["created", "rejected", "rejected", "rejected", "rejected", "rejected", "rejected",
                                "rejected", "created"]
    assert codes(result) == [None, "missing_field", "unknown_event_type", "malformed_json", "wrong_type",
                             "timestamp_out_of_window", "invalid_uuid", "unknown_user", None]
    assert [r.index for r in result.results] == list(range(len(items)))
    assert result.results[5].event_id == bad_id
    assert result.results[6].event_id is None  # not printable: never echoed
    assert result.results[4].event_id is None
    assert (result.accepted, result.duplicates, result.rejected) == (2, 0, 7)
    assert count(conn) == 2
    assert stored(conn, good1["event_id"]) and stored(conn, good2["event_id"])

    answer = result.to_json()
    assert (answer["accepted"], answer["duplicates"], answer["rejected"]) == (2, 0, 7)
    assert [e["index"] for e in answer["errors"]] == [1, 2, 3, 4, 5, 6, 7]
    assert answer["errors"][0] == {"index": 1, "event_id": items[1]["event_id"], "code": "missing_field",
                                   "message": result.results[1].error.message, "field": "user_id"}
    assert "errors_truncated" not in answer


def test_batch_errors_are_truncated_in_the_answer(services):
    result = services.pipeline.ingest([{"bad": i} for i in range(5)], CTX)
    answer = result.to_json(max_errors=2)
    assert answer["rejected"] == 5 and len(answer["errors"]) == 2 and answer["errors_truncated"] == 3


def test_backfill_context_accepts_history(services, users, conn):
    users("alice")
    old = utc_now() - timedelta(days=30)
    assert codes(services.pipeline.ingest([body(at=old)], CTX)) == ["timestamp_out_of_window"]
    sent = body(at=old)
    result = services.pipeline.ingest([sent], RequestContext(principal="tests", backfill=True))
    assert statuses(result) == ["created"]
    assert stored(conn, sent["event_id"])["timestamp"] == old


# -- R6: the rate limit ------------------------------------------------------------------------------------------


def test_r6_limit_inside_one_batch_counts_the_sending_key(services, users, conn, now):
    users("alice", "bob")
    pipeline = pipeline_over(services, now=now, rate_limit_per_minute=5)
    items = [body("alice", at=now) for _ in range(3)] + [body("bob", at=now) for _ in range(4)]
    result = pipeline.ingest(items, CTX)
    # One key's budget, whichever users its events are about: the first five in the batch go in.
    assert statuses(result) == ["created"] * 5 + ["rejected"] * 2
    expected_retry = 60 - now.second
    assert result.retry_after == expected_retry
    for refused in result.results[5:]:
        err = refused.error
        assert isinstance(err, RateLimited)
        assert (err.code, err.field, err.status, err.retry_after) == ("rate_limited", None, 429, expected_retry)
        assert "R6" in err.message and "this key" in err.message
    assert count(conn, "alice") == 3 and count(conn, "bob") == 2


def test_r6_a_flooding_key_cannot_spend_a_victims_budget(services, users, conn, now):
    """Issue 14 #8: a compromised key sending as the victim must not get genuine events about them refused."""
    users("victim")
    pipeline = pipeline_over(services, now=now, rate_limit_per_minute=5)
    hostile = RequestContext(principal="apikey:compromised")
    flood = pipeline.ingest([body("victim", at=now) for _ in range(20)], hostile)
    assert flood.accepted == 5 and set(codes(flood)[5:]) == {"rate_limited"}
    genuine = pipeline.ingest([body("victim", at=now, outcome="failure") for _ in range(5)],
                              RequestContext(principal="apikey:sso"))
    assert statuses(genuine) == ["created"] * 5 and genuine.retry_after is None
    assert conn.execute("SELECT sender, events FROM ingest_rate ORDER BY sender").fetchall() == [
        ("apikey:compromised", 20), ("apikey:sso", 5)]


def test_r6_limit_across_requests_and_the_next_minute(services, users, conn, now):
    users("alice")
    clock = [now]
    pipeline = IngestPipeline(pool=services.pool, committer=services.committer, geo=NoGeo(), redactor=Redactor(),
                              policy=IngestPolicy(rate_limit_per_minute=5), now=lambda: clock[0])
    for _ in range(5):
        assert statuses(pipeline.ingest([body(at=clock[0])], CTX)) == ["created"]
    refused = pipeline.ingest([body(at=clock[0]), body(at=clock[0])], CTX)
    assert codes(refused) == ["rate_limited", "rate_limited"]
    assert refused.retry_after == 40

    clock[0] = now + timedelta(seconds=39)  # still the same minute
    assert codes(pipeline.ingest([body(at=clock[0])], CTX)) == ["rate_limited"]
    clock[0] = now + timedelta(seconds=40)  # the next minute: a fresh budget
    result = pipeline.ingest([body(at=clock[0]) for _ in range(6)], CTX)
    assert statuses(result) == ["created"] * 5 + ["rejected"]
    assert count(conn, "alice") == 10


def test_r6_rejected_events_use_no_budget(services, users, now):
    users("alice")
    pipeline = pipeline_over(services, now=now, rate_limit_per_minute=5)
    junk = [body("alice", at=now, outcome="bogus"), body("alice", event_type="no_type", at=now)] * 3
    assert pipeline.ingest(junk, CTX).accepted == 0
    result = pipeline.ingest([body("alice", at=now) for _ in range(5)], CTX)
    assert statuses(result) == ["created"] * 5 and result.retry_after is None


def test_r6_trusted_requests_are_not_limited(services, users, now):
    users("alice")
    pipeline = pipeline_over(services, now=now, rate_limit_per_minute=5)
    ctx = RequestContext(principal="cli:ops", rate_limited=False)
    assert pipeline.ingest([body(at=now) for _ in range(12)], ctx).accepted == 12


def test_r6_settings_reach_the_pipeline(settings, conn):
    with opened_services(settings.replace(rate_limit_per_minute=5)) as svc:
        assert svc.pipeline.policy.rate_limit_per_minute == 5
        catalog.register_users(svc.pool, [{"user_id": "alice"}], "tests")
        result = svc.pipeline.ingest([body() for _ in range(7)], CTX)
        assert result.accepted == 5 and codes(result)[5:] == ["rate_limited", "rate_limited"]
        assert 1 <= result.retry_after <= 60
    with opened_services(settings.replace(rate_limit_per_minute=0)) as svc:
        assert svc.pipeline.policy.rate_limit_per_minute is None
        assert svc.pipeline.ingest([body() for _ in range(30)], CTX).accepted == 30


def _wait_out_the_minute_end() -> None:
    """So that a test using the real clock does not straddle two rate-limit windows."""
    second = utc_now().second
    if second >= 55:
        time.sleep(61 - second)


def test_r6_is_shared_by_two_processes(settings, conn, now):
    """Two Services (two pools, two writers, two pipelines: two processes' worth of state) share one budget."""
    limited = settings.replace(rate_limit_per_minute=5)
    with opened_services(limited) as a, opened_services(limited) as b:
        assert a.pool is not b.pool
        catalog.register_users(a.pool, [{"user_id": "alice"}], "tests")
        first = pipeline_over(a, now=now, rate_limit_per_minute=5)
        second = pipeline_over(b, now=now, rate_limit_per_minute=5)
        outcomes = []
        for i in range(10):
            pipeline = first if i % 2 == 0 else second
            outcomes += statuses(pipeline.ingest([body(at=now)], CTX))
        assert outcomes == ["created"] * 5 + ["rejected"] * 5

        # The Services' own pipelines, on the real clock, as a server's workers run them.
        _wait_out_the_minute_end()
        catalog.register_users(a.pool, [{"user_id": "bob"}], "tests")
        other_key = RequestContext(principal="tests-2")  # CTX's budget may be spent in this very minute
        from_a = a.pipeline.ingest([body("bob") for _ in range(3)], other_key)
        from_b = b.pipeline.ingest([body("bob") for _ in range(3)], other_key)
        assert statuses(from_a) == ["created"] * 3
        assert statuses(from_b) == ["created", "created", "rejected"]
        assert from_b.results[2].error.code == "rate_limited" and from_b.retry_after is not None
    assert count(conn, "alice") == 5 and count(conn, "bob") == 5


def test_r6_holds_under_concurrent_requests_from_two_processes(settings, conn, now):
    limited = settings.replace(rate_limit_per_minute=5)
    with opened_services(limited) as a, opened_services(limited) as b:
        catalog.register_users(a.pool, [{"user_id": "alice"}], "tests")
        pipelines = [pipeline_over(svc, now=now, rate_limit_per_minute=5) for svc in (a, b) for _ in range(2)]
        accepted: list[int] = []
        failures: list[BaseException] = []
        start = threading.Barrier(len(pipelines))

        def send(pipeline: IngestPipeline) -> None:
            try:
                start.wait(timeout=10)
                for _ in range(4):
                    accepted.append(pipeline.ingest([body(at=now), body(at=now)], CTX).accepted)
            except BaseException as exc:  # noqa: BLE001 - reported to the test thread below
                failures.append(exc)

        threads = [threading.Thread(target=send, args=(p,)) for p in pipelines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not failures
        assert sum(accepted) == 5
    assert count(conn, "alice") == 5


# -- R8 and R9 before storage ----------------------------------------------------------------------------------


def test_r9_metadata_is_redacted_before_it_is_stored(services, users, conn):
    users("alice")
    sent = body(source_ip="8.8.8.8", metadata={
        "password": "hunter2",
        "request": {"headers": {"Authorization": "Bearer sk_live_abc"}, "items": [{"api-key": "k-123"}]},
        "note": "paid with 4111 1111 1111 1111 today",
        "pan": 5555555555554444,
        "order": "1234",
    })
    assert statuses(services.pipeline.ingest([sent], CTX)) == ["created"]
    row = stored(conn, sent["event_id"])
    assert row["metadata"] == {
        "password": REDACTED,
        "request": {"headers": {"Authorization": REDACTED}, "items": [{"api-key": REDACTED}]},
        "note": f"paid with {REDACTED_CARD} today",
        "pan": REDACTED_CARD,
        "order": "1234",
        **SENDER,
    }
    text = conn.execute("SELECT metadata::text FROM audit_events WHERE event_id = %s", (sent["event_id"],)).fetchone()[0]
    for secret in ("hunter2", "sk_live_abc", "k-123", "4111", "5555555555554444"):
        assert secret not in text


def test_r9_configured_extra_keys_are_redacted(settings, conn):
    with opened_services(settings.replace(redact_keys="ssn,badge")) as svc:
        catalog.register_users(svc.pool, [{"user_id": "alice"}], "tests")
        sent = body(metadata={"ssn": "123-45-6789", "Badge_ID": 7, "password": "x", "name": "Alice"})
        svc.pipeline.ingest([sent], CTX)
    assert stored(conn, sent["event_id"])["metadata"] == {
        "ssn": REDACTED, "Badge_ID": REDACTED, "password": REDACTED, "name": "Alice", **SENDER}


def test_r9_free_text_fields_are_redacted_too(services, users, conn):
    """Issue 14 #13: cards and secrets in user_agent, resource_id and source never reach storage."""
    users("alice")
    sent = body(user_agent="sync/2.0 (Authorization: Bearer sk_live_abcdef123456)",
                resource_id="/download?file=7&access_token=tok-98765&card=4111111111111111",
                source="billing 5555-5555-5555-4444")
    assert statuses(services.pipeline.ingest([sent], CTX)) == ["created"]
    row = stored(conn, sent["event_id"])
    assert row["user_agent"] == f"sync/2.0 (Authorization: Bearer {REDACTED})"
    assert row["resource_id"] == f"/download?file=7&access_token={REDACTED}&card={REDACTED_CARD}"
    assert row["source"] == f"billing {REDACTED_CARD}"
    text = conn.execute("SELECT audit_events::text FROM audit_events WHERE event_id = %s",
                        (sent["event_id"],)).fetchone()[0]
    for secret in ("sk_live_abcdef123456", "tok-98765", "4111111111111111", "5555-5555-5555-4444"):
        assert secret not in text


def test_r9_free_text_redaction_leaves_ordinary_values_alone(services, users, conn):
    users("alice")
    ua = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"
    sent = body(user_agent=ua, resource_id="doc:42?page=3", source="vpn-gw-1")
    services.pipeline.ingest([sent], CTX)
    row = stored(conn, sent["event_id"])
    assert (row["user_agent"], row["resource_id"], row["source"]) == (ua, "doc:42?page=3", "vpn-gw-1")


def test_pipeline_redact_helper(services):
    assert services.pipeline.redact({"token": "t", "n": 1}) == {"token": REDACTED, "n": 1}


def test_r8_source_country_and_asn_are_stored(services, users, conn):
    users("alice")
    google, private, v6 = body(source_ip="8.8.8.8"), body(source_ip="10.1.2.3"), body(source_ip="2001:4860:4860::8888")
    assert statuses(services.pipeline.ingest([google, private, v6], CTX)) == ["created"] * 3
    row = stored(conn, google["event_id"])
    assert row["source_country"] == "US" and "GOOGLE" in row["source_asn"].upper()
    assert str(row["source_ip"]) == "8.8.8.8"
    row = stored(conn, private["event_id"])
    assert (row["source_country"], row["source_asn"]) == (None, None)
    assert str(row["source_ip"]) == "10.1.2.3"
    assert stored(conn, v6["event_id"])["source_country"] == "US"


def test_r8_can_be_turned_off(settings, conn):
    with opened_services(settings.replace(geoip=False)) as svc:
        catalog.register_users(svc.pool, [{"user_id": "alice"}], "tests")
        sent = body(source_ip="8.8.8.8")
        svc.pipeline.ingest([sent], CTX)
    row = stored(conn, sent["event_id"])
    assert str(row["source_ip"]) == "8.8.8.8" and row["source_country"] is None and row["source_asn"] is None


# -- what the request fills in ------------------------------------------------------------------------------------


def test_the_request_fills_in_missing_source_ip_user_agent_and_source(services, users, conn):
    users("alice")
    ctx = RequestContext(principal="tests", remote_addr="8.8.4.4", user_agent="shipper/2.1", source="http")
    bare = body()
    own = body(source_ip="10.0.0.9", user_agent="app/1.0", source="app")
    assert statuses(services.pipeline.ingest([bare, own], ctx)) == ["created", "created"]
    row = stored(conn, bare["event_id"])
    assert (str(row["source_ip"]), row["user_agent"], row["source"]) == ("8.8.4.4", "shipper/2.1", "http")
    assert row["source_country"] == "US"  # enrichment applies to the filled-in address too
    row = stored(conn, own["event_id"])
    assert (str(row["source_ip"]), row["user_agent"], row["source"]) == ("10.0.0.9", "app/1.0", "app")
    assert row["source_country"] is None


def test_no_request_address_leaves_source_ip_empty(services, users, conn):
    users("alice")
    sent = body()
    services.pipeline.ingest([sent], RequestContext(principal="tests", remote_addr=None, user_agent=None))
    row = stored(conn, sent["event_id"])
    assert row["source_ip"] is None and row["user_agent"] is None


@pytest.mark.parametrize(("remote_addr", "expected_ip", "expected_country"), [
    ("fe80::1%eth0", "fe80::1", None),  # a link-local client: the zone index is not an address
    ("::ffff:8.8.8.8", "::ffff:808:808", "US"),  # an IPv4 client of a dual-stack server
    ("2001:4860:4860:0:0:0:0:8888", "2001:4860:4860::8888", "US"),
    ("unix:/run/auditwatch.sock", None, None),  # not an IP at all: stored without one
    ("", None, None),
])
def test_the_request_address_is_normalised(services, users, conn, remote_addr, expected_ip, expected_country):
    users("alice")
    sent = body()
    result = services.pipeline.ingest([sent], RequestContext(principal="tests", remote_addr=remote_addr))
    assert statuses(result) == ["created"]
    row = stored(conn, sent["event_id"])
    assert (None if row["source_ip"] is None else str(row["source_ip"])) == expected_ip
    assert row["source_country"] == expected_country


def test_errors_are_ingest_errors(services):
    result = services.pipeline.ingest([{}], CTX)
    assert isinstance(result.results[0].error, IngestError)
    assert result.results[0].error.status == 422

