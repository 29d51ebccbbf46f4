"""format=ocsf on the export API and `auditwatch export --format ocsf`: OCSF events, audited like any export."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson

from storage.auth import Role
from storage.events import EventRecord, Outcome
from storage.timescale import catalog
from storage.timescale.writer import EventWriter
from tests.auditwatch.conftest import error_of
from tests.storage.test_ocsf import problems

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TYPES = ("user_login", "file_download", "data_export", "password_change", "permission_change", "config_change")


def _events() -> list[EventRecord]:
    return [EventRecord(event_id=uuid.uuid4(), timestamp=T0 - timedelta(minutes=i), event_type=t, user_id="alice",
                        received_at=T0, outcome=Outcome.FAILURE if i % 2 else Outcome.SUCCESS,
                        source_ip="10.1.2.3", resource_id="doc-9", metadata={"role": "admin"})
            for i, t in enumerate(TYPES)]


def test_the_api_exports_ocsf_that_validates(client, make_key, pool, conn):
    events = _events()
    EventWriter(pool).write(events)
    auditor = make_key(Role.AUDITOR)
    response = client.get("/api/v1/logs/export", query_string={"format": "ocsf", "user_id": "alice",
                                                               "end_time": (T0 + timedelta(seconds=1)).isoformat()},
                          headers=auditor)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["Content-Disposition"] == 'attachment; filename="audit-events.ocsf.ndjson"'
    lines = [orjson.loads(line) for line in response.get_data().splitlines()]
    assert [line["metadata"]["uid"] for line in lines] == [str(e.event_id) for e in events]
    assert [p for line in lines for p in problems(line)] == []
    types = {t.event_type: t for t in catalog.event_types(pool)}
    assert [line["type_uid"] for line in lines] == [types[t].type_uid for t in TYPES]
    recorded = conn.execute("SELECT metadata ->> 'format' FROM audit_events WHERE event_type = 'export_requested'"
                            ).fetchall()
    assert recorded == [("ocsf",)]
    bad = client.get("/api/v1/logs/export?format=cef", headers=auditor)
    assert bad.status_code == 400 and "ocsf" in error_of(bad)["message"]


def test_the_event_type_listing_shows_the_ocsf_ids(client, make_key):
    body = client.get("/api/v1/event-types", headers=make_key(Role.VIEWER)).get_json()
    login = next(t for t in body["event_types"] if t["event_type"] == "user_login")
    assert (login["class_uid"], login["activity_id"], login["type_uid"]) == (3002, 1, 300201)


def test_the_cli_exports_ocsf_to_a_file(run, pool, conn, tmp_path):
    events = _events()
    EventWriter(pool).write(events)
    out = tmp_path / "events.ocsf.ndjson"
    result = run("export", "--format", "ocsf", "--user", "alice", "--until", (T0 + timedelta(seconds=1)).isoformat(),
                 "-o", str(out))
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert sorted(line["metadata"]["uid"] for line in lines) == sorted(str(e.event_id) for e in events)
    assert [p for line in lines for p in problems(line)] == []
    assert {line["class_uid"] for line in lines} == {3002, 1001, 6005, 3001, 3005, 5002}
    assert conn.execute("SELECT user_id LIKE 'cli:%%', metadata ->> 'format' FROM audit_events "
                        "WHERE event_type = 'export_requested'").fetchall() == [(True, "ocsf")]
    refused = run("export", "--format", "ocsf", "--since", "yesterday")
    assert refused.exit_code == 2 and "ISO 8601" in refused.output
