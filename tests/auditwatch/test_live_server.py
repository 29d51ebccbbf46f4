"""The real server: gunicorn processes, real HTTP, the shared database."""

from __future__ import annotations

import gc
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import requests

from auditwatch.server import YOUNG_COLLECTION_AFTER, settle
from storage.auth import Role
from storage.timescale import catalog
from tests.auditwatch.conftest import event, in_one_minute
from tests.conftest import LiveServer, start_server

MAX_BODY = 256 * 1024


def mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def chunks(data: bytes, size: int = 65536) -> Iterator[bytes]:
    """A body requests sends with Transfer-Encoding: chunked (no Content-Length)."""
    return (data[i:i + size] for i in range(0, len(data), size))


@pytest.fixture(scope="module")
def server(shared_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(shared_db_url, tmp_path_factory.mktemp("live"), AUDITWATCH_MAX_BODY_BYTES=str(MAX_BODY))
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def keys(role_keys, shared_services) -> dict[Role, dict[str, str]]:
    catalog.register_users(shared_services.pool, [{"user_id": "alice"}], "tests")
    return role_keys


def test_an_event_posted_over_http_reads_back(server, keys):
    sent = event("alice", outcome="failure", source_ip="198.51.100.20", metadata={"door": "B2", "password": "x"})
    created = requests.post(f"{server.url}/api/v1/logs", json=sent, headers=keys[Role.SYSTEM], timeout=10)
    assert created.status_code == 201
    assert created.json() == {"event_id": sent["event_id"], "status": "created"}

    one = requests.get(f"{server.url}/api/v1/logs/{sent['event_id']}", headers=keys[Role.VIEWER], timeout=10)
    assert one.status_code == 200
    body = one.json()
    assert (body["user_id"], body["outcome"], body["source_ip"]) == ("alice", "failure", "198.51.100.20")
    sender = body["metadata"]["_ingest"]["sender"]  # the system key that posted it (issue 14 #3)
    assert sender.startswith("apikey:")
    assert body["metadata"] == {"door": "B2", "password": "[REDACTED]", "_ingest": {"sender": sender}}
    assert body["user_agent"].startswith("python-requests/")

    listed = requests.get(f"{server.url}/api/v1/logs", params={"user_id": "alice", "outcome": "failure"},
                          headers=keys[Role.VIEWER], timeout=10)
    assert sent["event_id"] in [e["event_id"] for e in listed.json()["events"]]

    batch = [event("alice") for _ in range(3)]
    ndjson = b"\n".join(orjson.dumps(e) for e in batch)
    stored = requests.post(f"{server.url}/api/v1/logs/batch", data=ndjson, timeout=10,
                           headers={**keys[Role.SYSTEM], "Content-Type": "application/x-ndjson"})
    assert stored.json() == {"accepted": 3, "duplicates": 0, "rejected": 0, "errors": []}


def test_no_acknowledged_event_is_lost_under_concurrency(server, keys, shared_services, shared_conn):
    threads, singles, batches, batch_size = 8, 15, 4, 25
    senders = [f"load-{i}" for i in range(threads)]
    catalog.register_users(shared_services.pool, [{"user_id": u} for u in senders], "tests")
    acknowledged: list[str] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def send(user_id: str) -> None:
        session = requests.Session()
        session.headers.update(keys[Role.SYSTEM])
        mine: list[str] = []
        seen: Counter[int] = Counter()
        first = None
        for round_ in range(singles + batches):
            if round_ % 4 == 3 and round_ // 4 < batches:
                batch = [event(user_id, event_type="file_upload") for _ in range(batch_size)]
                response = session.post(f"{server.url}/api/v1/logs/batch", json=batch, timeout=30)
                seen[response.status_code] += 1
                if response.status_code == 200:
                    refused = {e["index"] for e in response.json()["errors"]}
                    mine += [e["event_id"] for i, e in enumerate(batch) if i not in refused]
            else:
                single = event(user_id)
                first = first or single
                response = session.post(f"{server.url}/api/v1/logs", json=single, timeout=30)
                seen[response.status_code] += 1
                if response.status_code in (200, 201):
                    mine.append(response.json()["event_id"])
        retry = session.post(f"{server.url}/api/v1/logs", json=first, timeout=30)  # a client retrying
        assert retry.status_code == 200 and retry.json()["status"] == "duplicate"
        with lock:
            acknowledged.extend(mine)
            statuses.update(seen)

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(send, u) for u in senders]:
            future.result()

    assert set(statuses) <= {200, 201}, statuses  # nothing refused, nothing failed
    assert len(acknowledged) == threads * (singles + batches * batch_size)
    counts = dict(shared_conn.execute(
        "SELECT event_id::text, count(*) FROM audit_events WHERE event_id = ANY(%s::uuid[]) GROUP BY 1",
        (acknowledged,)).fetchall())
    assert set(counts) == set(acknowledged)
    assert set(counts.values()) == {1}
    stored = shared_conn.execute("SELECT count(*) FROM audit_events WHERE user_id = ANY(%s)", (senders,)).fetchone()
    assert stored[0] == len(acknowledged)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("media", ["application/json", "application/x-ndjson"])
def test_an_oversized_body_is_413_over_http(server, keys, shared_conn, chunked, media):
    events = [event("alice", metadata={"pad": "x" * 1000}) for _ in range(400)]
    payload = orjson.dumps(events) if media == "application/json" else b"\n".join(orjson.dumps(e) for e in events)
    assert len(payload) > MAX_BODY
    response = requests.post(f"{server.url}/api/v1/logs/batch", data=chunks(payload) if chunked else payload,
                             headers={**keys[Role.SYSTEM], "Content-Type": media}, timeout=30)
    assert response.status_code == 413
    assert response.json()["code"] == "body_too_large"
    assert set(response.json()) == {"code", "message", "field"}
    # Nothing of it was stored: not even the events before the cut.
    stored = shared_conn.execute("SELECT count(*) FROM audit_events WHERE event_id = ANY(%s::uuid[])",
                                 ([e["event_id"] for e in events],)).fetchone()[0]
    assert stored == 0


def test_a_chunked_body_under_the_limit_is_taken_whole(server, keys):
    events = [event("alice", metadata={"pad": "x" * 1000}) for _ in range(200)]
    payload = b"\n".join(orjson.dumps(e) for e in events)
    assert MAX_BODY / 2 < len(payload) < MAX_BODY
    response = requests.post(f"{server.url}/api/v1/logs/batch", data=chunks(payload, 10_000), timeout=30,
                             headers={**keys[Role.SYSTEM], "Content-Type": "application/x-ndjson"})
    assert response.status_code == 200
    assert response.json() == {"accepted": 200, "duplicates": 0, "rejected": 0, "errors": []}


def test_the_server_logged_no_unexpected_error(server):
    log = server.log.read_text()
    assert "unexpected error" not in log
    assert "Traceback" not in log


def test_the_rate_limit_holds_across_two_servers(db_url, tmp_path, users, make_key, conn):
    """R6 is counted in the database, so two processes together accept exactly the limit."""
    with ThreadPoolExecutor(2) as pool:
        servers = list(pool.map(lambda name: start_server(db_url, mkdir(tmp_path / name),
                                                          AUDITWATCH_RATE_LIMIT_PER_MINUTE="20"), ["one", "two"]))
    try:
        def attempt(user_id: str) -> tuple[str, Counter[int], list[str]]:
            users(user_id)
            # R6 counts per key and minute: a fresh key for each try, made inside the minute it is used in,
            # so a retried attempt never starts with part of its budget spent.
            key = make_key("system")
            events = [event(user_id) for _ in range(36)]

            def post(index: int) -> requests.Response:
                target = servers[index % 2]
                return requests.post(f"{target.url}/api/v1/logs", json=events[index], headers=key, timeout=30)

            with ThreadPoolExecutor(6) as senders:
                responses = list(senders.map(post, range(len(events))))
            for response in responses:
                if response.status_code == 429:
                    assert 1 <= int(response.headers["Retry-After"]) <= 60
            accepted = [r.json()["event_id"] for r in responses if r.status_code == 201]
            return user_id, Counter(r.status_code for r in responses), accepted

        # 36 requests through two servers take a few seconds, many more on a loaded machine: start early
        # in a minute, so the attempt fits in it.
        user_id, statuses, accepted = in_one_minute(attempt, needs=40)
        assert statuses == Counter({201: 20, 429: 16})
        rows = {r[0] for r in conn.execute("SELECT event_id::text FROM audit_events WHERE user_id = %s",
                                           (user_id,)).fetchall()}
        assert rows == set(accepted)
    finally:
        for live in servers:
            live.stop()


def test_a_worker_freezes_its_start_up_heap(shared_app):
    """What each gunicorn worker runs after create_app: the start-up heap leaves the collector's full passes."""
    thresholds = gc.get_threshold()
    try:
        settle(shared_app.extensions["auditwatch"].pipeline)
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold() == (YOUNG_COLLECTION_AFTER, *thresholds[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
