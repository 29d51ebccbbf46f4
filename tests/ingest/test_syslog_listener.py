"""The syslog listener end to end: util-linux ``logger`` over UDP and TCP, TLS, framing, hostile input,
and every line of two real log files replayed over TCP into a real TimescaleDB."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme

from ingest.syslog import parse_file
from ingest.syslog.framing import FrameDecoder
from ingest.syslog.ingestor import SyslogIngestor
from ingest.syslog.listener import ListenerConfig, SyslogListener, server_ssl_context
from tests.ingest.test_syslog_parse import LOGHUB

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


@contextmanager
def running(listener: SyslogListener) -> Iterator[dict[str, int]]:
    """The listener on its own event loop thread, as `auditwatch syslog` runs it; stopped (drained) on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    ports = asyncio.run_coroutine_threadsafe(listener.start(), loop).result(10)
    try:
        yield ports
    finally:
        asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def count(conn, sql: str, *args) -> int:
    return conn.execute(sql, args).fetchone()[0]


@pytest.fixture
def ingestor(services):
    return SyslogIngestor(services.pipeline, services.pool)


def config(**changes) -> ListenerConfig:
    return ListenerConfig(**{"udp_port": 0, "tcp_port": 0, **changes})


# -- framing, sans-IO ---------------------------------------------------------------------------------

def test_octet_counting_and_newline_framing_mixed_and_split_anywhere():
    stream = b"11 <13>hello w" + b"orld\n<13>plain line\r\n5 abcde" + b"<13>last without newline"
    decoder = FrameDecoder(100)
    frames = []
    for i in range(len(stream)):  # one byte at a time: every split point
        frames += decoder.feed(stream[i:i + 1])
    frames += decoder.close()
    assert frames == [b"<13>hello w", b"orld", b"<13>plain line", b"abcde", b"<13>last without newline"]


def test_oversized_frames_are_skipped_and_the_stream_stays_in_step():
    decoder = FrameDecoder(16)
    frames = decoder.feed(b"99 " + b"x" * 99 + b"5 small" + b"y" * 40 + b"\nok line\n")
    assert frames == [b"small", b"ok line"]
    assert decoder.oversized == 2
    # A newline-framed line that never ends holds at most max_bytes, then is discarded to its newline.
    frames = decoder.feed(b"z" * 1000)
    assert frames == [] and len(decoder._buffer) == 0
    assert decoder.feed(b"zzz\nafter\n") == [b"after"]


# -- real senders -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("transport", ["--udp", "--tcp"])
@pytest.mark.parametrize("rfc", ["--rfc5424", "--rfc3164"])
def test_logger_sends_auth_lines_that_are_stored(services, ingestor, conn, transport, rfc):
    tag = uuid.uuid4().hex[:8]
    with running(SyslogListener(config(), ingestor)) as ports:
        port = ports["udp" if transport == "--udp" else "tcp"]
        for message, tag_name in [
            (f"Failed password for mallory{tag} from 203.0.113.9 port 4242 ssh2", "sshd"),
            (f"Accepted publickey for alice{tag} from 198.51.100.7 port 5151 ssh2", "sshd"),
            (f"   bob{tag} : TTY=pts/0 ; PWD=/root ; USER=root ; COMMAND=/usr/bin/id", "sudo"),
            (f"something no parser knows {tag}", "cron"),
        ]:
            subprocess.run(["logger", "--server", "127.0.0.1", "--port", str(port), transport, rfc,
                            "--tag", tag_name, "--id=4711", "-p", "authpriv.notice", message],
                           check=True, timeout=10)
        wait_for(lambda: count(conn, "SELECT count(*) FROM audit_events WHERE metadata->>'message' LIKE %s",
                               f"%{tag}%") == 4)
    rows = {r[0]: r[1:] for r in conn.execute(
        "SELECT event_type, outcome, user_id, host(source_ip), source, metadata FROM audit_events "
        "WHERE metadata->>'message' LIKE %s", (f"%{tag}%",)).fetchall()}
    assert rows["user_login"][:4] in {("failure", f"mallory{tag}", "203.0.113.9", "sshd"),
                                      ("success", f"alice{tag}", "198.51.100.7", "sshd")}
    logins = conn.execute("SELECT outcome, user_id FROM audit_events WHERE event_type = 'user_login' AND "
                          "metadata->>'message' LIKE %s ORDER BY outcome", (f"%{tag}%",)).fetchall()
    assert logins == [("failure", f"mallory{tag}"), ("success", f"alice{tag}")]
    assert rows["sudo"][:2] == ("success", f"bob{tag}") and rows["sudo"][4]["command"] == "/usr/bin/id"
    assert rows["syslog_message"][1].startswith("host:")
    meta = rows["syslog_message"][4]
    assert meta["facility"] == "authpriv" and meta["severity"] == "notice" and meta["pid"] == "4711"
    assert meta["rfc"] == rfc.removeprefix("--rfc")
    # R4: the accounts were registered as people, the host as a service.
    kinds = dict(conn.execute("SELECT user_id, kind FROM users WHERE user_id IN (%s, %s)",
                              (f"alice{tag}", rows["syslog_message"][1])).fetchall())
    assert kinds == {f"alice{tag}": "human", rows["syslog_message"][1]: "service"}


def test_tls_listener(services, ingestor, conn, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    context = server_ssl_context(str(tmp_path / "server.pem"), str(tmp_path / "server.pem"))
    with running(SyslogListener(config(udp_port=None, tcp_port=None, tls_port=0, ssl_context=context),
                                ingestor)) as ports:
        client = ssl.create_default_context()
        ca.configure_trust(client)
        line = b"<38>1 2026-11-28T19:59:00Z tlshost sshd 9 - - Invalid user tlsprobe from 192.0.2.44 port 1\n"
        with socket.create_connection(("127.0.0.1", ports["tls"])) as raw, \
                client.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(f"{len(line) - 1} ".encode() + line[:-1] + line)
        # A client that speaks plain TCP to the TLS port is refused without harm.
        with socket.create_connection(("127.0.0.1", ports["tls"])) as plain:
            plain.sendall(line)
            plain.settimeout(5)
            with pytest.raises((ConnectionError, TimeoutError, OSError)):
                assert plain.recv(100) == b""
                raise ConnectionError
        wait_for(lambda: count(conn, "SELECT count(*) FROM audit_events WHERE user_id = 'tlsprobe'") == 2)
    # Both copies (octet-counted, then newline-framed) are the same line from the same session: the second is
    # occurrence 1 of that line, so both are kept.
    assert count(conn, "SELECT count(*) FROM audit_events WHERE resource_id = 'tlshost'") == 2


def test_the_listener_is_ready_only_while_its_ports_are_bound(ingestor):
    """The process's /readyz asks ``not_listening``: its ops port comes up before the ports are bound, and a
    sender told "ready" then lost its UDP datagrams (seen in the Prometheus test: 0 of 21 received)."""
    listener = SyslogListener(config(), ingestor)
    assert listener.not_listening() is not None
    with running(listener):
        assert listener.not_listening() is None
    assert "stopping" in listener.not_listening()


def test_hostile_input_on_every_transport(services, ingestor, conn):
    listener = SyslogListener(config(max_message_bytes=512, max_connections=3), ingestor)
    with running(listener) as ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"\x00\xff\xfe<13>binary \x01\x02 junk", ("127.0.0.1", ports["udp"]))
            udp.sendto(b"A" * 5000, ("127.0.0.1", ports["udp"]))  # cut to max_message_bytes, kept
            udp.sendto(b"\n\n", ("127.0.0.1", ports["udp"]))  # nothing in it: ignored
        with socket.create_connection(("127.0.0.1", ports["tcp"])) as tcp:
            tcp.sendall(b"999999999 " + b"x" * 2000 + b"\n")  # announces 1 GB: skipped, never buffered
        with socket.create_connection(("127.0.0.1", ports["tcp"])) as tcp:
            tcp.sendall(b"B" * 4000 + b"\n<13>Nov 28 10:00:00 h app: after the flood\n")
        wait_for(lambda: listener.stats.handled >= 3)
        # Connections over the limit are closed at once.
        held = [socket.create_connection(("127.0.0.1", ports["tcp"])) for _ in range(3)]
        wait_for(lambda: len(listener._connections) == 3)
        extra = socket.create_connection(("127.0.0.1", ports["tcp"]))
        extra.settimeout(5)
        assert extra.recv(10) == b""
        for s in [*held, extra]:
            s.close()
    assert listener.stats.oversized >= 3
    assert listener.stats.refused_connections == 1
    messages = [r[0] for r in conn.execute("SELECT metadata->>'message' FROM audit_events "
                                           "WHERE event_type = 'syslog_message'").fetchall()]
    assert "after the flood" in messages
    assert any(m.startswith("#000") for m in messages)  # NUL escaped, stored
    assert any(m.startswith("AAAA") for m in messages)


def test_tcp_back_pressure_holds_lines_until_the_store_recovers(services, ingestor, conn):
    """While storing fails, the queue fills and the TCP sender is throttled; nothing is lost."""
    healthy = threading.Event()

    def flaky(batch):
        if not healthy.is_set():
            raise ConnectionError("database down (simulated outage of the store)")
        return ingestor(batch)

    listener = SyslogListener(config(queue_lines=50, batch_lines=10), flaky, retry_delay=0.05)
    lines = [f"<13>Nov 28 10:00:00 bp app: line {i} {'x' * 1000}\n".encode() for i in range(3000)]
    with running(listener) as ports:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
        sock.connect(("127.0.0.1", ports["tcp"]))
        sock.setblocking(False)
        payload = b"".join(lines)
        sent = 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and sent < len(payload):
            try:
                sent += sock.send(payload[sent:])
            except BlockingIOError:
                time.sleep(0.01)
        assert sent < len(payload), "the sender was never held back"
        # Held in memory: the queue, the batches being retried (store_batches of them), and the one line
        # waiting to get into the queue.
        assert listener.stats.received <= 50 + listener.config.store_batches * 10 + 1
        healthy.set()
        sock.setblocking(True)
        sock.sendall(payload[sent:])
        sock.close()
        wait_for(lambda: listener.stats.handled == 3000, 60)
    assert listener.stats.failed_batches > 0
    assert count(conn, "SELECT count(*) FROM audit_events WHERE resource_id = 'bp'") == 3000


def test_lines_that_used_to_stall_the_listener_are_stored_with_the_lines_around_them(services, ingestor, conn):
    """Each of these raised out of parsing, and the listener retried its batch for ever (issue: one line
    stopped syslog ingestion for good). Now each is an event, and the lines around it are stored too."""
    from tests.ingest.test_syslog_parse import POISON

    listener = SyslogListener(config(batch_lines=50), ingestor, fallback=ingestor.raw, retry_delay=0.05)
    lines = [f"<13>Nov 28 10:00:00 st app: before {i}" for i in range(5)] + POISON + \
            [f"<13>Nov 28 10:00:00 st app: after {i}" for i in range(5)]
    with running(listener) as ports:
        with socket.create_connection(("127.0.0.1", ports["tcp"])) as tcp:
            tcp.sendall("".join(f"{len(line.encode())} {line}" for line in lines).encode())
        wait_for(lambda: listener.stats.handled == len(lines), 30)
    assert listener.stats.failed_batches == 0 and listener.stats.unstorable == 0
    assert count(conn, "SELECT count(*) FROM audit_events WHERE metadata->>'message' LIKE 'after %%'") == 5
    assert count(conn, "SELECT count(*) FROM audit_events WHERE metadata->>'peer' = '127.0.0.1'") >= len(lines) - 1


def test_a_line_the_store_refuses_is_isolated_and_kept_raw_while_its_batch_is_stored(services, ingestor, conn):
    """A store failure that is not an outage (a bug one line trips) splits the batch until that line is
    alone; it is then stored raw with the reason, and every other line is stored as parsed."""
    def buggy(batch):
        if any("TRIP" in r.line for r in batch):
            raise ValueError("a bug this one line trips")
        return ingestor(batch)

    listener = SyslogListener(config(batch_lines=64), buggy, fallback=ingestor.raw, retry_delay=0.01)
    lines = [f"Nov 28 10:00:00 iso sshd[1]: Failed password for u{i} from 10.9.0.{i} port 22 ssh2"
             for i in range(40)]
    lines[17] = "Nov 28 10:00:00 iso app: TRIP"
    with running(listener) as ports:
        with socket.create_connection(("127.0.0.1", ports["tcp"])) as tcp:
            tcp.sendall("".join(line + "\n" for line in lines).encode())
        wait_for(lambda: listener.stats.handled == 40, 30)
    assert listener.stats.split_batches >= 1 and listener.stats.fallback_lines == 1
    assert listener.stats.unstorable == 0
    assert count(conn, "SELECT count(*) FROM audit_events WHERE resource_id = 'iso' AND event_type = 'user_login'") == 39
    reason = conn.execute("SELECT metadata->>'parse_error' FROM audit_events WHERE metadata->>'message' = %s",
                          (lines[17],)).fetchone()
    assert reason == ("ValueError: a bug this one line trips",)


# -- two real log files through the listener ----------------------------------------------------------

@pytest.mark.parametrize(("name", "pinned"), [
    ("OpenSSH_2k.log", {("user_login", "failure"): 524, ("user_login", "success"): 1,
                        ("ssh_invalid_user", "failure"): 113, ("ssh_break_in_attempt", "unknown"): 85,
                        ("auth_failure", "failure"): 504, ("syslog_message", "unknown"): 773}),
    ("Linux_2k.log", {("auth_failure", "failure"): 490, ("su", "success"): 86,
                      ("syslog_message", "unknown"): 1424}),
])
def test_loghub_file_replayed_over_tcp_is_stored_once_with_pinned_counts(services, conn, name, pinned):
    path = Path(LOGHUB) / name
    ingestor = SyslogIngestor(services.pipeline, services.pool)
    frozen = SyslogListener(config(udp_port=None), ingestor, now=lambda: NOW)
    payload = path.read_bytes()
    with running(frozen) as ports:
        for _ in range(2):  # sent twice: the second copy is all duplicates (R5)
            with socket.create_connection(("127.0.0.1", ports["tcp"])) as tcp:
                tcp.sendall(payload)
            wait_for(lambda: frozen.stats.handled in (2000, 4000), 60)
        wait_for(lambda: frozen.stats.handled == 4000, 60)
    stored = Counter(dict(((t, o), n) for t, o, n in conn.execute(
        "SELECT event_type, outcome, count(*) FROM audit_events GROUP BY 1, 2").fetchall()))
    print(f"\n{name}: {dict(stored)}")
    assert stored == Counter(pinned)
    assert ingestor.totals == Counter({"created": 2000, "duplicate": 2000})
    # The listener and the offline parser agree event by event.
    offline = {e["event_id"] for e in parse_file(path, now=NOW)}
    assert {r[0] for r in conn.execute("SELECT event_id::text FROM audit_events").fetchall()} == offline


def test_host_policy_attributes_unregistered_accounts_to_the_host(services, users, conn):
    from ingest.syslog.listener import Received

    users("known-admin")
    ingestor = SyslogIngestor(services.pipeline, services.pool, unknown_users="host")
    batch = [Received(f"<38>Nov 28 10:00:0{i} bastion sshd[7]: Failed password for {name} from 192.0.2.{i} port 22 "
                      "ssh2", "192.0.2.250", 0, NOW) for i, name in enumerate(["known-admin", "nobody-here"])]
    result = ingestor(batch)
    assert (result.accepted, result.rejected) == (2, 0)
    rows = conn.execute("SELECT user_id, metadata->>'account' FROM audit_events ORDER BY user_id").fetchall()
    assert rows == [("host:bastion", "nobody-here"), ("known-admin", None)]
    assert conn.execute("SELECT count(*) FROM users WHERE user_id = 'nobody-here'").fetchone()[0] == 0
    assert conn.execute("SELECT kind FROM users WHERE user_id = 'host:bastion'").fetchone() == ("service",)
    # The same batch again (a retried store): the same ids, so duplicates, not new events.
    assert ingestor(batch).duplicates == 2


def test_a_udp_burst_beyond_the_queue_waits_in_the_kernel_buffer_instead_of_being_dropped():
    """A full queue pauses reading the UDP socket: the burst waits in the kernel's receive buffer, so nothing is
    dropped in the listener, and what the kernel itself would drop is counted (never silent)."""
    handled: list[str] = []
    lock = threading.Lock()

    def slow(batch):
        time.sleep(0.02)  # a store slower than the sender
        with lock:
            handled.extend(r.line for r in batch)

    listener = SyslogListener(config(queue_lines=20, batch_lines=5), slow, retry_delay=0.05)
    sent = [f"<13>Nov 28 10:00:00 burst app: datagram {i}" for i in range(400)]
    with running(listener) as ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for line in sent:
                s.sendto(line.encode(), ("127.0.0.1", ports["udp"]))
        wait_for(lambda: len(handled) + listener.refresh_kernel_drops() >= len(sent), 60)
    assert listener.stats.dropped == 0
    assert listener.stats.udp_kernel_dropped == 0  # 400 short datagrams fit the raised buffer
    assert sorted(handled) == sorted(sent)


# -- store workers in other processes --------------------------------------------------------------------

def _store_in_worker(batch):
    """A store worker's handle (module level, so a process pool can pickle it): refuses a batch holding a TRIP
    line, and dies outright on the first DIE line it meets (a marker file records that it died once)."""
    import os

    from ingest.syslog.listener import StoreFailed
    if any("DIE" in r.line for r in batch) and not os.path.exists(os.environ["AW_TEST_DIE_MARKER"]):
        Path(os.environ["AW_TEST_DIE_MARKER"]).write_text("died")
        os._exit(9)  # as a worker killed by the OOM killer: no exception, no reply
    if any("TRIP" in r.line for r in batch):
        raise StoreFailed.of(ValueError("a bug this one line trips"))
    return [("parsed", r.line) for r in batch]


def _raw_in_worker(batch, reason):
    return [("raw", r.line, f"{reason.kind}: {reason}") for r in batch]


def test_store_workers_in_other_processes_survive_a_dead_worker_and_isolate_a_refused_line(tmp_path, monkeypatch):
    """With ``syslog_processes`` ≥ 2 the listener hands batches to a process pool. A worker that dies mid-batch
    breaks the pool: a new one is started and the batch retried, so no line is lost; a line the store refuses is
    split out and kept raw with the reason's own name, carried across the process boundary."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    monkeypatch.setenv("AW_TEST_DIE_MARKER", str(tmp_path / "died"))
    pools: list[ProcessPoolExecutor] = []

    def new_pool() -> ProcessPoolExecutor:
        pools.append(ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")))
        return pools[-1]

    got: list = []
    listener = SyslogListener(config(batch_lines=16, store_batches=4), _store_in_worker, fallback=_raw_in_worker,
                              executor=new_pool, stored=got.extend, retry_delay=0.05)
    lines = [f"<13>Nov 28 10:00:00 pw app: line {i}" for i in range(200)]
    lines[60] = "<13>Nov 28 10:00:00 pw app: DIE"
    lines[150] = "<13>Nov 28 10:00:00 pw app: TRIP"
    with running(listener) as ports:
        with socket.create_connection(("127.0.0.1", ports["tcp"])) as tcp:
            tcp.sendall("".join(line + "\n" for line in lines).encode())
        wait_for(lambda: listener.stats.handled == 200, 60)
    assert (tmp_path / "died").read_text() == "died"
    assert len(pools) >= 2 and listener.stats.failed_batches >= 1  # the broken pool was replaced, the batch retried
    parsed = [line for kind, line, *_ in got if kind == "parsed"]
    raw = [entry for entry in got if entry[0] == "raw"]
    assert sorted(parsed) == sorted(lines[:150] + lines[151:])  # every other line once (DIE's batch retried whole)
    assert raw == [("raw", lines[150], "ValueError: a bug this one line trips")]
    assert listener.stats.fallback_lines == 1 and listener.stats.unstorable == 0


def _killed_by(batch):
    """A store worker's handle that dies on every KILL line, as a crash or an out-of-memory kill would, each time
    any worker meets it."""
    import os

    if any("KILL" in r.line for r in batch):
        os._exit(9)
    return [("parsed", r.line) for r in batch]


def _raw_killed_by(batch, reason):
    """The fallback: a KILL_ALSO_RAW line kills it too."""
    import os

    if any("KILL_ALSO_RAW" in r.line for r in batch):
        os._exit(9)
    return [("raw", r.line, reason.__class__.__name__) for r in batch]


def test_a_line_that_kills_every_store_worker_is_isolated_instead_of_stalling_the_listener(caplog):
    """A worker death was transient whatever caused it, so a line that kills each worker that parses it had its
    batch retried for ever and held the listener. Now a batch in flight at ``split_after_failures`` deaths is
    split like a failing one: the killer line is kept raw with the reason, a line that kills the fallback too is
    logged and counted unstorable, and every other line is stored."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pools: list[ProcessPoolExecutor] = []

    def new_pool() -> ProcessPoolExecutor:
        pools.append(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))
        return pools[-1]

    got: list = []
    listener = SyslogListener(config(batch_lines=4, store_batches=2, split_after_failures=2), _killed_by,
                              fallback=_raw_killed_by, executor=new_pool, stored=got.extend, retry_delay=0.05)
    lines = [f"<13>Nov 28 10:00:00 pw app: line {i}" for i in range(32)]
    lines[20] = "<13>Nov 28 10:00:00 pw app: KILL"
    lines[25] = "<13>Nov 28 10:00:00 pw app: KILL_ALSO_RAW"
    with caplog.at_level(logging.CRITICAL, logger="ingest.syslog.listener"), running(listener) as ports:
        with socket.create_connection(("127.0.0.1", ports["tcp"])) as tcp:
            tcp.sendall("".join(line + "\n" for line in lines).encode())
        wait_for(lambda: listener.stats.handled + listener.stats.unstorable == 32, 240)
    for pool in pools:
        pool.shutdown(wait=False, cancel_futures=True)
    parsed = [line for kind, line, *_ in got if kind == "parsed"]
    raw = {line: why for kind, line, *why in got if kind == "raw"}
    assert raw.get(lines[20]) == ["BrokenProcessPool"]
    assert listener.stats.unstorable == 1
    assert any("KILL_ALSO_RAW" in r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL)
    others = [line for i, line in enumerate(lines) if i not in (20, 25)]
    assert sorted(parsed + [line for line in raw if line != lines[20]]) == sorted(others)  # each once
    assert lines[25] not in parsed and lines[25] not in raw


def test_the_shutdown_gives_up_on_a_task_that_will_not_stop_and_says_where_it_waits(caplog):
    """``asyncio.run`` waited for ever on a task that outlived its cancellation (a CI run stuck 29 minutes):
    the listener's clean-up gives it a bounded time, logs it with its stack, and closes the loop."""
    import asyncio

    from ingest.syslog.listener import _close

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # swallows every cancellation

    async def polite() -> None:
        await asyncio.sleep(3600)

    loop = asyncio.new_event_loop()
    tasks = [loop.create_task(stubborn()), loop.create_task(polite())]
    loop.run_until_complete(asyncio.sleep(0))
    with caplog.at_level("ERROR", logger="ingest.syslog.listener"):
        _close(loop, timeout=0.2)
    assert loop.is_closed()
    assert tasks[1].cancelled() and not tasks[0].done()
    (record,) = [r for r in caplog.records if "did not stop within" in r.getMessage()]
    assert "stubborn" in record.getMessage()


def test_a_shutdown_drains_a_closing_sender_and_keeps_only_whole_lines_of_an_open_one(caplog):
    """Stopping used to cancel every connection at once: lines a sender had already handed to TCP, still in the
    listener's buffers behind a slow store, were lost. Now a sender that finishes has every line stored, and a
    relay that keeps its connection open has every complete line stored and its unfinished last one dropped and
    logged, never stored truncated; an idle connection does not hold the stop for ``drain_seconds``."""
    stored: list[str] = []
    lock = threading.Lock()

    def slow(batch):
        time.sleep(0.02)  # slower than the sender: the queue fills and the connection's lines wait in buffers
        with lock:
            stored.extend(item.line for item in batch)

    listener = SyslogListener(config(udp_port=None, queue_lines=50, batch_lines=10, drain_seconds=30), slow)
    closing = [f"<13>Nov 28 10:00:00 h app: closing {i}" for i in range(1500)]
    open_lines = [f"<13>Nov 28 10:00:00 h app: open {i}" for i in range(20)]
    with caplog.at_level("WARNING", logger="ingest.syslog.listener"):
        with running(listener) as ports:
            relay = socket.create_connection(("127.0.0.1", ports["tcp"]))
            relay.sendall("\n".join(open_lines).encode() + b"\n<13>Nov 28 10:00:00 h app: unfinish")
            wait_for(lambda: len(stored) >= 20)
            sender = socket.create_connection(("127.0.0.1", ports["tcp"]))
            sender.sendall("\n".join(closing).encode() + b"\n")
            sender.close()
            wait_for(lambda: listener.stats.received >= 30)
            began = time.monotonic()
            assert len(stored) < len(closing), "the store kept up: nothing was waiting in the buffers"
        stopped_in = time.monotonic() - began
        relay.close()
    assert sorted(stored) == sorted(open_lines + closing)
    assert listener.stats.cut_partial_lines == 1
    assert any("in the middle of a line" in r.getMessage() for r in caplog.records)
    # 1,500 lines at 10 per 20 ms batch take about 1.5 s to store; the idle relay did not hold the stop for 30 s.
    assert stopped_in < 15, stopped_in


@pytest.mark.parametrize("late", [0.1, 1.0])
def test_a_connection_accepted_just_before_the_stop_is_drained_or_closed_unread_never_left_blocked(late, caplog):
    """The CI hang of the store-process test: a connection accepted as the SIGTERM arrived started its task after
    the stop had looked at the open connections, read its lines after the queue was closed, and blocked on the
    full queue for ever (asyncio.run waited on it). A task that starts within the stop's first QUIET_SECONDS is
    drained like any other; one that starts later is closed unread and logged, and blocks nothing."""
    stored: list[str] = []
    listener = SyslogListener(config(udp_port=None, queue_lines=20, batch_lines=10, drain_seconds=0.5),
                              lambda batch: stored.extend(item.line for item in batch))
    handler = listener._on_tcp
    finished = threading.Event()

    async def starts_late(reader, writer):  # the accepted connection's task gets to run only after `late` s
        await asyncio.sleep(late)
        try:
            await handler(reader, writer)
        finally:
            finished.set()

    listener._on_tcp = starts_late
    lines = [f"<13>Nov 28 10:00:00 h app: late {i}" for i in range(200)]  # more than the queue holds
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level("WARNING", logger="ingest.syslog.listener"):
            ports = asyncio.run_coroutine_threadsafe(listener.start(), loop).result(10)
            with socket.create_connection(("127.0.0.1", ports["tcp"])) as sender:
                sender.sendall("\n".join(lines).encode() + b"\n")
            time.sleep(0.02)  # accepted by the loop, its task not started yet
            asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(10)
            assert finished.wait(late + 5), "the late connection's task is still running after the stop"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    if late < 0.2:
        assert sorted(stored) == sorted(lines)
    else:
        assert stored == [] and listener.stats.refused_connections == 1
        assert any("arrived as the listener stopped; closed unread" in r.getMessage() for r in caplog.records)
