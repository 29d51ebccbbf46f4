"""The forwarder against real receivers: Debian's rsyslog over TCP (RFC 5424, CEF and OCSF JSON payloads)
and an HTTP NDJSON endpoint that fails before it accepts: every event once, in commit order, none lost."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from forwarder.formats import cef, octet_counted, rfc5424
from forwarder.outbox import Destination, drain, send_once
from forwarder.transports import HttpNdjson, SyslogTcp
from storage.events import EventRecord, Outcome
from storage.timescale import forwarding
from storage.timescale.writer import EventWriter
from tests.conftest import free_port
from tests.storage.test_ocsf import problems

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TYPES = ("user_login", "file_download", "data_export", "sudo", "config_change")


def events(n: int, *, start: int = 0) -> list[EventRecord]:
    return [EventRecord(event_id=uuid.uuid4(), timestamp=T0 + timedelta(seconds=start + i),
                        event_type=TYPES[i % len(TYPES)], user_id=f"user{i % 3}", received_at=T0,
                        outcome=Outcome.FAILURE if i % 4 == 0 else Outcome.SUCCESS, source_ip="10.0.0.7",
                        user_agent="curl/8 |=\\", resource_id="doc=1|x",
                        metadata={"note": "line one\nline two", "n": i}) for i in range(n)]


def write_batches(pool, batches: list[list[EventRecord]]) -> None:
    writer = EventWriter(pool)
    for batch in batches:
        assert writer.write(batch) == [True] * len(batch)


@pytest.fixture
def rsyslog(tmp_path):
    """rsyslogd (Debian) on a loopback port, writing the RFC 5424 fields it parsed, one line each."""
    binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(binary).exists():
        pytest.fail("rsyslogd is missing: run `make system-deps` (scripts/install-rsyslog.sh)")
    port, out = free_port(), tmp_path / "received.log"
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(f'''global(workDirectory="{tmp_path}")
module(load="imtcp")
template(name="fields" type="string" string="%msgid%\\t%app-name%\\t%hostname%\\t%pri%\\t%timereported:::date-rfc3339%\\t%msg%\\n")
ruleset(name="fwd") {{ action(type="omfile" file="{out}" template="fields") }}
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="fwd")
''')
    proc = subprocess.Popen([binary, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslogd.pid")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            SyslogTcp(f"tcp://127.0.0.1:{port}").send([])
            break
        except Exception:  # noqa: BLE001 (not listening yet)
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"rsyslogd did not start: {proc.stdout.read().decode()}") from None
            time.sleep(0.1)
    yield f"tcp://127.0.0.1:{port}", out
    proc.terminate()
    proc.wait(timeout=10)


def received(path: Path, count: int) -> list[list[str]]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if len(lines) >= count:
            return [line.split("\t", 5) for line in lines]
        time.sleep(0.1)
    raise AssertionError(f"rsyslog wrote {len(lines)} lines, expected {count}")


@pytest.mark.parametrize("payload", ["cef", "ocsf"])
def test_rsyslog_receives_every_event_once_in_commit_order(pool, rsyslog, payload):
    url, out = rsyslog
    sent = events(23)
    write_batches(pool, [sent[:5], sent[5:12], sent[12:]])
    destination = Destination(f"rsyslog-{payload}", SyslogTcp(url), payload=payload, max_events=8)
    outcomes = drain(pool, destination, clock=lambda: T0)
    destination.transport.close()
    assert [o.sent for o in outcomes if o.sent] == [5, 7, 11]  # whole batches, up to max_events (one always)
    lines = received(out, len(sent))
    assert len(lines) == len(sent)
    assert [line[0] for line in lines] == [e.event_type for e in sent]  # MSGID, parsed by rsyslog
    assert {(line[1], line[2]) for line in lines} == {("auditwatch", "auditwatch")}
    assert [int(line[3]) for line in lines] == [13 * 8 + (4 if e.outcome == Outcome.FAILURE else 6) for e in sent]
    assert [datetime.fromisoformat(line[4]) for line in lines] == [e.timestamp for e in sent]
    bodies = [line[5].removeprefix("\ufeff") for line in lines]
    if payload == "cef":
        assert [b.split("externalId=")[1].split(" ")[0] for b in bodies] == [str(e.event_id) for e in sent]
        assert all(b.startswith("CEF:0|Auditwatch|Auditwatch|") for b in bodies)
        assert "requestClientApplication=curl/8 |\\=\\\\" in bodies[0] and "cs1=doc\\=1|x" in bodies[0]
    else:
        parsed = [orjson.loads(b) for b in bodies]
        assert [p["metadata"]["uid"] for p in parsed] == [str(e.event_id) for e in sent]
        assert [x for p in parsed for x in problems(p)] == []
    with pool.connection() as conn:
        assert forwarding.backlog(conn, destination.name) == 0
        assert forwarding.cursor(conn, destination.name).forwarded == len(sent)


def test_cef_escapes_and_rfc5424_framing_survive_awkward_values():
    [event] = events(1)
    line = cef(event)
    header = re.split(r"(?<!\\)\|", line, maxsplit=7)  # CEF escapes | in the header only
    assert header[:7] == ["CEF:0", "Auditwatch", "Auditwatch", "0.1.0", "user_login", "user login", "5"]
    assert "cs1=doc\\=1|x" in header[7] and "\n" not in line  # = escaped, newlines written as \n
    frame = octet_counted(rfc5424(event, line, hostname="host with spaces"))
    length, _, message = frame.partition(b" ")
    assert int(length) == len(message) and b" hostwithspaces auditwatch - user_login - \xef\xbb\xbf" in message


class Receiver:
    """An HTTP NDJSON endpoint that answers 503 to its first ``fail`` posts."""

    def __init__(self, fail: int) -> None:
        self.fail, self.posts, self.lines = fail, 0, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts += 1
                if receiver.posts <= receiver.fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                assert self.headers["Content-Type"] == "application/x-ndjson"
                receiver.lines += [orjson.loads(line) for line in body.splitlines()]
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ingest"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_http_failures_back_off_keep_the_position_and_lose_nothing(pool):
    receiver = Receiver(fail=2)
    try:
        first, second = events(6), events(4, start=100)
        write_batches(pool, [first, second])
        destination = Destination("siem-http", HttpNdjson(receiver.url), max_events=100,
                                  backoff=timedelta(seconds=10), backoff_cap=timedelta(seconds=15))
        now = T0
        failed = send_once(pool, destination, now=now)
        assert failed.sent == 0 and "503" in failed.error and failed.retry_in == timedelta(seconds=10)
        waiting = send_once(pool, destination, now=now + timedelta(seconds=5))  # still backing off: no request
        assert waiting.sent == 0 and receiver.posts == 1
        again = send_once(pool, destination, now=now + timedelta(seconds=11))
        assert again.error and again.retry_in == timedelta(seconds=15)  # doubled, capped
        with pool.connection() as conn:
            state = forwarding.cursor(conn, destination.name)
            assert (state.chain_pos, state.failures, forwarding.backlog(conn, destination.name)) == (0, 2, 10)
        outcomes = drain(pool, destination, clock=lambda: now + timedelta(seconds=30))
        assert sum(o.sent for o in outcomes) == 10 and receiver.posts == 3
        assert [line["metadata"]["uid"] for line in receiver.lines] == [str(e.event_id) for e in first + second]
        later = events(3, start=200)
        write_batches(pool, [later])
        drain(pool, destination, clock=lambda: now + timedelta(seconds=31))
        assert [line["metadata"]["uid"] for line in receiver.lines][-3:] == [str(e.event_id) for e in later]
        assert len(receiver.lines) == 13  # nothing twice
        with pool.connection() as conn:
            state = forwarding.cursor(conn, destination.name)
            assert (state.failures, state.last_error, state.forwarded) == (0, None, 13)
    finally:
        receiver.close()


def test_a_batch_that_commits_late_is_not_skipped(pool, db_url):
    """Writer A takes its batch_seq first but commits last (its insert waits on another transaction's row);
    writer B commits in between. A cursor on batch_seq would skip A; the chain position does not."""
    import psycopg

    from storage.timescale.writer import insert_rows, row_of

    a_events, b_events = events(2), events(2, start=50)
    destination = Destination("late-check", HttpNdjson("http://127.0.0.1:9/unused"), max_events=100)
    # One committed event first, so the time range's chunk exists: otherwise the blocker's uncommitted
    # chunk creation would hold up B too, and nothing could commit out of order.
    write_batches(pool, [events(1, start=-60)])
    with pool.connection() as conn:
        done = forwarding.pending(conn, destination.name, max_events=100)
    forwarding.acknowledge(pool, destination.name, done.through, len(done.events))
    with psycopg.connect(db_url) as blocker:
        with blocker.cursor() as cur:
            insert_rows(cur, [row_of(a_events[0])])  # uncommitted: A's insert of the same key must wait
        taken = seq_taken(pool)
        writer_a = threading.Thread(target=write_batches, args=(pool, [a_events]))
        writer_a.start()
        deadline = time.monotonic() + 20
        while seq_taken(pool) <= taken and time.monotonic() < deadline:  # A has its batch_seq and is waiting
            time.sleep(0.05)
        write_batches(pool, [b_events])  # B: a later batch_seq, committed first
        with pool.connection() as conn:
            first = forwarding.pending(conn, destination.name, max_events=100)
        assert [e.event_id for e in first.events] == [e.event_id for e in b_events]
        forwarding.acknowledge(pool, destination.name, first.through, len(first.events))
        blocker.rollback()  # A's insert goes ahead, and A commits last
    writer_a.join(timeout=30)
    assert not writer_a.is_alive()
    with pool.connection() as conn:
        seqs = dict(conn.execute("SELECT event_id, batch_seq FROM audit_events").fetchall())
        second = forwarding.pending(conn, destination.name, max_events=100)
    assert seqs[a_events[0].event_id] < seqs[b_events[0].event_id]  # A's batch_seq is the older one
    assert [e.event_id for e in second.events] == [e.event_id for e in a_events]


def seq_taken(pool) -> int:
    """Batch numbers handed out so far (the sequence's last value; 0 before the first)."""
    with pool.connection() as conn:
        value, called = conn.execute("SELECT last_value, is_called FROM integrity_batch_seq").fetchone()
    return value if called else 0


def test_the_worker_job_forwards_to_the_configured_destinations_once_per_destination(pool, rsyslog, tmp_path):
    from auditwatch import settings as settings_mod
    from auditwatch.worker import JOBS, forward_kwargs
    from forwarder.jobs import LOCK_PREFIX, forward_job
    from storage.timescale.db import advisory_lock

    url, out = rsyslog
    receiver = Receiver(fail=0)
    try:
        settings = settings_mod.load(config_file=None, environ={
            "AUDITWATCH_DATA_DIR": str(tmp_path), "AUDITWATCH_FORWARD_SYSLOG_URL": url,
            "AUDITWATCH_FORWARD_SYSLOG_PAYLOAD": "cef", "AUDITWATCH_FORWARD_HTTP_URL": receiver.url})
        assert "forward" in {j[0] for j in JOBS}
        kwargs = forward_kwargs(settings)
        assert [d["name"] for d in kwargs["destinations"]] == ["syslog", "http"]
        sent = events(7)
        write_batches(pool, [sent[:3], sent[3:]])
        with pool.connection() as conn:  # another worker is sending to syslog right now
            conn.autocommit = True
            with advisory_lock(conn, LOCK_PREFIX + "syslog", wait=False) as held:
                assert held
                assert forward_job(pool, **kwargs) == {"http": 7}
            conn.autocommit = False
        assert forward_job(pool, **kwargs) == {"syslog": 7, "http": 0}
        assert len(received(out, 7)) == 7 and len(receiver.lines) == 7
        assert forward_job(pool, destinations=[]) == {}
    finally:
        receiver.close()
