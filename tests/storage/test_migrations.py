"""Schema migrations and the schema they build, on real, initially empty databases."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from storage.errors import DatabaseUnavailable, MigrationError
from storage.timescale import db, migrations
from storage.timescale.migrations import MIGRATION_LOCK, Migration

SEEDED_TYPES = {
    "user_login", "user_logout", "password_change", "permission_change", "data_export", "file_upload",
    "file_download", "api_key_created", "api_key_revoked", "system_startup", "system_shutdown",
    "config_change", "query_executed", "export_requested",
}
# Erasure, legal holds, archiving and cold expiry audit themselves under these (0001, 0006).
PLATFORM_TYPES = {"event_erased", "legal_hold", "events_archived", "events_expired",
                  # the syslog parsers' types (0010)
                  "ssh_invalid_user", "ssh_connection_closed", "ssh_break_in_attempt", "auth_failure", "sudo", "su",
                  "syslog_message",
                  # applications' reads of their own data, now that query_executed is the platform's (0014)
                  "data_query",
                  # the record of generating a compliance report (0016)
                  "report_generated",
                  # data subjects and PHI (0019)
                  *(GDPR_TYPES := {"gdpr_access_exported", "gdpr_erasure_requested", "gdpr_erasure_approved",
                                   "gdpr_erasure_started", "gdpr_erasure_executed", "phi_revealed"})}
# Only the platform writes these; ingest refuses them (0014, 0016).
# Applications record their own API keys (0026): those two are open again.
RESERVED_TYPES = {"query_executed", "export_requested", "event_erased",
                  "events_expired", "events_archived", "legal_hold", "report_generated", *GDPR_TYPES}


def _migrated(url: str, **kwargs) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    migrations.migrate(conn, **kwargs)
    return conn


def _recorded(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT version, name, checksum FROM schema_migrations ORDER BY version").fetchall()


def _lock_is_free(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as other:
        got = other.execute("SELECT pg_try_advisory_lock(%s)", (MIGRATION_LOCK,)).fetchone()[0]
        if got:
            other.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        return got


# -- applying ----------------------------------------------------------------------------------

def test_available_migrations_are_numbered_in_order():
    found = migrations.available()
    assert found, "the package ships no migrations"
    versions = [m.version for m in found]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    assert found[0].version == 1 and found[0].name == "events"


def test_migrate_applies_each_once_and_records_it(empty_db_url):
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        assert migrations.current_version(conn) is None
        applied = migrations.migrate(conn)
        assert applied == migrations.available()
        assert _recorded(conn) == [(m.version, m.name, m.checksum) for m in migrations.available()]
        assert migrations.current_version(conn) == migrations.available()[-1].version

        assert migrations.migrate(conn) == []
        assert len(_recorded(conn)) == len(migrations.available())
        seeded = conn.execute("SELECT count(*) FROM event_types").fetchone()[0]
        assert seeded == len(SEEDED_TYPES) + len(PLATFORM_TYPES)  # not seeded twice
    assert _lock_is_free(empty_db_url)


def test_migrations_apply_in_version_order_and_stop_at_the_first_failure(empty_db_url, monkeypatch):
    shipped = migrations.available()
    extra = [
        Migration(102, "widgets", "CREATE TABLE widgets (id integer PRIMARY KEY)"),
        Migration(110, "widget_names", "ALTER TABLE widgets ADD COLUMN name text NOT NULL DEFAULT 'w'"),
        Migration(111, "broken", "CREATE TABLE half_done (id integer); SELECT no_such_function()"),
        Migration(112, "after_broken", "CREATE TABLE never_made (id integer)"),
    ]
    monkeypatch.setattr(migrations, "available", lambda: [*shipped, *extra])
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        with pytest.raises(MigrationError, match="migration 111_broken failed"):
            migrations.migrate(conn)
        assert [r[0] for r in _recorded(conn)] == [*(m.version for m in shipped), 102, 110]
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'widgets' ORDER BY 1"
        ).fetchall()
        assert columns == [("id",), ("name",)]
        # The failed migration left nothing behind, and the ones after it did not run.
        assert conn.execute("SELECT to_regclass('half_done'), to_regclass('never_made')").fetchone() == (None, None)
        assert migrations.current_version(conn) == 110
    assert _lock_is_free(empty_db_url)


_MIGRATE_SCRIPT = textwrap.dedent(
    """
    import sys, psycopg
    from storage.timescale import migrations
    with psycopg.connect(sys.argv[1]) as conn:
        print(len(migrations.migrate(conn)))
    """
)


def test_concurrent_migrators_in_two_processes_apply_once(empty_db_url):
    with psycopg.connect(empty_db_url, autocommit=True) as holder:
        # Hold the migration lock until both processes are queued on it, so they really race.
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        procs = [
            subprocess.Popen([sys.executable, "-c", _MIGRATE_SCRIPT, empty_db_url],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        deadline = time.monotonic() + 60
        while holder.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
        ).fetchone()[0] < 2:
            assert time.monotonic() < deadline, "the migrators never reached the lock"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.05)
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    counts = sorted(int(out.strip()) for out, _ in results)
    assert counts == [0, len(migrations.available())]
    with psycopg.connect(empty_db_url) as conn:
        assert len(_recorded(conn)) == len(migrations.available())
        assert conn.execute(
            "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = 'audit_events'"
        ).fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM event_types").fetchone()[0] == len(SEEDED_TYPES) + len(PLATFORM_TYPES)


def test_an_edited_applied_migration_is_refused(empty_db_url):
    with _migrated(empty_db_url) as conn:
        conn.execute("UPDATE schema_migrations SET checksum = 'not-the-file' WHERE version = 1")
        with pytest.raises(MigrationError) as caught:
            migrations.migrate(conn)
    message = str(caught.value)
    assert "1_events" in message
    assert "edited after it was applied" in message
    assert "add a new migration" in message
    assert _lock_is_free(empty_db_url)


# -- the hypertable ----------------------------------------------------------------------------------

def _chunk_interval(conn: psycopg.Connection) -> tuple:
    return conn.execute(
        "SELECT column_name, time_interval FROM timescaledb_information.dimensions "
        "WHERE hypertable_name = 'audit_events'"
    ).fetchall()


def test_audit_events_is_a_hypertable_on_timestamp_with_daily_chunks(empty_db_url):
    with _migrated(empty_db_url) as conn:
        assert _chunk_interval(conn) == [("timestamp", timedelta(days=1))]


def test_chunk_interval_setting_changes_the_interval(empty_db_url):
    with _migrated(empty_db_url, chunk_interval="6 hours") as conn:
        assert _chunk_interval(conn) == [("timestamp", timedelta(hours=6))]
        # Events now land in 6-hour chunks.
        for hour in (0, 7, 13):
            conn.execute(
                "INSERT INTO audit_events (event_id, \"timestamp\", event_type, user_id) VALUES (%s, %s, 'x', 'u')",
                (uuid.uuid4(), datetime(2024, 1, 1, hour, tzinfo=UTC)),
            )
        chunks = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'audit_events'"
        ).fetchone()[0]
        assert chunks == 3


# -- indexes and constraints (on the migrated test database) -------------------------------------------

def test_the_query_indexes_exist(conn):
    defs = {
        name: definition
        for name, definition in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'audit_events'"
        )
    }
    flattened = [d.replace('"', "") for d in defs.values()]

    def has(fragment: str) -> bool:
        return any(fragment in d for d in flattened)

    assert has("USING btree (timestamp DESC")
    assert has("USING btree (user_id, timestamp DESC)")
    assert has("USING btree (event_type, timestamp DESC)")
    assert has("USING gin (metadata jsonb_path_ops)")


def test_primary_key_is_event_id_and_timestamp(conn):
    rows = conn.execute(
        """SELECT a.attname FROM pg_constraint c
           JOIN unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord) ON true
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
           WHERE c.conrelid = 'audit_events'::regclass AND c.contype = 'p' ORDER BY k.ord"""
    ).fetchall()
    assert rows == [("event_id",), ("timestamp",)]


def test_no_foreign_keys_touch_audit_events(conn):
    count = conn.execute(
        """SELECT count(*) FROM pg_constraint
           WHERE contype = 'f' AND (conrelid = 'audit_events'::regclass OR confrelid = 'audit_events'::regclass)"""
    ).fetchone()[0]
    assert count == 0
    # Not in the whole schema either: nothing can cascade into the events.
    assert conn.execute(
        "SELECT count(*) FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE c.contype = 'f' AND n.nspname = 'public'"
    ).fetchone()[0] == 0


def test_deleting_users_keys_and_types_leaves_events_untouched(conn):
    key_id = uuid.uuid4()
    conn.execute("INSERT INTO users (user_id) VALUES ('alice'), ('apikey:ci')")
    conn.execute("INSERT INTO event_types (event_type) VALUES ('custom.thing')")
    conn.execute(
        "INSERT INTO api_keys (key_id, name, role, secret_hash, created_by) VALUES (%s, 'ci', 'system', 'h', 't')",
        (key_id,),
    )
    for user, event_type in [("alice", "user_login"), ("alice", "custom.thing"), ("apikey:ci", "data_export")]:
        conn.execute(
            "INSERT INTO audit_events (event_id, \"timestamp\", event_type, user_id) VALUES (%s, now(), %s, %s)",
            (uuid.uuid4(), event_type, user),
        )
    before = conn.execute("SELECT event_id, user_id, event_type FROM audit_events ORDER BY event_id").fetchall()

    conn.execute("UPDATE api_keys SET revoked_at = now(), revoked_by = 't' WHERE key_id = %s", (key_id,))
    conn.execute("DELETE FROM api_keys WHERE key_id = %s", (key_id,))
    conn.execute("DELETE FROM users")
    conn.execute("DELETE FROM event_types WHERE event_type = 'custom.thing'")

    after = conn.execute("SELECT event_id, user_id, event_type FROM audit_events ORDER BY event_id").fetchall()
    assert after == before
    assert len(after) == 3


def test_event_types_catalogue_is_seeded(conn):
    rows = conn.execute("SELECT event_type, builtin, description FROM event_types").fetchall()
    types = {r[0] for r in rows}
    assert SEEDED_TYPES <= types
    assert len(SEEDED_TYPES) == 14
    # The seed's fourteen, plus the types the platform records its own actions under.
    assert types == SEEDED_TYPES | PLATFORM_TYPES
    assert all(builtin and description for _, builtin, description in rows)
    reserved = {r[0] for r in conn.execute("SELECT event_type FROM event_types WHERE reserved").fetchall()}
    assert reserved == RESERVED_TYPES


# -- server facts ----------------------------------------------------------------------------------------

def test_server_info_reports_versions_and_edition(conn):
    info = db.server_info(conn)
    assert info.server_version.split(".")[0].isdigit()
    assert int(info.server_version.split(".")[0]) >= 15
    assert info.timescaledb_version == conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()[0]
    assert info.edition in {"apache", "timescale"}
    assert info.database == conn.execute("SELECT current_database()").fetchone()[0]
    license_ = conn.execute("SHOW timescaledb.license").fetchone()[0]
    assert db.edition_of(conn) == license_ == info.edition


def test_server_info_before_the_extension_is_created(empty_db_url):
    with psycopg.connect(empty_db_url) as conn:
        info = db.server_info(conn)
        available = conn.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()[0]
        db.require_timescaledb(conn)
    assert info.timescaledb_version == available


def test_connect_says_what_to_do_when_there_is_no_server(tmp_path):
    with pytest.raises(DatabaseUnavailable, match="auditwatch db up"):
        db.connect(f"postgresql://nobody@/nothing?host={tmp_path}&port=1")
