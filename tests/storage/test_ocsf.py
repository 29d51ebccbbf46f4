"""OCSF: the catalogue's class, activity and type ids, and exported events valid against the OCSF schema."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from pathlib import Path

import jsonschema
import orjson
import pytest

from storage import export, ocsf
from storage.events import EventRecord, Outcome
from storage.timescale import catalog
from tests.storage.conftest import T0

SCHEMA = orjson.loads((Path(__file__).parents[1] / "data" / "ocsf" / "ocsf-1.1.0-classes.schema.json").read_bytes())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


def problems(body: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(body)]


def test_the_vendored_schema_is_a_valid_schema_and_rejects_wrong_events():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    good = ocsf.to_ocsf(EventRecord(event_id=uuid.uuid4(), timestamp=T0, event_type="user_login", user_id="alice",
                                    received_at=T0, source_ip="10.0.0.1"), ocsf.OcsfType(3002, 1))
    assert problems(good) == []
    # What a sloppy mapping gets wrong, each caught by the schema.
    assert problems({**good, "type_uid": 300202})  # type_uid not class_uid * 100 + activity_id
    assert problems({**good, "category_uid": 6})  # Authentication is IAM (3)
    assert problems({k: v for k, v in good.items() if k != "user"})  # Authentication requires user
    assert problems({k: v for k, v in good.items() if k not in ("service", "dst_endpoint")})  # at least one
    assert problems({**good, "src_endpoint": {"ip": "999.1.1.1"}})  # not an address
    assert problems({**good, "activity_id": 42, "type_uid": 300242})  # no such activity
    assert problems({**good, "metadata": {"version": "1.1.0"}})  # metadata.product is required


def test_every_builtin_type_has_ocsf_ids_and_a_computed_type_uid(pool, conn):
    types = catalog.event_types(pool)
    builtin = [t for t in types if t.builtin]
    assert len(builtin) >= 26
    missing = [t.event_type for t in builtin if t.class_uid is None]
    assert missing == []
    for t in builtin:
        assert t.type_uid == t.class_uid * 100 + t.activity_id
        assert t.class_uid in ocsf.CLASSES, t.event_type
        assert t.ocsf_class == f"{ocsf.CLASSES[t.class_uid]} [{t.class_uid}]"
        assert t.activity_id in ocsf.ACTIVITIES[t.class_uid] or t.activity_id == 99, t.event_type
    by_name = {t.event_type: t for t in types}
    assert (by_name["user_login"].type_uid, by_name["user_logout"].type_uid) == (300201, 300202)
    assert by_name["file_download"].type_uid == 100102
    with pytest.raises(Exception, match="event_types_ocsf_ids"):
        conn.execute("UPDATE event_types SET activity_id = NULL WHERE event_type = 'user_login'")


def test_a_type_added_at_run_time_takes_its_class_from_the_caption(pool):
    assert catalog.add_event_type(pool, "vpn.connect", "VPN session", "Network Activity [4001]", "tests")
    assert catalog.add_event_type(pool, "door.open", "A badge reader", None, "tests")
    assert catalog.add_event_type(pool, "mfa.enrol", "MFA enrolled", "Account Change [3001]", "tests",
                                  class_uid=3001, activity_id=10)
    by_name = {t.event_type: t for t in catalog.event_types(pool)}
    assert (by_name["vpn.connect"].class_uid, by_name["vpn.connect"].activity_id) == (4001, 99)
    assert by_name["door.open"].class_uid is None and by_name["door.open"].type_uid is None
    assert by_name["mfa.enrol"].type_uid == 300110


def _event(event_type: str, rng: random.Random, **fields) -> EventRecord:
    values = dict(event_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                  timestamp=T0 - timedelta(minutes=rng.randrange(10_000)), event_type=event_type,
                  user_id=rng.choice(["alice", "svc-backup", "bob@example.com"]), received_at=T0,
                  outcome=rng.choice(list(Outcome)), source=rng.choice(["web", "sshd", None]),
                  source_ip=rng.choice(["10.0.0.1", "2001:db8::7", None]), source_country=rng.choice(["FR", None]),
                  source_asn=rng.choice(["AS3215", None]), user_agent=rng.choice(["curl/8.5", None]),
                  resource_id=rng.choice(["doc-1", None]),
                  metadata=rng.choice([{}, {"role": "admin"}, {"roles": ["a", "b"]}, {"n": 2**70}]))
    values.update(fields)
    return EventRecord(**values)


def test_the_ocsf_export_of_every_catalogued_type_validates(pool):
    rng = random.Random(15)
    types = catalog.event_types(pool)
    events = [_event(t.event_type, rng) for t in types for _ in range(12)]
    events.append(_event("not_catalogued", rng))  # a type the catalogue has no ids for: the Base Event
    ocsf_types = ocsf.types_from_catalogue(types)
    body = b"".join(export.lines(events, "ocsf", ocsf_types=ocsf_types))
    lines = [orjson.loads(line) for line in body.splitlines()]
    assert len(lines) == len(events)
    failures = {(e["metadata"]["event_code"], p) for e in lines for p in problems(e)}
    assert failures == set()
    classes = {e["class_uid"] for e in lines}
    assert classes == {0, 1001, 3001, 3002, 3003, 3005, 4001, 5002, 6003, 6005}
    for event, line in zip(events, lines, strict=True):
        expected = ocsf_types.get(event.event_type, ocsf.BASE_OTHER)
        assert (line["class_uid"], line["activity_id"], line["type_uid"]) == (
            expected.class_uid, expected.activity_id, expected.type_uid)
        assert line["metadata"]["uid"] == str(event.event_id)
        assert line["time"] == int(event.timestamp.timestamp() * 1000)
        assert line["status_id"] == {"success": 1, "failure": 2, "unknown": 0}[event.outcome]
        if event.source_ip and "src_endpoint" in line:
            assert line["src_endpoint"]["ip"] == event.source_ip
        if event.metadata:
            assert all(line["unmapped"][k] == v for k, v in event.metadata.items())
    base = lines[-1]
    assert (base["class_uid"], base["activity_id"], base["type_uid"]) == (0, 99, 99)
