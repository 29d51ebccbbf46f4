"""Past one machine: a 3-node JetStream cluster, streams of 3 replicas, several writers on one consumer.

A NATS node and a writer are SIGKILLed during sustained ingest. Every acknowledged event must be
stored exactly once, and ingest must go on through the two surviving nodes and the surviving writer.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import nats
import nats.errors
import requests

from bench.natscluster import NatsCluster
from ingest.bus import CONSUMER, BusConfig
from storage.auth import Role
from storage.timescale import catalog
from tests.conftest import start_server
from tests.ingest.test_bus import event, stored_ids, wait_for, writer_process


def _stream_replicas(url: str, config: BusConfig) -> tuple[int, int]:
    async def get():
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            stream = await js.stream_info(config.stream)
            consumer = await js.consumer_info(config.stream, CONSUMER)
            return stream.config.num_replicas, consumer.num_pending + consumer.num_ack_pending
        finally:
            await nc.close()

    return asyncio.run(get())


def _consumer_state(url: str, config: BusConfig) -> str:
    """What the consumer's leader says of it, for a failure's message."""
    async def get():
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().consumer_info(config.stream, CONSUMER)
            return (f"delivered {info.delivered}, ack floor {info.ack_floor}, pending {info.num_pending}, "
                    f"ack pending {info.num_ack_pending}, redelivered {info.num_redelivered}, "
                    f"waiting pulls {info.num_waiting}, cluster {info.cluster}")
        finally:
            await nc.close()

    try:
        return asyncio.run(get())
    except (TimeoutError, nats.errors.Error) as exc:
        return f"consumer info failed: {exc!r}"


def test_a_nats_node_and_a_writer_die_during_ingest_and_every_acknowledged_event_is_stored_once(
        db_url, tmp_path, services, conn):
    cluster = NatsCluster(tmp_path / "nats")
    cluster.start()
    env = {"AUDITWATCH_BUS_URL": cluster.url, "AUDITWATCH_BUS_REPLICAS": "3", "AUDITWATCH_WORKERS": "1",
           "AUDITWATCH_BUS_PUBLISH_TIMEOUT": "2"}
    server = start_server(db_url, tmp_path, **env)
    writers = [writer_process(db_url, cluster.url, tmp_path, f"writer-{i}", AUDITWATCH_BUS_REPLICAS="3",
                              AUDITWATCH_WRITER_BATCH="200", AUDITWATCH_BUS_ACK_WAIT="3") for i in range(2)]
    acknowledged: list[str] = []
    statuses: list[int] = []
    stop = threading.Event()
    try:
        _, key = catalog.create_key(services.pool, "bus-producer", Role.SYSTEM, "tests")
        catalog.register_users(services.pool, [{"user_id": f"cluster-{i}"} for i in range(10)], "tests")
        headers = {"Authorization": f"Bearer {key}"}

        def produce(worker: int) -> None:
            with requests.Session() as http:
                n = 0
                while not stop.is_set():
                    events = [event(f"cluster-{(n + i) % 10}") for i in range(50)]
                    n += 50
                    try:
                        response = http.post(f"{server.url}/api/v1/logs/batch", json=events, headers=headers,
                                             timeout=30)
                    except requests.RequestException:
                        statuses.append(-1)
                        continue
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        assert response.json()["accepted"] == 50
                        acknowledged.extend(e["event_id"] for e in events)
                        time.sleep(0.2)  # sustained, not flat out: the writers' drain must fit the test
                    else:
                        time.sleep(0.5)  # a client's back-off on 503

        producers = [threading.Thread(target=produce, args=(i,)) for i in range(2)]
        for p in producers:
            p.start()
        wait_for(lambda: len(acknowledged) >= 1000 and len(stored_ids(conn)) >= 200, 90, "ingest under way")
        replicas, _ = _stream_replicas(cluster.urls[1], BusConfig(url=cluster.url))
        assert replicas == 3
        for i, w in enumerate(writers):  # a writer that gave up attaching leaves nobody after the kill
            assert w.poll() is None, (tmp_path / f"writer-{i}.log").read_text()[-2000:]

        cluster.kill(0)
        writers[0].send_signal(signal.SIGKILL)
        writers[0].wait(10)
        at_kill = len(acknowledged)
        wait_for(lambda: len(acknowledged) >= at_kill + 1000, 120, "ingest going on after the kills")
        stop.set()
        for p in producers:
            p.join(60)
        assert not any(p.is_alive() for p in producers)
        config = BusConfig(url=cluster.url)
        drained = {}

        def settled() -> bool:
            drained["missing"] = len(set(acknowledged) - set(stored_ids(conn)))
            try:
                drained["pending"] = _stream_replicas(cluster.urls[2], config)[1]
            except (TimeoutError, nats.errors.Error) as exc:  # no consumer leader yet (an election under way)
                drained["pending"] = repr(exc)
                return False
            return drained["missing"] == 0 and drained["pending"] == 0

        try:
            wait_for(settled, 240, "the surviving writer storing every acknowledged event")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: {drained['missing']} of {len(acknowledged)} acknowledged events not stored, "
                f"{drained['pending']} messages pending on the consumer ({_consumer_state(cluster.urls[2], config)})"
                f"\nwriter-1: {(tmp_path / 'writer-1.log').read_text()[-3000:]}"
                + "".join(f"\nn{i}: {cluster.log(i).read_text()[-1500:]}" for i in (1, 2))) from exc
    finally:
        stop.set()
        server.stop()
        for w in writers:
            if w.poll() is None:
                w.send_signal(signal.SIGTERM)
                w.wait(30)
        cluster.stop()
    ids = stored_ids(conn)
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert set(acknowledged) <= set(ids)
    assert writers[1].returncode == 0, (tmp_path / "writer-1.log").read_text()[-2000:]
    print(f"\n{len(acknowledged)} acknowledged ({at_kill} before the kills), {statuses.count(503)} answered 503, "
          f"{statuses.count(-1)} connection errors, {len(ids)} stored once each")
