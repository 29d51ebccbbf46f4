"""What a JetStream ack means, said explicitly and checked against the broker (issue 14 #13).

A client is told "stored" once JetStream acknowledges its events. How durable that is depends on two
things the broker decides, so both are settings here and neither is left to a default:

- ``replicas`` (``bus_replicas``): the stream's copies. With 3 on a NATS cluster, an ack means a
  quorum (2 of 3 servers) has the message; with 1, only one server has it.
- ``sync`` (``bus_sync``): when the server fsyncs. ``always`` (the default) means the operator has set
  ``jetstream { sync_interval: always }`` (nats-server >= 2.10), so an ack means the message is on
  disk and survives a power cut. ``interval`` accepts the server's periodic fsync (every 2 minutes by
  default): an ack then means the message is in the server's page cache, and an OS crash or power cut
  can lose up to that interval of acknowledged events on an R1 stream (with R3, a quorum would have to
  fail at once).

With ``bus_monitor_url`` (the server's HTTP monitoring port, ``-m 8222``), the client reads
``/varz`` at connect and refuses to publish when the server does not do what ``bus_sync`` says, so
"acknowledged" never silently means less. Without it the claim cannot be checked, and the client
logs once what an ack means under the settings.
Existing streams are checked too: one created with other replicas or in memory is refused with the
command that fixes it, rather than used with weaker guarantees than configured.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from typing import Any

import orjson
from nats.js import api

from ingest.errors import Unavailable

log = logging.getLogger(__name__)
SYNC_CHOICES = ("always", "interval")


class BusDurabilityError(Unavailable):
    """The broker does not give the durability the settings promise to clients."""


def meaning(replicas: int, sync: str) -> str:
    """One sentence: what a client's 'stored' means under these settings."""
    where = "a quorum of the stream's replicas" if replicas >= 3 else (
        f"{replicas} servers" if replicas > 1 else "one server")
    if sync == "always":
        return f"an acknowledged event is fsynced to disk on {where} (sync_interval: always)"
    return (f"an acknowledged event is in the page cache of {where} and fsynced within the server's "
            "sync_interval (2 minutes by default): an OS crash can lose that window on an R1 stream")


def check_stream(info: Any, *, name: str, replicas: int) -> None:
    """Refuse an existing stream whose copies or storage are weaker than configured."""
    config = info.config
    problems = []
    if (config.num_replicas or 1) != replicas:
        problems.append(f"{config.num_replicas or 1} replicas, the settings say {replicas} (bus_replicas)")
    if config.storage not in (None, api.StorageType.FILE):
        problems.append(f"{config.storage} storage, not file")
    if problems:
        raise BusDurabilityError(
            f"the JetStream stream {name} has {' and '.join(problems)}. Fix the stream (`nats stream edit {name} "
            f"--replicas {replicas}`; memory storage needs the stream recreated) or set bus_replicas to match.")


def check_sync(monitor_url: str, sync: str, *, timeout: float = 3.0) -> dict[str, Any] | None:
    """With a monitoring URL, confirm the server fsyncs as ``sync`` says; returns its JetStream config."""
    if sync not in SYNC_CHOICES:
        raise BusDurabilityError(f"bus_sync must be one of {', '.join(SYNC_CHOICES)}, not {sync!r}")
    if not monitor_url:
        return None
    url = monitor_url.rstrip("/") + "/varz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (an operator's setting)
            varz = orjson.loads(response.read(1 << 20))
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError) as exc:
        raise BusDurabilityError(f"cannot read the NATS server's monitoring endpoint {url} ({exc}); it is needed "
                                 "to confirm bus_sync, or unset bus_monitor_url") from None
    config = (varz.get("jetstream") or {}).get("config") or {}
    if sync == "always" and config.get("sync_always") is not True:
        version = varz.get("version", "?")
        raise BusDurabilityError(
            f"bus_sync is 'always' but the NATS server {version} at {monitor_url} does not fsync every write: "
            "set `jetstream { sync_interval: always }` in its configuration (nats-server 2.10 or later) and "
            "restart it, or set bus_sync = 'interval' to accept acks that are fsynced only periodically")
    return config


def announce(replicas: int, sync: str, verified: bool) -> None:
    """Log once what an ack means (and whether the broker confirmed it)."""
    text = meaning(replicas, sync)
    if verified or sync == "interval":
        log.info("event bus: %s%s", text, " (confirmed by the server)" if verified else "")
    else:
        log.warning("event bus: configured so that %s, but not confirmed: set bus_monitor_url to the NATS "
                    "monitoring port so the client can check", text)
