"""The platform-health rules in our own format, through the worker's evaluation and delivery: each condition
made true in a real database fires its alert and reaches the local sink; a healthy platform fires none."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
from psycopg.types.json import Jsonb

from alerts.engine import evaluate
from alerts.rule_files import load_rules
from alerts.rules import PACKAGED_RULES
from storage.events import EventRecord, Outcome
from storage.timescale.leader import ANALYTICS_LOCK
from storage.timescale.writer import EventWriter
from tests.alerts.conftest import make_rig

HEALTH = {"ingest_stalled", "worker_leader_missing", "outbox_backlog", "checkpoint_stale"}


def login(at: datetime) -> EventRecord:
    return EventRecord(event_id=uuid.uuid4(), timestamp=at, received_at=at, event_type="user_login",
                       user_id="alice", outcome=Outcome.SUCCESS)


def firing(pool) -> dict[str, str]:
    with pool.connection() as conn:
        return dict(conn.execute("SELECT rule_id, state FROM alerts WHERE state IN ('pending', 'firing')").fetchall())


def sign_everything(pool, at: datetime) -> None:
    """A checkpoint row over the chain head (what the signer stores; the signature is not what this rule reads)."""
    with pool.connection() as conn:
        conn.execute("INSERT INTO integrity_checkpoints (chain_pos, chain_hash, events, created_at, public_key, "
                     "payload, signature) SELECT chain_pos, chain_hash, events, %s, '\\x00', '{}', '\\x00' "
                     "FROM integrity_head WHERE id = 1", (at,))


def test_the_pack_ships_the_four_health_rules():
    rules = load_rules(PACKAGED_RULES)
    assert {r.id for r in rules.values() if r.kind == "health"} == HEALTH
    assert all(rules[r].runbook_url.endswith("docs/runbooks/platform-health.md#" + r) for r in HEALTH)


def test_healthy_fires_nothing_and_each_failure_fires_its_rule(pool, db_url, tmp_path):
    rig = make_rig(pool, tmp_path, None, None)
    rules = {rid: r for rid, r in load_rules(PACKAGED_RULES).items() if rid in HEALTH}
    writer = EventWriter(pool)
    with psycopg.connect(db_url, autocommit=True) as worker:
        assert worker.execute("SELECT pg_try_advisory_lock(%s)", (ANALYTICS_LOCK,)).fetchone()[0]
        # Healthy: a worker leads, events keep arriving, everything sealed is signed, nothing waits in the outbox.
        writer.write([login(datetime.now(UTC) - timedelta(minutes=m)) for m in (40, 20, 1)])
        sealed = datetime.now(UTC)
        sign_everything(pool, sealed)
        now = sealed + timedelta(minutes=2)
        for step in range(4):  # past every rule's `for`
            assert evaluate(pool, rig.config, now=now + timedelta(minutes=step), rules=rules).errors == {}
        assert firing(pool) == {}

    # The leader's session ended and nobody took over; events sealed since the checkpoint stay unsigned;
    # ingest went quiet after traffic; a notification to Slack has waited half an hour.
    writer.write([login(sealed - timedelta(minutes=30))])
    with pool.connection() as conn:
        conn.execute("INSERT INTO alert_notifications (receiver, group_key, kind, payload, status, created_at, "
                     "next_attempt_at, lease_until) VALUES ('slack', 'stuck', 'firing', %s, 'sending', %s, %s, %s)",
                     (Jsonb({}), sealed - timedelta(minutes=5), sealed, sealed + timedelta(days=1)))
    later = datetime.now(UTC) + timedelta(minutes=25)
    for step in range(4):
        assert evaluate(pool, rig.config, now=later + timedelta(minutes=step), rules=rules).errors == {}
    assert firing(pool) == dict.fromkeys(HEALTH, "firing")
    rig.dispatch(later + timedelta(minutes=4))
    sink = [orjson.loads(line) for line in rig.receivers.sink_path.read_text().splitlines()]
    delivered = {a["rule_id"]: a for n in sink for a in n["alerts"]}
    assert set(delivered) >= HEALTH
    assert delivered["outbox_backlog"]["group_values"] == {"receiver": "slack"}
    assert all(delivered[r]["runbook_url"].endswith("platform-health.md#" + r) for r in HEALTH)
