"""Messages signed by the node that checked them: a writer holding the key stores them without checking them
again, and anything else (unsigned, another key, a body changed after signing) is re-validated as before."""

from __future__ import annotations

import base64
import os
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from nats.js import api

from auditwatch.services import bus_config
from auditwatch.settings import load
from ingest.bus import BusClient, BusConfig, BusPublisher, BusWriter, encode, pack, parse
from ingest.busguard import BusGuard
from ingest.bussign import HEADER, BusKeys, SigningKeyError
from ingest.errors import EventRejected
from storage.events import EventRecord, Outcome
from storage.timescale.writer import EventWriter
from tests.conftest import free_port
from tests.ingest.conftest import InThread
from tests.ingest.test_bus import wait_for, writer_process
from tests.ingest.test_bus_ops import scrape_process

NODE_KEY, OTHER_KEY = os.urandom(32), os.urandom(32)
SENT = {"_ingest": {"sender": "apikey:bus-test"}}


def record(**fields) -> EventRecord:
    now = datetime.now(UTC)
    base = {"event_id": uuid.uuid4(), "timestamp": now, "event_type": "user_login", "user_id": "fine",
            "received_at": now, "source": "bus-test", "metadata": SENT}
    return EventRecord(**{**base, **fields})


def test_a_signature_holds_to_its_key_and_its_exact_body():
    keys = BusKeys((NODE_KEY,))
    body = b'{"a":1}\n{"b":2}'
    signature = keys.sign(body)
    assert signature.startswith("v1 ") and keys.verify(body, signature)
    assert not keys.verify(body + b" ", signature)  # one byte more
    assert not keys.verify(body.replace(b"1", b"2"), signature)
    assert not BusKeys((OTHER_KEY,)).verify(body, signature)  # another key, even with the same id claimed
    forged_id = signature.split(" ")[1]
    assert not keys.verify(body, f"v1 {forged_id} {'0' * 64}")
    assert not keys.verify(body, None) and not keys.verify(body, "") and not keys.verify(body, "v2 x y")
    for hostile in (f"v1 {forged_id} {'é' * 64}", f"v1 {forged_id} {'zz' * 32}", f"v1 {forged_id} 00",
                    "v1  ", " " * 3, "v1 " + "a" * 10_000 + " b"):  # refused, never an exception in the writer
        assert not keys.verify(body, hostile)
    # Rotation: the nodes sign with the new key first; writers that hold both accept what either signed.
    rotated = BusKeys((OTHER_KEY, NODE_KEY))
    assert rotated.verify(body, signature) and rotated.verify(body, rotated.sign(body))
    assert not keys.verify(body, rotated.sign(body))


def test_the_setting_takes_base64_keys_and_says_what_is_wrong():
    text = f"{base64.b64encode(NODE_KEY).decode()}, {base64.b64encode(OTHER_KEY).decode()}"
    assert BusKeys.from_setting(text) == BusKeys((NODE_KEY, OTHER_KEY))
    assert BusKeys.from_setting("") is None and BusKeys.from_setting(" , ") is None
    with pytest.raises(SigningKeyError, match="at least 32 bytes, not 16: make one with `openssl rand"):
        BusKeys.from_setting(base64.b64encode(os.urandom(16)).decode())
    settings = load(config_file=None, environ={"AUDITWATCH_BUS_URL": "nats://127.0.0.1:4222",
                                               "AUDITWATCH_BUS_SIGNING_KEY": text})
    assert bus_config(settings).keys == BusKeys((NODE_KEY, OTHER_KEY))
    assert bus_config(load(config_file=None, environ={"AUDITWATCH_BUS_URL": "nats://127.0.0.1:4222"})).keys is None


def test_a_signed_record_is_read_back_as_the_node_built_it_with_received_at_restamped(services):
    guard = BusGuard(services.pool)
    sent = record(user_agent="Mozilla/5.0", source_ip="10.0.0.1", source_country="DE", source_asn="AS3320",
                  resource_id="doc-1", metadata={**SENT, "rows": 3})
    stored_at = datetime.now(UTC)
    checks = guard.message_checks(stored_at)
    assert guard.check_signed(parse(encode(sent)), stored_at, checks) == replace(sent, received_at=stored_at)
    # What the field checks would refuse is not looked for again: the node ran them (a stolen key's reach).
    odd = record(user_agent="curl/8 ?token=s3cr3t-value\x01")
    assert guard.check_signed(parse(encode(odd)), stored_at, checks).user_agent == odd.user_agent
    # What guards the platform's own records is, with the error an unsigned message gets.
    for forged, code in [(record(event_type="event_erased"), "reserved_event_type"),
                         (record(user_id="cli:root"), "reserved_principal"),
                         (record(source="Auditwatch-verify"), "reserved_source"),
                         (record(metadata={"rows": 1}), "missing_sender"),
                         (record(timestamp=datetime(2099, 1, 1, tzinfo=UTC)), "timestamp_out_of_window"),
                         (record(event_type="not_in_catalogue"), "unknown_event_type")]:
        with pytest.raises(EventRejected) as refused:
            guard.check_signed(parse(encode(forged)), stored_at, checks)
        assert refused.value.code == code


def test_a_writer_trusts_what_verifies_and_re_validates_the_rest(nats_server, services, conn):
    """The node's signed message is stored as sent, except for what would pass for the platform's own records;
    a forged body under a copied signature, a message signed with another key and an unsigned one are each
    re-validated in full."""
    keys = BusKeys((NODE_KEY,))
    config = BusConfig(url=nats_server.url, ack_wait=5, batch=50, max_failures=1, keys=keys)
    client = BusClient(config)
    honest = [record(user_agent=f"agent {i}") for i in range(5)]
    assert BusPublisher(client).write(honest) == [True] * 5
    # The same message re-published verbatim (a replay of what anyone on the bus saw): stored once (R5).
    [(_, honest_body, _)] = pack(honest, max_events=500, max_bytes=256 * 1024)
    signature = keys.sign(honest_body)

    def publish(body: bytes, msg_id: str, signature: str | None) -> None:
        headers = {api.Header.MSG_ID: msg_id} | ({HEADER: signature} if signature else {})
        client.call(lambda js: js.publish(config.subject, body, stream=config.stream, headers=headers))

    publish(honest_body, "replayed", signature)
    # Signed with the node's key (a stolen one), yet none of these passes for the platform's own records. R9 was
    # the node's, so a secret it would have redacted is stored as the key's holder sent it.
    unredacted = record(user_agent="curl/8 ?token=s3cr3t-value")
    with_the_key = [unredacted, record(event_type="event_erased", metadata={
        **SENT, "integrity": {"erased_leaves": ["00" * 32]}}), record(user_id="apikey:admin"),
        record(source="auditwatch"), record(metadata={}), record(timestamp=datetime(2099, 1, 1, tzinfo=UTC))]
    body = pack(with_the_key, max_events=500, max_bytes=256 * 1024)[0][1]
    publish(body, "with the key", keys.sign(body))
    forged = {
        "copied signature": record(user_id="apikey:admin"),
        "another key": record(event_type="event_erased"),
        "unsigned": record(source="auditwatch"),
    }
    kept = {name: record(user_agent="curl/8 ?token=s3cr3t-value") for name in forged}
    bodies = {name: pack([kept[name], bad], max_events=500, max_bytes=256 * 1024)[0][1]
              for name, bad in forged.items()}
    publish(bodies["copied signature"], "copied", signature)
    publish(bodies["another key"], "other", BusKeys((OTHER_KEY,)).sign(bodies["another key"]))
    publish(bodies["unsigned"], "unsigned", None)
    writer = BusWriter(config, EventWriter(services.pool))
    running = InThread(lambda stop: writer.run(stop))
    try:
        wait_for(lambda: writer.stats.stored == 9 and writer.stats.dead_lettered == 8, 60,
                 "the honest and the kept events stored, the eight forged ones dead-lettered")
    finally:
        running.stop()
        client.close()
    assert writer.stats.signed == 3  # the node's message, its verbatim replay, and the stolen key's
    assert writer.stats.bad_signatures == 2  # the copied signature and the other key's
    assert writer.stats.duplicates == 5 and writer.stats.split == 8
    rows = {r[0]: r[1:] for r in conn.execute(
        "SELECT event_id::text, user_agent, received_at FROM audit_events WHERE source = 'bus-test'")}
    assert set(rows) == {str(r.event_id) for r in [*honest, unredacted, *kept.values()]}
    for r in [*honest, unredacted]:
        assert rows[str(r.event_id)][0] == r.user_agent
    for r in kept.values():  # re-validated, so redacted again on the writer
        assert rows[str(r.event_id)][0] == "curl/8 ?token=[REDACTED]"
    for _, received_at in rows.values():  # JetStream's time of storing, signed or not
        assert abs((received_at - honest[0].received_at).total_seconds()) < 60
    assert conn.execute("SELECT count(*) FROM audit_events WHERE event_type = 'event_erased' OR user_id = "
                        "'apikey:admin' OR source = 'auditwatch' OR timestamp > now() + interval '1 day'"
                        ).fetchone()[0] == 0


def test_the_writer_process_takes_its_key_from_the_environment_and_counts_signatures(nats_server, db_url, services,
                                                                                     tmp_path):
    """`auditwatch writer` with AUDITWATCH_BUS_SIGNING_KEY: what the node signed is trusted, what another key
    signed is re-validated and counted, both in its metrics."""
    config = BusConfig(url=nats_server.url, keys=BusKeys((NODE_KEY,)))
    client, other = BusClient(config), BusClient(replace(config, keys=BusKeys((OTHER_KEY,))))
    try:
        assert BusPublisher(client).write([record(), record()]) == [True, True]
        assert BusPublisher(other).write([record()]) == [True]
    finally:
        client.close()
        other.close()
    port = free_port()
    proc = writer_process(db_url, nats_server.url, tmp_path, "signed", AUDITWATCH_WRITER_OPS_PORT=str(port),
                          AUDITWATCH_BUS_SIGNING_KEY=base64.b64encode(NODE_KEY).decode())
    try:
        def counted() -> bool:
            seen = scrape_process(proc, tmp_path / "signed.log", f"http://127.0.0.1:{port}/metrics")
            return (seen.get("auditwatch_bus_writer_events_stored_total") == 3
                    and seen.get("auditwatch_bus_writer_messages_signed_total") == 1
                    and seen.get("auditwatch_bus_writer_bad_signatures_total") == 1)

        wait_for(counted, 90, "three events stored, one message trusted and one re-validated")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "does not verify (signed with a key this writer does not hold" in (tmp_path / "signed.log").read_text()


def test_for_what_a_node_sends_trusting_the_signature_gives_the_record_re_validating_gives(services):
    """The signed path stores the same rows as the full re-validation would, for records a node builds."""
    guard = BusGuard(services.pool)
    stored_at = datetime.now(UTC)
    checks = guard.message_checks(stored_at)
    east = timezone(timedelta(hours=9))
    sent = [
        record(),
        record(outcome=Outcome.FAILURE, source_ip="2001:db8::1", source_country="JP", source_asn="AS2907 Example",
               user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", resource_id="s3://bucket/key?x=1"),
        record(timestamp=datetime(2020, 2, 29, 23, 59, 59, 999_999, tzinfo=east), event_type="data_export",
               metadata={**SENT, "rows": 12_345, "nested": {"list": [1, 2.5, None, True, "ü"]}, "token": "[REDACTED]"}),
        record(source="billing-api", user_agent="curl/8 ?token=[REDACTED]", outcome=Outcome.SUCCESS),
    ]
    for r in sent:
        obj = parse(encode(r))
        assert guard.check_signed(obj, stored_at, checks) == guard.check_encoded(parse(encode(r)), stored_at, checks)
