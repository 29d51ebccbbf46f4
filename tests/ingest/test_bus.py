"""The JetStream path against a real nats-server: acknowledged means stored exactly once, whatever dies."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace

import nats
import nats.errors
import orjson
import pytest
import requests

from ingest.bus import (
    CONSUMER,
    BusClient,
    BusConfig,
    BusPublisher,
    BusWriter,
    DeadLetters,
    decode,
    encode,
    message_id,
    pack,
    parse,
    unpack,
)
from ingest.errors import Unavailable
from storage.auth import Role
from storage.errors import DatabaseUnavailable
from storage.events import EventRecord, Outcome
from storage.timescale import catalog
from storage.timescale.writer import EventWriter
from tests.conftest import ROOT, free_port, start_server
from tests.ingest.conftest import InThread, NatsServer


def wait_for(condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not met in {timeout} s")


def stored_ids(conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT event_id::text FROM audit_events WHERE source = 'bus-test'").fetchall()]


def event(user: str) -> dict:
    return {"event_id": str(uuid.uuid4()), "timestamp": datetime.now(UTC).isoformat(), "event_type": "user_login",
            "user_id": user, "outcome": "success", "source": "bus-test"}


def writer_process(db_url: str, nats_url: str, tmp_path, name: str, **env: str) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "AUDITWATCH_DATABASE_URL": db_url,
                   "AUDITWATCH_BUS_URL": nats_url, "AUDITWATCH_DATA_DIR": str(tmp_path / "data"), **env}
    environment.pop("AUDITWATCH_CONFIG", None)
    return subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "writer"], env=environment, cwd=tmp_path,
                            stdout=(tmp_path / f"{name}.log").open("wb"), stderr=subprocess.STDOUT)


def consumer_info(url: str, config: BusConfig):
    async def get():
        nc = await nats.connect(url)
        try:
            return await nc.jetstream().consumer_info(config.stream, CONSUMER)
        finally:
            await nc.close()

    return asyncio.run(get())


def test_message_format_round_trips_and_refuses_poison():
    record = EventRecord(event_id=uuid.uuid4(), timestamp=datetime.now(UTC), event_type="user_login", user_id="a",
                         received_at=datetime.now(UTC), outcome=Outcome.FAILURE, source_ip="2001:db8::1",
                         metadata={"k": [1, {"x": None}]})
    assert decode(encode(record)) == record
    assert parse(encode(record)) == orjson.loads(encode(record))
    for poison in [b"", b"\xff", b"[]", b'{"event_id": "nope"}', b'{"unexpected": 1}']:
        with pytest.raises(ValueError):
            decode(poison)
        with pytest.raises(ValueError):
            parse(poison)


def test_records_are_packed_into_messages_bounded_by_count_and_bytes_and_read_back_in_order():
    now = datetime.now(UTC)
    records = [EventRecord(event_id=uuid.uuid4(), timestamp=now, event_type="user_login", user_id=f"u{i}",
                           received_at=now, metadata={"note": "line\nbreak" if i == 3 else "x" * (i % 7)})
               for i in range(1200)]
    big = EventRecord(event_id=uuid.uuid4(), timestamp=now, event_type="user_login", user_id="big",
                      received_at=now, metadata={"blob": "y" * 20_000})
    sequence = [*records[:700], big, *records[700:]]
    messages = pack(sequence, max_events=500, max_bytes=16_384)
    assert sum(count for count, _, _ in messages) == len(sequence)
    assert [decode(line) for _, body, _ in messages for line in unpack(body)] == sequence  # order kept
    for count, body, _ in messages:
        assert count == len(unpack(body)) <= 500
        assert len(body) <= 16_384 or count == 1  # only a record larger than the bound goes over it, alone
    assert (1, encode(big), message_id(big)) in messages
    # A message of one record is the one-event format, so writers read what older publishers left queued.
    assert pack(records[:1], max_events=500, max_bytes=16_384) == [(1, encode(records[0]), message_id(records[0]))]
    # The same batch gets the same ids (a retried request is absorbed by JetStream's duplicate window).
    assert pack(sequence, max_events=500, max_bytes=16_384) == messages
    ids = [msg_id for _, _, msg_id in pack(records, max_events=100, max_bytes=1 << 20)]
    assert len(set(ids)) == len(ids) == 12
    assert unpack(b"\x00garbage\n") == [b"\x00garbage"] and unpack(b"") == [b""]


def test_the_writer_asks_for_about_batch_events_whatever_a_message_holds():
    writer = BusWriter(BusConfig(url="nats://127.0.0.1:1", batch=1000), SimpleNamespace(pool=None),
                       guard=SimpleNamespace())
    assert writer.next_fetch_size() == 1  # nothing seen yet: one message, which may hold hundreds of events
    packed = SimpleNamespace(data=b"\n".join([b'{"e": 1}'] * 500))
    writer._saw([packed, packed])
    assert writer.next_fetch_size() == 2  # two messages of 500 events
    single = SimpleNamespace(data=b'{"e": 1}')
    for _ in range(40):  # the byte hint decays by an eighth per fetch of small messages
        writer._saw([single] * 2)
    assert writer.next_fetch_size() == 1000  # one event per message: `batch` messages
    writer._saw([SimpleNamespace(data=b"x" * 900_000)])  # and the byte bound still holds for large ones
    assert writer.next_fetch_size() == BusConfig(url="").fetch_bytes // 900_000


def test_writer_killed_mid_batch_then_restarted_stores_every_acknowledged_event_once(
        nats_server, db_url, tmp_path, services, conn):
    env = {"AUDITWATCH_BUS_URL": nats_server.url, "AUDITWATCH_WORKERS": "1"}
    server = start_server(db_url, tmp_path, **env)
    try:
        _, key = catalog.create_key(services.pool, "bus-producer", Role.SYSTEM, "tests")
        catalog.register_users(services.pool, [{"user_id": f"bus-user-{i}"} for i in range(20)], "tests")
        headers = {"Authorization": f"Bearer {key}"}
        acknowledged: list[str] = []
        with requests.Session() as http:
            for batch in range(30):
                events = [event(f"bus-user-{(batch * 100 + i) % 20}") for i in range(100)]
                response = http.post(f"{server.url}/api/v1/logs/batch", json=events, headers=headers, timeout=30)
                assert response.status_code == 200, response.text
                assert response.json()["accepted"] == 100
                acknowledged += [e["event_id"] for e in events]
        # Nothing is in the database yet: the API node only published (no writer is running).
        assert stored_ids(conn) == []
    finally:
        server.stop()

    config = BusConfig(url=nats_server.url)
    first = writer_process(db_url, nats_server.url, tmp_path, "writer-1", AUDITWATCH_WRITER_BATCH="250",
                           AUDITWATCH_BUS_ACK_WAIT="2")
    try:
        wait_for(lambda: len(stored_ids(conn)) > 0, 60, "the first writer storing something")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    at_kill = len(stored_ids(conn))
    info = consumer_info(nats_server.url, config)
    print(f"\nkilled the writer with {at_kill} of 3000 stored; {info.num_ack_pending} delivered but unacked, "
          f"{info.num_pending} not yet delivered")
    assert at_kill < 3000

    second = writer_process(db_url, nats_server.url, tmp_path, "writer-2", AUDITWATCH_WRITER_BATCH="250",
                            AUDITWATCH_BUS_ACK_WAIT="2")
    try:
        wait_for(lambda: len(stored_ids(conn)) == 3000 and consumer_info(nats_server.url, config).num_ack_pending == 0
                 and consumer_info(nats_server.url, config).num_pending == 0, 90, "the second writer catching up")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    ids = stored_ids(conn)
    assert len(ids) == len(set(ids)) == 3000
    assert set(ids) == set(acknowledged)
    assert second.returncode == 0, (tmp_path / "writer-2.log").read_text()[-2000:]


def test_a_writer_started_before_jetstream_waits_for_it_and_a_sigterm_meanwhile_ends_it(
        db_url, tmp_path, services, conn):
    """A writer that meets no server, then NATS without JetStream (no responders: what a cluster still electing
    or too busy to answer looks like to it), waits and attaches once JetStream is up. It used to exit on the
    first JetStream timeout, leaving nobody to drain the queue."""
    broker = NatsServer(tmp_path / "jetstream", tmp_path / "nats.log")
    waiting = writer_process(db_url, broker.url, tmp_path, "writer-early")
    idle = writer_process(db_url, f"nats://127.0.0.1:{free_port()}", tmp_path, "writer-idle")
    log = tmp_path / "writer-early.log"
    try:
        wait_for(lambda: "Connect call failed" in log.read_text(), 30, "the writer meeting no server")
        idle_log = tmp_path / "writer-idle.log"
        wait_for(lambda: "Connect call failed" in idle_log.read_text(), 30, "the idle writer meeting no server")
        idle.send_signal(signal.SIGTERM)
        assert idle.wait(15) == 0, idle_log.read_text()[-2000:]

        broker.start(jetstream=False)
        wait_for(lambda: "is not ready" in log.read_text(), 30, "the writer finding no JetStream")
        assert waiting.poll() is None, log.read_text()[-2000:]
        broker.stop()

        broker.start()
        client = BusClient(BusConfig(url=broker.url))
        try:
            def attached() -> bool:
                try:
                    return client.call(lambda js: js.consumer_info(client.config.stream, CONSUMER)) is not None
                except (nats.errors.Error, TimeoutError, Unavailable):
                    return False

            wait_for(attached, 60, "the writer's consumer")
            records = [EventRecord(event_id=uuid.uuid4(), timestamp=datetime.now(UTC), event_type="user_login",
                                   user_id=f"early-{i % 5}", received_at=datetime.now(UTC), source="bus-test",
                                   metadata={"_ingest": {"sender": "apikey:bus-test"}})
                       for i in range(300)]
            assert all(BusPublisher(client).write(records))
        finally:
            client.close()
        wait_for(lambda: len(stored_ids(conn)) == 300, 60, "the writer storing what was published")
    finally:
        for writer in (waiting, idle):
            if writer.poll() is None:
                writer.send_signal(signal.SIGTERM)
                writer.wait(30)
        broker.stop()
    assert set(stored_ids(conn)) == {str(r.event_id) for r in records}
    assert waiting.returncode == 0, log.read_text()[-2000:]
    assert "retrying in" in log.read_text()


def test_nats_down_means_503_and_nothing_acknowledged_is_lost(nats_server, db_url, tmp_path, services, conn):
    server = start_server(db_url, tmp_path, AUDITWATCH_BUS_URL=nats_server.url, AUDITWATCH_WORKERS="1",
                          AUDITWATCH_BUS_PUBLISH_TIMEOUT="1")
    writer = None
    try:
        _, key = catalog.create_key(services.pool, "bus-producer", Role.SYSTEM, "tests")
        catalog.register_users(services.pool, [{"user_id": "steady"}], "tests")
        headers = {"Authorization": f"Bearer {key}"}
        acknowledged: list[str] = []
        statuses: list[int] = []
        stop = threading.Event()

        def produce() -> None:
            with requests.Session() as http:
                while not stop.is_set():
                    e = event("steady")
                    try:
                        response = http.post(f"{server.url}/api/v1/logs", json=e, headers=headers, timeout=15)
                    except requests.RequestException:
                        statuses.append(-1)
                        continue
                    statuses.append(response.status_code)
                    if response.status_code == 201:
                        acknowledged.append(e["event_id"])
                    elif response.status_code == 503:
                        body = response.json()
                        assert body["code"] == "unavailable" and response.headers["Retry-After"]

        producer = threading.Thread(target=produce)
        producer.start()
        wait_for(lambda: len(acknowledged) >= 50, 30, "events acknowledged before the outage")
        nats_server.stop()
        wait_for(lambda: statuses.count(503) >= 3, 60, "503s during the outage")
        acked_during_outage = len(acknowledged)
        nats_server.start()  # same port, same store
        wait_for(lambda: len(acknowledged) >= acked_during_outage + 50, 60, "acknowledgements after the outage")
        stop.set()
        producer.join(30)
        assert set(statuses) <= {201, 503}, set(statuses)
        writer = writer_process(db_url, nats_server.url, tmp_path, "writer")
        wait_for(lambda: set(acknowledged) <= set(stored_ids(conn)), 90, "every acknowledged event stored")
    finally:
        server.stop()
        if writer is not None:
            writer.send_signal(signal.SIGTERM)
            writer.wait(30)
    ids = stored_ids(conn)
    assert len(ids) == len(set(ids))
    print(f"\n{len(acknowledged)} acknowledged, {statuses.count(503)} answered 503, {len(ids)} stored "
          f"(stored ⊇ acknowledged; a 503'd request may still have landed, which a retry dedups)")


def test_publisher_without_a_broker_is_unavailable_not_an_error(tmp_path):
    from tests.conftest import free_port

    client = BusClient(BusConfig(url=f"nats://127.0.0.1:{free_port()}", publish_timeout=1))
    record = EventRecord(event_id=uuid.uuid4(), timestamp=datetime.now(UTC), event_type="user_login", user_id="a",
                         received_at=datetime.now(UTC))
    try:
        with pytest.raises(Unavailable) as caught:
            BusPublisher(client).write([record])
    finally:
        client.close()
    assert caught.value.status == 503 and "retry" in caught.value.message


class _WriterDuringAnOutage(EventWriter):
    """The real writer, except that while ``down`` is set the database answers as if it were gone."""

    down = threading.Event()

    def write(self, records):
        if self.down.is_set():
            raise DatabaseUnavailable("the database is down (test outage)")
        return super().write(records)


def test_a_database_outage_holds_the_batch_without_redeliveries(nats_server, services, conn):
    """No redelivery storm: during an outage several ack_waits long the writer keeps its batches in progress."""
    config = BusConfig(url=nats_server.url, ack_wait=2, batch=100)
    client = BusClient(config)
    now = datetime.now(UTC)
    sent = {"_ingest": {"sender": "apikey:bus-test"}}
    records = [EventRecord(event_id=uuid.uuid4(), timestamp=now, event_type="user_login", user_id="fine",
                           received_at=now, source="bus-test", metadata=sent) for _ in range(300)]
    for start in range(0, 300, 10):  # 30 messages of 10 events
        assert BusPublisher(client).write(records[start:start + 10]) == [True] * 10
    inner = _WriterDuringAnOutage(services.pool)
    inner.down.set()
    writer = BusWriter(config, inner)
    running = InThread(lambda stop: writer.run(stop))

    def consumer():
        return client.call(lambda js: js.consumer_info(config.stream, CONSUMER))

    def fetched() -> int:
        try:
            return consumer().delivered.consumer_seq
        except Unavailable:  # the writer has not created the consumer yet
            return 0

    try:
        # The first fetch is one message (how many events a message holds is not known yet), the next one
        # batch // 10 = 10 messages: a hundred events, as `batch` says.
        wait_for(lambda: fetched() >= 11, 30, "two batches fetched")
        time.sleep(3 * config.ack_wait)  # three ack_waits into the outage
        during = consumer()
        inner.down.clear()
        wait_for(lambda: len(stored_ids(conn)) == 300, 60, "every event stored after the outage")
    finally:
        running.stop()
        inner.down.clear()
    after = consumer()
    client.close()
    # One batch committing, the next one prepared, and nothing else taken or redelivered meanwhile.
    assert during.delivered.consumer_seq == 11 and during.num_redelivered == 0, during
    assert after.num_redelivered == 0 and after.delivered.consumer_seq == 30, after
    ids = stored_ids(conn)
    assert len(ids) == len(set(ids)) == 300 and writer.stats.stored == 300


def test_poison_and_refused_messages_are_dead_lettered_after_three_deliveries(nats_server, services, conn):
    config = BusConfig(url=nats_server.url, ack_wait=5, batch=50)
    client = BusClient(config)
    publisher = BusPublisher(client)
    conn.execute("ALTER TABLE audit_events ADD CONSTRAINT test_no_poison CHECK (user_id <> 'poison')")
    now = datetime.now(UTC)
    sent = {"_ingest": {"sender": "apikey:bus-test"}}  # as a publishing node records it
    good = [EventRecord(event_id=uuid.uuid4(), timestamp=now, event_type="user_login", user_id="fine",
                        received_at=now, source="bus-test", metadata=sent) for _ in range(20)]
    bad = EventRecord(event_id=uuid.uuid4(), timestamp=now, event_type="user_login", user_id="poison",
                      received_at=now, source="bus-test", metadata=sent)
    assert publisher.write(good[:10] + [bad] + good[10:]) == [True] * 21  # one message of 21 events
    # JetStream's duplicate window absorbs a re-publish of the same batch (a retried request); a different
    # batch holding some of the same events is new to JetStream, and the writers' R5 stores each event once.
    assert publisher.write(good[:10] + [bad] + good[10:]) == [False] * 21
    assert publisher.write(good[:3]) == [True] * 3
    client.call(lambda js: js.publish(config.subject, b"\x00garbage", stream=config.stream))
    # A raw publisher's message of 6,000 one-byte lines is refused whole, not split into 6,000 messages.
    client.call(lambda js: js.publish(config.subject, b"x\n" * 6000, stream=config.stream))
    writer = BusWriter(config, EventWriter(services.pool))
    running = InThread(lambda stop: writer.run(stop))
    try:
        wait_for(lambda: writer.stats.dead_lettered == 3, 60, "three dead letters")
        letters = DeadLetters(BusClient(config))
        dead = letters.list()
        letters.close()
    finally:
        running.stop()
        client.close()
    ids = stored_ids(conn)
    assert len(ids) == len(set(ids)) == 20 and writer.stats.stored == 20 and writer.stats.duplicates == 3
    # The poison event failed inside its message of 21: the other 20 were stored, and it alone was set apart
    # as a message of its own, which then failed three times and became a dead letter holding it alone.
    assert writer.stats.split == 1
    assert writer.stats.retried == 6  # each of the three failed twice before its third, final delivery
    assert sorted(d.event["user_id"] if d.event else d.raw[:2] for d in dead) == ["\x00g", "poison", "x\n"]
    assert any("6,000 lines" in d.error for d in dead)
    assert all(d.deliveries == 3 for d in dead)
    poison = next(d for d in dead if d.event)
    assert poison.event["event_id"] == str(bad.event_id) and "test_no_poison" in poison.error


def test_a_packed_message_an_older_writer_dead_lettered_is_stored_once_replayed(nats_server, services, conn):
    """The upgrade path (docs/operations/upgrade.md): a writer from before packing reads a message of many
    events as malformed and dead-letters it whole; replayed once the writers are upgraded, every event in it is
    stored."""
    config = BusConfig(url=nats_server.url, ack_wait=5, batch=100)
    client = BusClient(config)
    now = datetime.now(UTC)
    sent = {"_ingest": {"sender": "apikey:bus-test"}}
    records = [EventRecord(event_id=uuid.uuid4(), timestamp=now, event_type="user_login", user_id=f"old{i}",
                           received_at=now, source="bus-test", metadata=sent) for i in range(30)]
    [(count, body, msg_id)] = pack(records, max_events=500, max_bytes=256 * 1024)
    assert count == 30
    with pytest.raises(ValueError):
        decode(body)  # what the older writer did with it
    client.call(lambda js: js.publish(config.deadletter_subject, body, stream=config.deadletter_stream, headers={
        "Auditwatch-Error": "malformed message: not JSON: trailing data", "Auditwatch-Deliveries": "3",
        "Nats-Msg-Id": "dead/1", "Auditwatch-Original-Id": msg_id}))
    letters = DeadLetters(client)
    [letter] = letters.list()
    assert letter.event is None and letter.raw.startswith("{")  # listed as raw, not as one event
    assert letters.replay() == 1 and letters.list() == []
    writer = BusWriter(config, EventWriter(services.pool))
    running = InThread(lambda stop: writer.run(stop))
    try:
        wait_for(lambda: writer.stats.stored == 30, 60, "the replayed message's 30 events stored")
    finally:
        running.stop()
        client.close()
    assert sorted(stored_ids(conn)) == sorted(str(r.event_id) for r in records)
    assert writer.stats.dead_lettered == writer.stats.split == 0


def test_the_writer_re_validates_every_message_and_sets_received_at_itself(nats_server, services, conn):
    """Anyone who can publish to the subject must not be able to write what ingest refuses (issue 14 #3)."""
    config = BusConfig(url=nats_server.url, ack_wait=5, batch=50, max_failures=1)
    client = BusClient(config)
    publisher = BusPublisher(client)
    now = datetime.now(UTC)
    sent = {"_ingest": {"sender": "apikey:bus-test"}}

    def record(**fields) -> EventRecord:
        base = {"event_id": uuid.uuid4(), "timestamp": now, "event_type": "user_login", "user_id": "fine",
                "received_at": now, "source": "bus-test", "metadata": sent}
        return EventRecord(**{**base, **fields})

    honest = record(user_agent="curl/8 ?token=s3cr3t-value", metadata={**sent, "password": "hunter2"})
    backdated = record(received_at=datetime(2001, 1, 1, tzinfo=UTC))
    forged = {
        "no sender": record(metadata={}),
        "reserved type": record(event_type="event_erased", metadata={
            **sent, "integrity": {"erased_leaves": ["00" * 32]}}),
        "platform principal": record(user_id="apikey:admin"),
        "platform source": record(source="auditwatch"),
        "unknown type": record(event_type="not_in_catalogue"),
        "far future": record(timestamp=datetime(2099, 1, 1, tzinfo=UTC)),
        "control characters": record(resource_id="a\x00b"),
    }
    assert all(publisher.write([honest, backdated, *forged.values()]))
    writer = BusWriter(config, EventWriter(services.pool))
    running = InThread(lambda stop: writer.run(stop))
    try:
        wait_for(lambda: writer.stats.stored == 2 and writer.stats.dead_lettered == len(forged), 60,
                 "two stored and every forged message dead-lettered")
        # They were published as one message: each forged event was set apart and dead-lettered on its own.
        assert writer.stats.split == len(forged)
    finally:
        running.stop()
        client.close()
    rows = {r[0]: r[1:] for r in conn.execute(
        "SELECT event_id::text, received_at, user_agent, metadata FROM audit_events WHERE source = 'bus-test'")}
    assert set(rows) == {str(honest.event_id), str(backdated.event_id)}
    for received_at, _, _ in rows.values():  # JetStream's time of storing the message, not the publisher's
        assert abs((received_at - now).total_seconds()) < 60
    _, user_agent, metadata = rows[str(honest.event_id)]
    assert user_agent == "curl/8 ?token=[REDACTED]"  # R9 again on the writer: a raw publisher skipped it
    assert metadata == {"password": "[REDACTED]", "_ingest": {"sender": "apikey:bus-test"}}
    assert conn.execute("SELECT count(*) FROM audit_events WHERE event_type = 'event_erased' "
                        "OR user_id = 'apikey:admin' OR source = 'auditwatch'").fetchone()[0] == 0


def test_a_syslog_node_publishes_to_the_bus_and_a_writer_stores(nats_server, settings, conn):
    """The syslog listener's pipeline sinks into JetStream when a bus is configured; replayed lines dedup."""
    from ingest.syslog.ingestor import SyslogIngestor
    from ingest.syslog.listener import ListenerConfig, SyslogListener
    from tests.conftest import opened_services
    from tests.ingest.test_syslog_listener import NOW, running

    lines = b"".join(f"Dec 10 07:0{i % 10}:00 LabSZ sshd[{i}]: Failed password for root from 10.9.8.{i} port 22 "
                     f"ssh2\n".encode() for i in range(50))
    bus_settings = settings.replace(bus_url=nats_server.url)
    with opened_services(bus_settings) as services:
        ingestor = SyslogIngestor(services.pipeline, services.pool)
        listener = SyslogListener(ListenerConfig(udp_port=None, tcp_port=0), ingestor, now=lambda: NOW)
        with running(listener) as ports:
            for _ in range(2):
                with socket.create_connection(("127.0.0.1", ports["tcp"])) as tcp:
                    tcp.sendall(lines)
            wait_for(lambda: listener.stats.handled == 100, 30, "both copies published")
        assert conn.execute("SELECT count(*) FROM audit_events WHERE event_type = 'user_login'").fetchone()[0] == 0
        # The second copy is a duplicate to JetStream's window when the listener batched it as it did the first
        # (one message per batch: the same events, the same message id), and to the writer's R5 otherwise.
        assert sum(ingestor.totals.values()) == 100 and ingestor.totals["created"] >= 50, ingestor.totals
        writer = BusWriter(services.bus.config, EventWriter(services.pool))
        running_writer = InThread(lambda stop: writer.run(stop))
        try:
            wait_for(lambda: writer.stats.stored == 50, 30, "the writer storing the lines")
        finally:
            running_writer.stop()
    assert conn.execute("SELECT count(*), count(DISTINCT source_ip) FROM audit_events WHERE event_type = 'user_login' "
                        "AND outcome = 'failure'").fetchone() == (50, 50)
    assert conn.execute("SELECT DISTINCT metadata->'_ingest'->>'sender' FROM audit_events "
                        "WHERE event_type = 'user_login'").fetchall() == [("syslog",)]


def test_large_messages_are_fetched_a_few_at_a_time_and_never_make_the_writer_a_slow_consumer(
        nats_server, services, conn):
    """Issue 14: ~1 MB messages from a raw publisher made NATS drop the writer as a slow consumer (a fetch of
    `batch` such messages is a gigabyte). Each fetch is now bounded by `fetch_bytes`; every good event is stored
    once and every oversized one dead-lettered, with no slow-consumer verdict and no reconnect."""
    config = BusConfig(url=nats_server.url, ack_wait=30, batch=1000, max_failures=1, fetch_bytes=4 * 1024 * 1024)
    client = BusClient(config)
    publisher = BusPublisher(client)
    now = datetime.now(UTC)
    sent = {"_ingest": {"sender": "apikey:bus-test"}}
    good = [EventRecord(event_id=uuid.uuid4(), timestamp=now, received_at=now, event_type="user_login",
                        user_id=f"user{i}", source="bus-test", metadata=sent) for i in range(300)]
    # Over R7's metadata bound, so the writer refuses them on re-validation: ~900 KB each, 120 of them.
    huge = [EventRecord(event_id=uuid.uuid4(), timestamp=now, received_at=now, event_type="user_login",
                        user_id="big", source="bus-test", metadata={**sent, "blob": "x" * 900_000})
            for _ in range(120)]
    mixed = [*good[:100], *huge[:60], *good[100:200], *huge[60:], *good[200:]]
    for start in range(0, len(mixed), 20):
        assert all(publisher.write(mixed[start:start + 20]))
    writer = BusWriter(config, EventWriter(services.pool))
    running = InThread(lambda stop: writer.run(stop))
    try:
        wait_for(lambda: writer.stats.stored == len(good) and writer.stats.dead_lettered == len(huge), 180,
                 "every good event stored and every huge one dead-lettered")
    finally:
        running.stop()
        client.close()
    assert sorted(stored_ids(conn)) == sorted(str(e.event_id) for e in good)
    assert writer.stats.slow_consumer == 0 and writer.stats.reconnects == 0
    # Once a fetch has brought a large message, the next one asks for no more than fetch_bytes of them.
    fetches = list(writer.stats.fetches)
    after_large = [asked for (_, got, size), (asked, _, _) in zip(fetches, fetches[1:], strict=False)
                   if got and size / got > 0 and size >= 900_000]
    assert after_large and all(asked * 900_000 <= config.fetch_bytes for asked in after_large)
