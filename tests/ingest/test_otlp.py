"""OTLP/HTTP logs: the real opentelemetry-sdk exporter against a live server, JSON and protobuf per the spec,
partial success, and bad input."""

from __future__ import annotations

import gzip
import logging
import time
import uuid
from datetime import UTC, datetime

import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from auditwatch.app import create_app
from storage.auth import Role
from storage.timescale import catalog
from tests.conftest import opened_services

PROTOBUF = "application/x-protobuf"


def now_ns() -> int:
    return time.time_ns()


def attr(key: str, value) -> dict:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, dict):
        return {"key": key, "value": {"kvlistValue": {"values": [attr(k, v) for k, v in value.items()]}}}
    return {"key": key, "value": {"stringValue": value}}


def json_request(*records: dict, service: str = "billing") -> dict:
    return {"resourceLogs": [{"resource": {"attributes": [attr("service.name", service)]},
                              "scopeLogs": [{"scope": {"name": "audit"}, "logRecords": list(records)}]}]}


def record(event_type: str | None = "user_login", user: str | None = "alice", **attrs) -> dict:
    attributes = dict(attrs)
    if event_type:
        attributes["audit.event_type"] = event_type
    if user:
        attributes["enduser.id"] = user
    return {"timeUnixNano": str(now_ns()), "severityNumber": 9, "severityText": "INFO",
            "body": {"stringValue": "signed in"}, "traceId": "5b8efff798038103d269b633813fc60c",
            "spanId": "eee19b7ec3c1b174", "attributes": [attr(k, v) for k, v in attributes.items()]}


@pytest.fixture
def ingest_key(make_key):
    return make_key(Role.SYSTEM)


# -- the real SDK exporter ------------------------------------------------------------------------------------

def test_the_opentelemetry_sdk_exporter_stores_audit_records(live_server, db_url, services, users, monkeypatch, conn):
    users("otel-alice")
    _, secret = catalog.create_key(services.pool, "otel-exporter", Role.SYSTEM, "tests")
    # The documented way: the exporter reads its headers from the environment, percent-decoded.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_HEADERS", f"Authorization=Bearer%20{secret}")
    provider = LoggerProvider(resource=Resource.create({"service.name": "billing", "host.name": "web-7"}))
    exporter = OTLPLogExporter(endpoint=f"{live_server.url}/v1/logs")
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger(f"otel-test-{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(LoggingHandler(logger_provider=provider))
    logger.setLevel(logging.INFO)
    marker = uuid.uuid4().hex
    logger.warning("login failed %s", marker, extra={
        "audit.event_type": "user_login", "enduser.id": "otel-alice", "audit.outcome": "failure",
        "client.address": "81.2.69.142", "user_agent.original": "curl/8", "http.route": "/login"})
    logger.info("just an application log line %s", marker)  # no audit attributes: refused as partial success
    provider.force_flush()
    provider.shutdown()
    rows = conn.execute("SELECT event_type, user_id, outcome, host(source_ip), source, user_agent, source_country, "
                        "metadata FROM audit_events WHERE metadata->>'body' LIKE %s", (f"%{marker}%",)).fetchall()
    assert len(rows) == 1
    event_type, user, outcome, ip, source, agent, country, metadata = rows[0]
    assert (event_type, user, outcome, ip, source, agent) == (
        "user_login", "otel-alice", "failure", "81.2.69.142", "billing", "curl/8")
    assert country == "GB"  # R8 enrichment, as for the REST API
    assert metadata["severity"] == "WARN" and metadata["attributes"]["http.route"] == "/login"
    assert metadata["resource"]["host.name"] == "web-7"


# -- OTLP/JSON and OTLP/protobuf per the spec ---------------------------------------------------------------

def test_json_partial_success_and_mapping(client, ingest_key, users, conn):
    users("alice", "bob")
    body = json_request(
        record(**{"audit.outcome": "success", "client.address": "2001:db8::1", "audit.resource_id": "invoice-9",
                  "audit.metadata": {"amount": 12, "password": "hunter2"}}),
        record("data_export", "bob"),
        record(None),  # not an audit record
        record("no_such_type"),  # R3
        record("user_login", "mallory"),  # R4: not registered
    )
    response = client.post("/v1/logs", json=body, headers=ingest_key)
    assert response.status_code == 200 and response.mimetype == "application/json"
    partial = response.get_json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "3"
    assert "record 2: not_an_audit_record" in partial["errorMessage"]
    assert "unknown_event_type" in partial["errorMessage"] and "unknown_user" in partial["errorMessage"]
    stored = conn.execute("SELECT user_id, outcome, host(source_ip), resource_id, metadata FROM audit_events "
                          "WHERE user_id = 'alice'").fetchone()
    assert stored[:4] == ("alice", "success", "2001:db8::1", "invoice-9")
    assert stored[4]["amount"] == 12 and stored[4]["password"] == "[REDACTED]"  # R9
    assert stored[4]["trace_id"] == "5b8efff798038103d269b633813fc60c" and stored[4]["body"] == "signed in"

    # The exporter retries the same request: every record is a duplicate (derived ids), nothing is stored twice.
    again = client.post("/v1/logs", json=body, headers=ingest_key)
    assert again.status_code == 200 and again.get_json()["partialSuccess"]["rejectedLogRecords"] == "3"
    assert conn.execute("SELECT count(*) FROM audit_events WHERE user_id IN ('alice', 'bob')").fetchone()[0] == 2

    full = client.post("/v1/logs", json=json_request(record(user="bob")), headers=ingest_key)
    assert full.status_code == 200 and full.get_json() == {}  # fully accepted: partial_success left unset


def test_protobuf_request_and_response(client, ingest_key, users, conn):
    users("carol")
    request = logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource=resource_pb2.Resource(attributes=[common_pb2.KeyValue(
            key="service.name", value=common_pb2.AnyValue(string_value="vpn"))]),
        scope_logs=[logs_pb2.ScopeLogs(log_records=[
            logs_pb2.LogRecord(time_unix_nano=now_ns(), severity_text="INFO",
                               body=common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=[
                                   common_pb2.KeyValue(key="ok", value=common_pb2.AnyValue(bool_value=True))])),
                               event_name="user_login",
                               attributes=[common_pb2.KeyValue(key="user.id",
                                                               value=common_pb2.AnyValue(string_value="carol")),
                                           common_pb2.KeyValue(key="audit.outcome",
                                                               value=common_pb2.AnyValue(string_value="success"))]),
            logs_pb2.LogRecord(time_unix_nano=now_ns()),  # no audit attributes
        ])])])
    response = client.post("/v1/logs", data=request.SerializeToString(), headers={**ingest_key, "Content-Type": PROTOBUF})
    assert response.status_code == 200 and response.mimetype == PROTOBUF
    parsed = logs_service_pb2.ExportLogsServiceResponse.FromString(response.data)
    assert parsed.partial_success.rejected_log_records == 1
    assert "not_an_audit_record" in parsed.partial_success.error_message
    row = conn.execute("SELECT event_type, outcome, source, metadata FROM audit_events WHERE user_id = 'carol'").fetchone()
    assert row[:3] == ("user_login", "success", "vpn") and row[3]["body"] == {"ok": True}

    gzipped = client.post("/v1/logs", data=gzip.compress(request.SerializeToString()),
                          headers={**ingest_key, "Content-Type": PROTOBUF, "Content-Encoding": "gzip"})
    assert gzipped.status_code == 200
    assert logs_service_pb2.ExportLogsServiceResponse.FromString(gzipped.data).partial_success.rejected_log_records == 1


# -- bad input ------------------------------------------------------------------------------------------------

def status_of(response) -> status_pb2.Status:
    assert response.mimetype == PROTOBUF
    return status_pb2.Status.FromString(response.data)


def test_malformed_oversized_and_hostile_requests(client, ingest_key, make_key):
    pb = {**ingest_key, "Content-Type": PROTOBUF}
    garbage = client.post("/v1/logs", data=b"\xff\xff\xff\xff not protobuf", headers=pb)
    assert garbage.status_code == 400 and "not an OTLP" in status_of(garbage).message
    assert client.post("/v1/logs", data=b"{not json", headers={**ingest_key, "Content-Type": "application/json"}
                       ).status_code == 400
    assert client.post("/v1/logs", json=[1, 2], headers=ingest_key).status_code == 400
    assert client.post("/v1/logs", json={"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"attributes": [{"key": 1}]}]}]}]}, headers=ingest_key).status_code == 400
    assert client.post("/v1/logs", data=b"x", headers={**ingest_key, "Content-Type": "text/plain"}).status_code == 415
    # Unauthenticated and under-privileged callers are answered in the request's encoding.
    assert status_of(client.post("/v1/logs", data=b"", headers={"Content-Type": PROTOBUF})).code == 16
    forbidden = client.post("/v1/logs", data=b"", headers={**make_key(Role.VIEWER), "Content-Type": PROTOBUF})
    assert forbidden.status_code == 403 and status_of(forbidden).code == 7
    # A gzip bomb: 64 MB of zeros in 64 KB is refused without inflating it all.
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024))
    response = client.post("/v1/logs", data=bomb, headers={**pb, "Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert client.post("/v1/logs", data=b"not gzip", headers={**pb, "Content-Encoding": "gzip"}).status_code == 400
    assert client.post("/v1/logs", data=b"", headers={**pb, "Content-Encoding": "br"}).status_code == 415
    # Nesting beyond any parser's limit is a clean 400, in either encoding.
    deep = '{"arrayValue":{"values":[' * 2000 + '{"stringValue":"x"}' + "]}}" * 2000
    hostile = ('{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1","attributes":[{"key":"k",'
               f'"value":{deep}}}]}}]}}]}}]}}')
    response = client.post("/v1/logs", data=hostile, headers={**ingest_key, "Content-Type": "application/json"})
    assert response.status_code == 400 and response.get_json()["error"] == "malformed_otlp"
    # (The protobuf library will not even build this, so the wire bytes are written by hand.)
    value = common_pb2.AnyValue(string_value="x").SerializeToString()
    for _ in range(500):
        value = field(common_pb2.AnyValue, "array_value", field(common_pb2.ArrayValue, "values", value))
    body = field(logs_service_pb2.ExportLogsServiceRequest, "resource_logs", field(
        logs_pb2.ResourceLogs, "scope_logs", field(logs_pb2.ScopeLogs, "log_records", field(
            logs_pb2.LogRecord, "body", value))))
    assert client.post("/v1/logs", data=body, headers=pb).status_code == 400


def field(message_type, name: str, payload: bytes) -> bytes:
    """A length-delimited field of ``message_type`` on the wire."""
    number = message_type.DESCRIPTOR.fields_by_name[name].number
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_too_many_records_and_rate_limit(settings, make_key, users):
    users("flood")
    changed = settings.replace(otlp_max_records=3, rate_limit_per_minute=2)
    with opened_services(changed) as svc:
        app = create_app(changed, services=svc)
        client = app.test_client()
        many, limited = _too_many_then_limited(client, make_key)
    assert many.status_code == 413 and "at most 3" in many.get_json()["message"]
    # Some records over R6: the whole request is retryable, and the retry's stored records are duplicates.
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def _too_many_then_limited(client, make_key):
    key = make_key(Role.ADMIN)  # admins are rate limited (system keys too; this one has no backfill)
    many = client.post("/v1/logs", json=json_request(*[record(user="flood") for _ in range(4)]), headers=key)
    limited = client.post("/v1/logs", json=json_request(*[record(user="flood") for _ in range(3)]), headers=key)
    return many, limited


def test_records_out_of_the_clock_window_are_rejected_not_lost_silently(client, ingest_key, users):
    users("dave")
    future = record(user="dave")
    future["timeUnixNano"] = str(int((datetime.now(UTC).timestamp() + 3600) * 1e9))
    response = client.post("/v1/logs", json=json_request(future), headers=ingest_key)
    assert response.status_code == 200
    assert "timestamp_out_of_window" in response.get_json()["partialSuccess"]["errorMessage"]


def _empty_records_protobuf(n: int) -> bytes:
    """An ExportLogsServiceRequest holding ``n`` empty log records (2 bytes each on the wire)."""
    records = b"\x12\x00" * n  # ScopeLogs.log_records = 2, empty
    scope = field(logs_pb2.ResourceLogs, "scope_logs", records)
    return field(logs_service_pb2.ExportLogsServiceRequest, "resource_logs", scope)


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_a_small_gzip_of_many_empty_records_is_refused_before_anything_is_built(client, ingest_key, encoding):
    """About 1 KB of gzip used to become 500 K records (+324 MB RSS) before `max_records` was checked."""
    import tracemalloc

    if encoding == "protobuf":
        body, media = _empty_records_protobuf(500_000), PROTOBUF
    else:
        body = b'{"resourceLogs":[{"scopeLogs":[{"logRecords":[' + b",".join([b"{}"] * 500_000) + b"]}]}]}"
        media = "application/json"
    packed = gzip.compress(body, 9)
    assert len(packed) < 4_000
    tracemalloc.start()
    response = client.post("/v1/logs", data=packed,
                           headers={**ingest_key, "Content-Type": media, "Content-Encoding": "gzip"})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert response.status_code == 413
    # The inflated body itself (1 MB for protobuf, 3 MB for JSON) and a little more; never a dict per record.
    assert peak < 16 * 1024 * 1024, peak
    assert len(body) <= 3 * 1024 * 1024


def test_a_protobuf_record_count_is_read_off_the_wire():
    from ingest.otlp_wire import TooManyRecords, count_protobuf_records

    assert count_protobuf_records(_empty_records_protobuf(7), 10) == 7
    with pytest.raises(TooManyRecords):
        count_protobuf_records(_empty_records_protobuf(11), 10)
    real = logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(scope_logs=[
        logs_pb2.ScopeLogs(log_records=[logs_pb2.LogRecord(time_unix_nano=now_ns(), severity_text="x")] * 3),
        logs_pb2.ScopeLogs(log_records=[logs_pb2.LogRecord(event_name="y")] * 2)])] * 2)
    assert count_protobuf_records(real.SerializeToString(), 100) == 10
    with pytest.raises(ValueError):
        count_protobuf_records(b"\x0a\xff\x01", 100)  # a length past the end


def test_an_out_of_range_time_rejects_that_record_only(client, ingest_key, users, conn):
    """An out-of-range timeUnixNano used to fail the whole batch with a 503 the exporter retried for ever."""
    users("erin")
    good = record(user="erin")
    far, past_any_date, garbage = record(user="erin"), record(user="erin"), record(user="erin")
    far["timeUnixNano"] = "18446744073709551615"  # uint64 max: the year 2554, a date but far in the future
    past_any_date["timeUnixNano"] = "3" + "0" * 21  # year ~97,000: no date holds it (used to raise)
    garbage["timeUnixNano"] = "9" * 5000  # past int()'s digit limit (used to raise)
    response = client.post("/v1/logs", json=json_request(good, far, past_any_date, garbage), headers=ingest_key)
    assert response.status_code == 200, response.get_data(as_text=True)
    partial = response.get_json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "3"
    message = partial["errorMessage"]
    assert "record 1: timestamp_out_of_window" in message
    assert "record 2: invalid_timestamp" in message and "record 3: invalid_timestamp" in message
    assert conn.execute("SELECT count(*) FROM audit_events WHERE user_id = 'erin'").fetchone()[0] == 1

    latest = logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(scope_logs=[
        logs_pb2.ScopeLogs(log_records=[logs_pb2.LogRecord(time_unix_nano=2**64 - 1, event_name="user_login")])])])
    answer = client.post("/v1/logs", data=latest.SerializeToString(), headers={**ingest_key, "Content-Type": PROTOBUF})
    assert answer.status_code == 200
    parsed = logs_service_pb2.ExportLogsServiceResponse.FromString(answer.data)
    assert parsed.partial_success.rejected_log_records == 1


def test_records_posing_as_the_platform_are_rejected_and_the_sender_recorded(client, ingest_key, users, conn):
    """Issue 14 #3 over OTLP: reserved types, principals and source are per-record rejections."""
    users("alice")
    body = json_request(
        record("event_erased", **{"audit.metadata": {"integrity": {"erased_leaves": ["ab" * 32]}}}),
        record("events_expired"),
        record("user_login", "apikey:admin"),
        record("user_login", **{"audit.source": "auditwatch"}),
        record("user_login"),
    )
    response = client.post("/v1/logs", json=body, headers=ingest_key)
    assert response.status_code == 200
    message = response.get_json()["partialSuccess"]["errorMessage"]
    assert response.get_json()["partialSuccess"]["rejectedLogRecords"] == "4"
    for code in ("reserved_event_type", "reserved_principal", "reserved_source"):
        assert code in message
    rows = conn.execute("SELECT event_type, user_id, metadata->'_ingest'->>'sender' FROM audit_events").fetchall()
    assert len(rows) == 1 and rows[0][:2] == ("user_login", "alice") and rows[0][2].startswith("apikey:")
