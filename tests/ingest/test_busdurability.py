"""What a JetStream ack means is explicit and checked against a real nats-server (issue 14 #13)."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
import requests

from auditwatch import settings as settings_mod
from ingest import busdurability
from ingest.bus import BusClient, BusConfig, BusPublisher
from ingest.busdurability import BusDurabilityError
from ingest.errors import Unavailable
from storage.events import EventRecord
from tests.conftest import free_port


@pytest.fixture
def publishers():
    """BusPublishers whose clients are closed after the test (a client left open reconnects for ever)."""
    clients: list[BusClient] = []

    def make(config: BusConfig) -> BusPublisher:
        clients.append(BusClient(config))
        return BusPublisher(clients[-1])
    yield make
    for client in clients:
        client.close()


@pytest.fixture
def monitored_nats(tmp_path: Path):
    """A JetStream server with its HTTP monitoring port, as the bus_monitor_url setting expects."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port, http = free_port(), free_port()
    process = subprocess.Popen([binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-m", str(http),
                                "-sd", str(tmp_path / "js")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    monitor = f"http://127.0.0.1:{http}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(monitor + "/varz", timeout=1).ok:
                break
        except requests.RequestException:
            time.sleep(0.1)
    try:
        yield f"nats://127.0.0.1:{port}", monitor
    finally:
        process.terminate()
        process.wait(10)


def record() -> EventRecord:
    now = datetime.now(UTC)
    return EventRecord(event_id=uuid.uuid4(), timestamp=now, event_type="user_login", user_id="a", received_at=now)


def stream_config(url: str, name: str):
    async def get():
        nc = await nats.connect(url)
        try:
            return (await nc.jetstream().stream_info(name)).config
        finally:
            await nc.close()
    import asyncio
    return asyncio.run(get())


def test_an_ack_is_refused_when_the_server_does_not_fsync_as_configured(monitored_nats, publishers):
    url, monitor = monitored_nats
    version = requests.get(monitor + "/varz", timeout=5).json()["version"]
    strict = publishers(BusConfig(url=url, monitor_url=monitor, sync="always", publish_timeout=2))
    with pytest.raises(Unavailable) as refused:
        strict.write([record()])
    assert isinstance(refused.value, BusDurabilityError) and refused.value.status == 503
    assert "sync_interval: always" in refused.value.message and version in refused.value.message
    assert "bus_sync = 'interval'" in refused.value.message
    with pytest.raises(BusDurabilityError):  # not a one-off: every publish is refused until it is fixed
        strict.write([record()])

    # Said explicitly, periodic fsync is accepted: the ack then means "in the page cache".
    relaxed = publishers(BusConfig(url=url, monitor_url=monitor, sync="interval"))
    assert relaxed.write([record()]) == [True]
    config = stream_config(url, "AUDITWATCH_EVENTS")
    assert config.num_replicas == 1 and str(config.storage).endswith("file")


def test_an_existing_stream_with_other_replicas_is_refused_with_the_fix(monitored_nats, publishers):
    url, monitor = monitored_nats
    publishers(BusConfig(url=url, sync="interval")).write([record()])
    wider = publishers(BusConfig(url=url, sync="interval", replicas=3, publish_timeout=2))
    with pytest.raises(BusDurabilityError) as refused:
        wider.write([record()])
    assert "1 replicas, the settings say 3" in refused.value.message
    assert "nats stream edit AUDITWATCH_EVENTS --replicas 3" in refused.value.message


def test_an_unreachable_monitor_is_a_clear_error():
    with pytest.raises(BusDurabilityError, match="monitoring endpoint"):
        busdurability.check_sync(f"http://127.0.0.1:{free_port()}", "always", timeout=1)
    assert busdurability.check_sync("", "always") is None  # nothing to check with


def test_the_meaning_of_an_ack_is_spelled_out():
    assert "fsynced to disk on one server" in busdurability.meaning(1, "always")
    assert "quorum" in busdurability.meaning(3, "always")
    assert "page cache" in busdurability.meaning(1, "interval") and "2 minutes" in busdurability.meaning(1, "interval")


@pytest.mark.parametrize("overrides, message", [
    ({"bus_sync": "sometimes"}, "bus_sync"), ({"bus_replicas": 0}, "bus_replicas"), ({"bus_replicas": 7}, "1 to 5"),
    ({"bus_monitor_url": "nats://x:8222"}, "monitoring URL"),
])
def test_bus_durability_settings_are_checked(overrides, message):
    with pytest.raises(settings_mod.SettingsError, match=message):
        settings_mod.load(config_file=None, environ={}, overrides=overrides)
    defaults = settings_mod.load(config_file=None, environ={}, overrides={})
    assert (defaults.bus_sync, defaults.bus_replicas) == ("always", 1)
