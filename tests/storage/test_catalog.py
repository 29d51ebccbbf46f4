"""API keys, users, event types, run-time settings and the shared rate-limit counters."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from storage.auth import KEY_PREFIX, Permission, Role, hash_secret, split_key
from storage.timescale import catalog, db

WINDOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


# -- API keys ---------------------------------------------------------------------------------------

def test_create_key_stores_only_a_hash_of_the_secret(pool, conn):
    key, secret = catalog.create_key(pool, "ci-bot", Role.SYSTEM, "tests")
    assert secret.startswith(f"{KEY_PREFIX}_{key.key_id.hex}_")
    key_id, secret_part = split_key(secret)
    assert key_id == key.key_id
    assert len(secret_part) >= 40

    (stored,) = conn.execute("SELECT row_to_json(k)::text FROM api_keys k").fetchone()
    assert secret not in stored
    assert secret_part not in stored
    row = conn.execute("SELECT name, role, secret_hash, created_by, revoked_at FROM api_keys").fetchone()
    assert row == ("ci-bot", "system", hash_secret(secret_part), "tests", None)
    assert (key.name, key.role, key.revoked_at) == ("ci-bot", Role.SYSTEM, None)
    assert catalog.key_exists(pool, "ci-bot")
    assert not catalog.key_exists(pool, "nobody")


def test_create_key_registers_its_principal(pool, conn):
    key, _ = catalog.create_key(pool, "exporter", Role.AUDITOR, "admin-1")
    assert key.principal == "apikey:exporter"
    assert catalog.existing_users(pool, ["apikey:exporter"]) == {"apikey:exporter"}
    row = conn.execute("SELECT kind, registered_by FROM users WHERE user_id = 'apikey:exporter'").fetchone()
    assert row == ("apikey", "admin-1")


def test_key_names_are_unique(pool):
    _, secret = catalog.create_key(pool, "dup", Role.VIEWER, "tests")
    with pytest.raises(psycopg.errors.UniqueViolation):
        catalog.create_key(pool, "dup", Role.ADMIN, "tests")
    assert catalog.authenticate(pool, secret).role is Role.VIEWER
    assert [k.name for k in catalog.list_keys(pool)] == ["dup"]


def test_authenticate_accepts_only_the_live_right_key(pool):
    key, secret = catalog.create_key(pool, "reader", Role.VIEWER, "tests")
    other, other_secret = catalog.create_key(pool, "writer", Role.SYSTEM, "tests")

    found = catalog.authenticate(pool, secret)
    assert found == key
    assert catalog.authenticate(pool, other_secret).key_id == other.key_id

    key_id, secret_part = split_key(secret)
    altered = secret_part[:-1] + ("A" if secret_part[-1] != "A" else "B")
    wrong = [
        f"{KEY_PREFIX}_{key_id.hex}_{altered}",
        f"{KEY_PREFIX}_{key_id.hex}_{split_key(other_secret)[1]}",  # another key's secret
        f"{KEY_PREFIX}_{uuid.uuid4().hex}_{secret_part}",  # unknown key id
        f"{KEY_PREFIX}_{key_id.hex}_",
        "",
        "aw",
        secret.replace(f"{KEY_PREFIX}_", "xx_", 1),
        f"{KEY_PREFIX}_{key_id.hex[:-1]}_{secret_part}",
        f"{KEY_PREFIX}_{'z' * 32}_{secret_part}",
        f"Bearer {secret}",
    ]
    for candidate in wrong:
        assert catalog.authenticate(pool, candidate) is None, candidate


def test_revoke_by_name_and_by_id(pool):
    first, first_secret = catalog.create_key(pool, "first", Role.ADMIN, "tests")
    second, second_secret = catalog.create_key(pool, "second", Role.AUDITOR, "tests")

    revoked = catalog.revoke_key(pool, "first", "admin-1")
    assert revoked.key_id == first.key_id and revoked.revoked_at is not None
    assert catalog.authenticate(pool, first_secret) is None
    assert catalog.revoke_key(pool, "first", "admin-1") is None  # already revoked

    revoked = catalog.revoke_key(pool, str(second.key_id), "admin-1")
    assert revoked.name == "second" and revoked.revoked_at is not None
    assert catalog.authenticate(pool, second_secret) is None

    assert catalog.revoke_key(pool, "never-was", "admin-1") is None
    assert catalog.revoke_key(pool, str(uuid.uuid4()), "admin-1") is None


def test_revocation_is_recorded_and_listed(pool, conn):
    catalog.create_key(pool, "a-key", Role.VIEWER, "tests")
    catalog.create_key(pool, "b-key", Role.SYSTEM, "tests")
    catalog.create_key(pool, "c-key", Role.ADMIN, "tests")
    catalog.revoke_key(pool, "b-key", "admin-7")

    listed = catalog.list_keys(pool)
    assert [k.name for k in listed] == ["a-key", "b-key", "c-key"]
    assert [k.role for k in listed] == [Role.VIEWER, Role.SYSTEM, Role.ADMIN]
    assert [k.revoked_at is not None for k in listed] == [False, True, False]
    assert not listed[1].can(Permission.INGEST)  # a revoked system key may no longer ingest
    assert listed[2].can(Permission.INGEST)
    assert conn.execute("SELECT revoked_by FROM api_keys WHERE name = 'b-key'").fetchone() == ("admin-7",)


# -- users --------------------------------------------------------------------------------------------

def test_register_users_is_idempotent(pool, conn):
    assert catalog.register_users(pool, [{"user_id": "alice", "email": "a@example.org", "department": "ops"},
                                         {"user_id": "svc-backup", "kind": "service"}], "admin") == 2
    assert catalog.register_users(pool, [{"user_id": "alice", "email": "changed@example.org"},
                                         {"user_id": "bob"}], "admin") == 1
    assert catalog.register_users(pool, [{"user_id": "bob"}, {"user_id": "bob"}], "admin") == 0
    assert catalog.register_users(pool, [], "admin") == 0

    users = catalog.list_users(pool)
    assert [u.user_id for u in users] == ["alice", "bob", "svc-backup"]
    alice = users[0]
    assert (alice.email, alice.department, alice.kind, alice.registered_by) == ("a@example.org", "ops", "human", "admin")
    assert users[2].kind == "service"
    assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 3


def test_list_users_pages_by_user_id(pool):
    catalog.register_users(pool, [{"user_id": f"user-{i:02d}"} for i in range(7)], "admin")
    first = catalog.list_users(pool, limit=3)
    assert [u.user_id for u in first] == ["user-00", "user-01", "user-02"]
    rest = catalog.list_users(pool, limit=10, after=first[-1].user_id)
    assert [u.user_id for u in rest] == [f"user-{i:02d}" for i in range(3, 7)]
    assert catalog.list_users(pool, after="user-06") == []


def test_existing_users(pool):
    catalog.register_users(pool, [{"user_id": "alice"}, {"user_id": "bob"}], "admin")
    assert catalog.existing_users(pool, ["alice", "carol", "alice", "bob"]) == {"alice", "bob"}
    assert catalog.existing_users(pool, ["carol"]) == set()
    assert catalog.existing_users(pool, []) == set()


# -- event types ------------------------------------------------------------------------------------------

def test_event_types_add_and_list(pool):
    before = catalog.event_types(pool)
    # the seed's 14 + event_erased (0001) + legal_hold, events_archived/expired (0006), the syslog parsers' 7
    # (0010), data_query (0014), report_generated (0016), and the GDPR workflow's five and phi_revealed (0019)
    assert len(before) == 18 + 7 + 1 + 1 + 6
    assert {t.event_type for t in before if t.reserved} == {
        "query_executed", "export_requested", "event_erased", "events_expired", "events_archived", "legal_hold",
        "report_generated", "gdpr_access_exported", "gdpr_erasure_requested", "gdpr_erasure_approved",
        "gdpr_erasure_started", "gdpr_erasure_executed", "phi_revealed"}  # api_key_created/revoked: open (0026)
    assert all(t.builtin for t in before)
    assert [t.event_type for t in before] == sorted(t.event_type for t in before)

    assert catalog.add_event_type(pool, "vpn.connect", "A VPN session began", "Network Activity [4001]", "admin")
    assert not catalog.add_event_type(pool, "vpn.connect", "again", None, "admin")
    assert not catalog.add_event_type(pool, "user_login", "shadowing a builtin", None, "admin")

    after = {t.event_type: t for t in catalog.event_types(pool)}
    assert len(after) == len(before) + 1
    added = after["vpn.connect"]
    assert (added.description, added.ocsf_class, added.builtin) == (
        "A VPN session began", "Network Activity [4001]", False)
    assert after["user_login"].description == "A user signed in (or failed to)"


def test_event_type_names_are_checked(pool):
    with pytest.raises(psycopg.errors.CheckViolation):
        catalog.add_event_type(pool, "Not Valid!", "", None, "admin")


# -- run-time settings ---------------------------------------------------------------------------------------

def test_settings_get_and_put_return_the_previous_value(pool, conn):
    assert catalog.get_setting(pool, "retention_days") is None
    assert catalog.put_setting(pool, "retention_days", 90, "admin-1") is None
    assert catalog.get_setting(pool, "retention_days") == 90
    assert catalog.put_setting(pool, "retention_days", {"hot": 30, "warm": 365}, "admin-2") == 90
    assert catalog.get_setting(pool, "retention_days") == {"hot": 30, "warm": 365}
    assert conn.execute("SELECT updated_by FROM settings WHERE key = 'retention_days'").fetchone() == ("admin-2",)
    assert catalog.get_setting(pool, "other") is None


# -- R6 rate counters -------------------------------------------------------------------------------------------

def test_consume_rate_grants_up_to_the_limit(pool):
    assert catalog.consume_rate(pool, {}, WINDOW, 50) == {}
    assert catalog.consume_rate(pool, {"alice": 30, "bob": 5}, WINDOW, 50) == {"alice": 30, "bob": 5}
    assert catalog.consume_rate(pool, {"alice": 30, "bob": 5}, WINDOW, 50) == {"alice": 20, "bob": 5}
    assert catalog.consume_rate(pool, {"alice": 1}, WINDOW, 50) == {"alice": 0}
    # A new window is a new budget.
    assert catalog.consume_rate(pool, {"alice": 40}, WINDOW + timedelta(minutes=1), 50) == {"alice": 40}


def test_consume_rate_holds_the_limit_across_concurrent_processes(pool, db_url):
    second = db.open_pool(db_url, min_size=1, max_size=4, name="second-server")
    limit, threads_n, calls = 50, 8, 12
    granted: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def server(i: int) -> None:
        connections = pool if i % 2 else second
        try:
            start.wait()
            for _ in range(calls):
                got = catalog.consume_rate(connections, {"hot": 3, "warm": 1, f"own-{i}": 2}, WINDOW, limit)
                with lock:
                    granted.update(got)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread below
            errors.append(exc)

    workers = [threading.Thread(target=server, args=(i,)) for i in range(threads_n)]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
    finally:
        second.close()
    assert not errors
    assert granted["hot"] == limit  # wanted 3 * 8 * 12 = 288
    assert granted["warm"] == limit  # wanted 96
    assert all(granted[f"own-{i}"] == 2 * calls for i in range(threads_n))  # 24 each, under the limit


def test_prune_rate_forgets_old_windows(pool, conn):
    for minutes in range(4):
        catalog.consume_rate(pool, {"alice": 1, "bob": 2}, WINDOW + timedelta(minutes=minutes), 10)
    catalog.prune_rate(pool, WINDOW + timedelta(minutes=2))
    left = conn.execute("SELECT DISTINCT window_start FROM ingest_rate ORDER BY 1").fetchall()
    assert left == [(WINDOW + timedelta(minutes=2),), (WINDOW + timedelta(minutes=3),)]
    assert conn.execute("SELECT count(*) FROM ingest_rate").fetchone()[0] == 4
