"""Dead letters through the API and the CLI: a message the database refuses 3 times is listed, then replayed."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime

from click.testing import CliRunner

from auditwatch.app import create_app
from auditwatch.cli.main import main
from ingest.bus import BusWriter
from storage.auth import Role
from storage.timescale import catalog
from storage.timescale.writer import EventWriter
from tests.auditwatch.conftest import error_of
from tests.conftest import opened_services
from tests.ingest.conftest import InThread, nats_server  # noqa: F401  (the fixture)


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_without_a_bus_the_routes_say_how_to_get_one(client, make_key):
    admin = make_key(Role.ADMIN)
    response = client.get("/api/v1/deadletters", headers=admin)
    assert response.status_code == 409 and error_of(response)["code"] == "no_bus"
    assert "bus_url" in error_of(response)["message"]
    bad = client.post("/api/v1/deadletters/replay", json={"seqs": ["1"]}, headers=admin)
    assert bad.status_code == 400 and error_of(bad)["field"] == "seqs"
    assert client.get("/api/v1/deadletters?limit=0", headers=admin).status_code == 400


def test_dead_letter_listed_and_replayed_through_api_and_cli(nats_server, settings, conn, db_url, tmp_path,  # noqa: F811
                                                             monkeypatch):
    # A generous ack_wait: on a loaded machine a slow batch must not be redelivered and counted as a failure.
    bus_settings = settings.replace(bus_url=nats_server.url, bus_ack_wait=30)
    conn.execute("ALTER TABLE audit_events ADD CONSTRAINT test_no_poison CHECK (user_id <> 'poison')")
    with opened_services(bus_settings) as services:
        app = create_app(bus_settings, services=services)
        client = app.test_client()
        _, secret = catalog.create_key(services.pool, "dl-admin", Role.ADMIN, "tests")
        admin = {"Authorization": f"Bearer {secret}"}
        catalog.register_users(services.pool, [{"user_id": "poison"}, {"user_id": "fine"}], "tests")
        events = [{"event_id": str(uuid.uuid4()), "timestamp": datetime.now(UTC).isoformat(),
                   "event_type": "user_login", "user_id": user} for user in ("fine", "poison", "fine")]
        accepted = client.post("/api/v1/logs/batch", json=events, headers=admin)
        assert accepted.get_json()["accepted"] == 3  # acknowledged: JetStream has all three

        writer = BusWriter(services.bus.config, EventWriter(services.pool))
        running = InThread(lambda stop: writer.run(stop))
        try:
            wait_for(lambda: writer.stats.dead_lettered == 1 and writer.stats.stored == 2)
            listed = client.get("/api/v1/deadletters", headers=admin)
            assert listed.status_code == 200
            (letter,) = listed.get_json()["dead_letters"]
            assert letter["deliveries"] == 3 and "test_no_poison" in letter["error"]
            assert letter["event"]["event_id"] == events[1]["event_id"] and letter["event"]["user_id"] == "poison"

            # The CLI sees the same, from another process's point of view (its own connection).
            monkeypatch.chdir(tmp_path)
            env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITWATCH_")}
            env.update({"AUDITWATCH_DATABASE_URL": db_url, "AUDITWATCH_BUS_URL": nats_server.url,
                        "AUDITWATCH_DATA_DIR": str(tmp_path / "data")})
            result = CliRunner().invoke(main, ["deadletters", "list"], env=env, catch_exceptions=False)
            assert result.exit_code == 0 and events[1]["event_id"] in result.output
            assert "test_no_poison" in result.output

            # Fix the cause, replay: the writer stores it, and the dead letter is gone.
            conn.execute("ALTER TABLE audit_events DROP CONSTRAINT test_no_poison")
            replayed = client.post("/api/v1/deadletters/replay", json={}, headers=admin)
            assert replayed.status_code == 200 and replayed.get_json() == {"replayed": 1}
            wait_for(lambda: writer.stats.stored == 3)
            assert client.get("/api/v1/deadletters", headers=admin).get_json()["dead_letters"] == []
            result = CliRunner().invoke(main, ["deadletters", "replay"], env=env, catch_exceptions=False)
            assert result.exit_code == 0 and "replayed 0" in result.output
        finally:
            running.stop()
    stored = conn.execute("SELECT user_id, count(*) FROM audit_events WHERE event_type = 'user_login' "
                          "GROUP BY 1 ORDER BY 1").fetchall()
    assert stored == [("fine", 2), ("poison", 1)]
    audited = conn.execute("SELECT metadata->>'change' FROM audit_events WHERE event_type = 'config_change' "
                           "AND resource_id = 'deadletters'").fetchall()
    assert audited == [("deadletters_replayed",)]
