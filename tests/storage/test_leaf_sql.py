"""The leaf hash in SQL, both forms (portable and UTF-8 session), against the Python reference
(``storage.integrity.chain``) on hostile values: NULLs, empty strings, non-ASCII and control characters,
IPv6 and /mask addresses, nested and unicode-escaped jsonb, extreme timestamps."""

from __future__ import annotations

import os
import struct
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql

from storage.integrity import chain
from storage.timescale import sealing, verify_rows
from storage.timescale.writer import EventWriter
from tests.conftest import _drop, _url_with_db
from tests.storage.conftest import T0

TEXTS = ["", "é ü 日本 🚀", "e\u0301 combining", "ctl \x01\t\n\x7f", "'quote\" \\back", "ß" * 300, "plain"]
IPS = [None, "81.2.69.142", "0.0.0.0", "10.1.2.3/8", "10.1.2.0/24", "2001:db8::1", "::ffff:1.2.3.4",
       "2001:db8:0:0:1:0:0:1", "2001:db8::/32", "::", "fe80::1%eth0"]
METADATA = [
    '{}', '[]', '"scalar"', 'null', '{"a": {"b": [1, 2.0, null, true, {"c": "日本"}]}, "": ""}',
    '{"esc": "\\u00e9\\ud83d\\ude80\\u0001\\"\\\\", "\\u00fc": 1}', '{"n": -0.0, "m": 1.50, "e": 1e-7}',
    '{"deep": [[[[[[{"x": []}]]]]]]}',
]
# timestamptz's binary form (microseconds since 2000-01-01) for times Python's datetime cannot hold, too.
EXTREMES = ["0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00", "1969-12-31 23:59:59.999999+00",
            "2000-01-01 00:00:00+00", "1999-12-31 23:59:59.999999+00", "4000-01-01 00:00:00.000001+00 BC",
            "200000-01-01 00:00:00+00"]
_ROW = ('SELECT event_id::pg_catalog.text, pg_catalog.timestamptz_send("timestamp"), event_type, user_id, outcome, '
        "source, pg_catalog.host(source_ip) OPERATOR(pg_catalog.||) '/' OPERATOR(pg_catalog.||) "
        "pg_catalog.masklen(source_ip)::pg_catalog.text, source_country, source_asn, user_agent, resource_id, "
        'metadata::pg_catalog.text, pg_catalog.timestamptz_send(received_at), {leaf} FROM audit_events '
        'ORDER BY event_id')


def _micros(sent: bytes) -> int:
    return struct.unpack(">q", sent)[0] + chain.PG_EPOCH_MICROS


def _reference(row: tuple) -> bytes:
    names = ("event_id", "timestamp", *chain.TEXT_FIELDS, "received_at")
    values = dict(zip(names, row[:13], strict=True))
    values["timestamp"], values["received_at"] = _micros(values["timestamp"]), _micros(values["received_at"])
    return chain.leaf(values)


def _insert_hostile(conn: psycopg.Connection) -> int:
    n = 0
    for i in range(max(len(TEXTS), len(IPS), len(METADATA), len(EXTREMES)) * 2):
        text = TEXTS[i % len(TEXTS)]
        ip = IPS[i % len(IPS)]
        if ip and "%" in ip:  # a zone id is not an inet: PostgreSQL refuses it, the row is skipped
            with pytest.raises(psycopg.errors.InvalidTextRepresentation):
                conn.execute("SELECT %s::inet", (ip,))
            continue
        nulls = i % 2 == 1
        conn.execute(
            'INSERT INTO audit_events (event_id, "timestamp", event_type, user_id, outcome, source, source_ip, '
            "source_country, source_asn, user_agent, resource_id, metadata, received_at) VALUES "
            "(%s, %s::timestamptz, %s, %s, %s, %s, %s::inet, %s, %s, %s, %s, %s::jsonb, %s::timestamptz)",
            (uuid.uuid4(), EXTREMES[i % len(EXTREMES)], text or "t", text, "failure" if nulls else "success",
             None if nulls else text, ip, None if nulls else "", None if nulls else "AS1 ø", text,
             None if nulls else "", METADATA[i % len(METADATA)], EXTREMES[(i + 3) % len(EXTREMES)]))
        n += 1
    return n


def test_both_sql_forms_equal_the_python_reference_on_hostile_values(conn):
    n = _insert_hostile(conn)
    conn.execute("SET client_encoding = 'LATIN1'")  # the session's own setting must not matter after the pin
    with conn.transaction():
        assert verify_rows.pin_utf8(conn)
        portable = conn.execute(sql.SQL(_ROW).format(leaf=sealing.leaf_sql())).fetchall()
        fast = conn.execute(sql.SQL(_ROW).format(leaf=sealing.leaf_sql(utf8_session=True))).fetchall()
        same_ip = conn.execute("SELECT pg_catalog.bool_and(pg_catalog.text(source_ip) = pg_catalog.host(source_ip) "
                               "|| '/' || pg_catalog.masklen(source_ip)::text) FROM audit_events").fetchone()[0]
    assert conn.execute("SHOW client_encoding").fetchone()[0] == "LATIN1"  # the pin ended with the transaction
    assert len(portable) == len(fast) == n and same_ip
    assert {bytes(r[13]) for r in portable} == {bytes(r[13]) for r in fast}
    for row, quick in zip(portable, fast, strict=True):
        assert bytes(row[13]) == _reference(row) == bytes(quick[13]), row
    # every hostile kind was really stored and hashed
    stored_ips = {r[6] for r in portable}
    assert {None, "10.1.2.3/8", "2001:db8::/32", "::ffff:1.2.3.4/128", "2001:db8::1:0:0:1/128"} <= stored_ips
    assert {_micros(r[1]) for r in portable} >= {chain.micros(datetime(1, 1, 1, tzinfo=UTC)),
                                                  chain.micros(datetime(2000, 1, 1, tzinfo=UTC))}
    assert any(r[3] == "" for r in portable) and any(r[5] is None for r in portable)


def test_the_utf8_form_is_wrong_without_the_pin_which_is_why_verify_checks_it(conn):
    conn.execute("INSERT INTO audit_events (event_id, \"timestamp\", event_type, user_id, outcome, received_at) "
                 "VALUES (%s, %s, 'user_login', 'é ü', 'success', %s)", (uuid.uuid4(), T0, T0))
    conn.execute("SET client_encoding = 'LATIN1'")
    row = conn.execute(sql.SQL(_ROW).format(leaf=sealing.leaf_sql(utf8_session=True))).fetchone()
    assert not conn.execute(sealing.UTF8_SESSION_CHECK).fetchone()[0]
    assert bytes(row[13]) != _reference(row)


def test_a_database_in_another_encoding_keeps_the_portable_form(server_url):
    name = f"aw_latin1_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
                      .format(sql.Identifier(name)))
    try:
        with psycopg.connect(_url_with_db(server_url, name)) as conn:
            conn.execute('CREATE TABLE audit_events (event_id uuid, "timestamp" timestamptz, event_type text, '
                         "user_id text, outcome text, source text, source_ip inet, source_country text, "
                         "source_asn text, user_agent text, resource_id text, metadata jsonb, received_at timestamptz)")
            conn.execute("INSERT INTO audit_events VALUES (%s, %s, 'user_login', 'café ü', 'success', NULL, "
                         "'10.0.0.1', '', NULL, 'Zürich', NULL, '{\"ß\": \"é\"}', %s)", (uuid.uuid4(), T0, T0))
            assert not verify_rows.pin_utf8(conn)  # so verify reads with the portable form
            row = conn.execute(sql.SQL(_ROW).format(leaf=sealing.leaf_sql())).fetchone()
            assert bytes(row[13]) == _reference(row)
            wrong = conn.execute(sql.SQL(_ROW).format(leaf=sealing.leaf_sql(utf8_session=True))).fetchone()
            assert bytes(wrong[13]) != _reference(row)
    finally:
        _drop(server_url, name)


def test_verify_with_the_utf8_form_passes_hostile_sealed_rows_and_catches_a_one_character_edit(
        pool, make_event, check, conn):
    events = [make_event(user_id=TEXTS[i % len(TEXTS)] or "x", source=TEXTS[(i + 1) % len(TEXTS)],
                         source_ip=[None, "2001:db8::1", "10.1.2.3", "::ffff:1.2.3.4"][i % 4],
                         user_agent=None if i % 2 else "ua ✓", resource_id="" if i % 3 else None,
                         metadata={"k": TEXTS[i % len(TEXTS)], "n": {"m": [i, None, "ü"]}},
                         timestamp=T0 - timedelta(days=i * 400))
              for i in range(14)]
    assert EventWriter(pool).write(events) == [True] * len(events)
    report = check()
    assert report.ok and report.events == len(events), report.problems
    conn.execute("UPDATE audit_events SET user_id = 'e ü 日本 🚀' WHERE user_id = 'é ü 日本 🚀'")
    assert "content_changed" in {p.kind for p in check().problems}
