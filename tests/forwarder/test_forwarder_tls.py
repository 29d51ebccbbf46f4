"""The forwarder's syslog over TLS (RFC 5425) against a real TLS receiver: Auditwatch's own syslog listener in
its TLS mode, with a throwaway CA (trustme). Every forwarded event arrives once, parsed as RFC 5424; a receiver
whose certificate the forwarder cannot verify gets nothing and the position is kept for the retry."""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import trustme

from auditwatch import settings as settings_mod
from forwarder.outbox import Destination, drain
from forwarder.transports import SyslogTcp
from ingest.syslog.ingestor import SyslogIngestor
from ingest.syslog.listener import ListenerConfig, SyslogListener, server_ssl_context
from storage.timescale import forwarding
from tests.conftest import fresh_database, opened_services
from tests.forwarder.test_forwarder import T0, events, write_batches
from tests.ingest.test_syslog_listener import count, running

# What the listener stored of the forwarded messages (APP-NAME auditwatch): the RFC 5424 fields it parsed.
FORWARDED = "FROM audit_events WHERE event_type = 'syslog_message' AND metadata->>'app' = 'auditwatch'"
RECEIVED = "SELECT metadata->>'app', resource_id, metadata->>'msgid', metadata->>'message' " + FORWARDED
RECEIVED_COUNT = "SELECT count(*) " + FORWARDED


def wait_for_count(conn, expected: int, timeout: float = 60.0) -> int:
    """The receiver's stored count once it reaches ``expected`` (or what it was at the timeout)."""
    deadline = time.monotonic() + timeout
    while (stored := count(conn, RECEIVED_COUNT)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return stored


@dataclass
class Receiver:
    ca: trustme.CA
    url: str  # tls://127.0.0.1:<port>
    conn: psycopg.Connection  # the receiver's own database (not the sender's: it would forward them back)
    tmp: Path


@pytest.fixture
def tls_receiver(server_url, template_db, tmp_path):
    """Our syslog listener on a loopback TLS port, with a certificate for 127.0.0.1 from a fresh CA, storing
    into a database of its own."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    with fresh_database(server_url, template_db) as url:
        receiver_settings = settings_mod.load(config_file=None, environ={}, overrides={
            "database_url": url, "data_dir": str(tmp_path / "receiver"), "pool_min": 1, "pool_max": 4})
        with opened_services(receiver_settings) as services, psycopg.connect(url, autocommit=True) as conn:
            listener = SyslogListener(ListenerConfig(udp_port=None, tcp_port=None, tls_port=0,
                                                     ssl_context=server_ssl_context(str(pem), str(pem))),
                                      SyslogIngestor(services.pipeline, services.pool))
            with running(listener) as ports:
                yield Receiver(ca, f"tls://127.0.0.1:{ports['tls']}", conn, tmp_path)


@pytest.mark.parametrize("payload", ["cef", "ocsf"])
def test_tls_receiver_gets_every_event_once(pool, tls_receiver, payload):
    ca, url, conn = tls_receiver.ca, tls_receiver.url, tls_receiver.conn
    client = ssl.create_default_context()
    ca.configure_trust(client)
    sent = events(9)
    write_batches(pool, [sent[:4], sent[4:]])
    destination = Destination(f"tls-{payload}", SyslogTcp(url, tls=client), payload=payload, max_events=5)
    outcomes = drain(pool, destination, clock=lambda: T0)
    destination.transport.close()
    assert [o.sent for o in outcomes if o.sent] == [4, 5] and all(o.error is None for o in outcomes)
    assert wait_for_count(conn, len(sent)) == len(sent)
    rows = conn.execute(RECEIVED).fetchall()
    assert len(rows) == len(sent)  # each once
    assert {(app, host) for app, host, _, _ in rows} == {("auditwatch", "auditwatch")}  # APP-NAME, HOSTNAME
    assert sorted(msgid for _, _, msgid, _ in rows) == sorted(e.event_type for e in sent)  # MSGID
    messages = [message.removeprefix("\ufeff") for *_, message in rows]
    if payload == "cef":
        assert all(m.startswith("CEF:0|Auditwatch|Auditwatch|") for m in messages)
        ids = sorted(m.split("externalId=")[1].split(" ")[0] for m in messages)
    else:
        # Parsed back whole: the receiver's card masking once took an epoch-millisecond `time` or an event id's
        # dash-joined digits for a card, one run in ten (storage.redaction: issuer digits, UUIDs skipped).
        parsed = [json.loads(m) for m in messages]
        assert all(p["class_uid"] and isinstance(p["time"], int) for p in parsed)
        ids = sorted(p["metadata"]["uid"] for p in parsed)
    assert ids == sorted(str(e.event_id) for e in sent)
    with pool.connection() as c:
        assert forwarding.backlog(c, destination.name) == 0
        assert forwarding.cursor(c, destination.name).forwarded == len(sent)


def test_an_unverifiable_receiver_gets_nothing_and_the_position_is_kept(pool, tls_receiver):
    url, conn = tls_receiver.url, tls_receiver.conn
    sent = events(3)
    write_batches(pool, [sent])
    untrusting = ssl.create_default_context()  # the system CAs: the throwaway CA is not among them
    destination = Destination("tls-untrusted", SyslogTcp(url, tls=untrusting), payload="cef")
    outcomes = drain(pool, destination, clock=lambda: T0)
    destination.transport.close()
    assert outcomes[-1].sent == 0 and "CERTIFICATE_VERIFY_FAILED" in (outcomes[-1].error or "")
    assert outcomes[-1].retry_in is not None and outcomes[-1].retry_in.total_seconds() > 0
    with pool.connection() as c:
        assert forwarding.backlog(c, destination.name) == len(sent)  # all still to send
        assert forwarding.cursor(c, destination.name).forwarded == 0
    assert count(conn, RECEIVED_COUNT) == 0


def test_the_worker_job_sends_over_tls_trusting_ssl_cert_file(pool, tls_receiver, monkeypatch):
    """The configured path (`forward_syslog_url = tls://...`) uses the default trust store, which OpenSSL
    lets SSL_CERT_FILE replace: how an operator trusts a private CA today."""
    from forwarder.jobs import forward_job

    url, conn = tls_receiver.url, tls_receiver.conn
    bundle = tls_receiver.tmp / "ca.pem"
    tls_receiver.ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    sent = events(5)
    write_batches(pool, [sent])
    destinations = [{"name": "syslog", "kind": "syslog", "url": url, "payload": "cef", "max_events": 100}]
    assert forward_job(pool, destinations=destinations) == {"syslog": 5}
    assert wait_for_count(conn, 5) == 5
    messages = [m.removeprefix("\ufeff") for *_, m in conn.execute(RECEIVED).fetchall()]
    assert sorted(m.split("externalId=")[1].split(" ")[0] for m in messages) == sorted(str(e.event_id) for e in sent)
