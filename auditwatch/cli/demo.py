"""``auditwatch demo``: drives ``ingest.demo`` traffic into a running server over real HTTP, as any producer would."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import click
import orjson
import requests

from auditwatch import settings as settings_mod
from auditwatch.cli import shutdown
from ingest.demo import DemoTraffic, history_start


class _Client:
    def __init__(self, url: str, key: str, echo: Callable[[str], None]) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"
        self.echo = echo

    def post(self, path: str, body: bytes, content_type: str = "application/json", attempts: int = 8):
        delay = 0.5
        for _ in range(attempts):
            try:
                response = self.session.post(self.url + path, data=body, timeout=30,
                                             headers={"Content-Type": content_type})
            except requests.ConnectionError as exc:
                self.echo(f"demo: server unreachable ({exc.__class__.__name__}); retrying in {delay:.1f} s")
                time.sleep(delay)
                delay = min(delay * 2, 10)
                continue
            if response.status_code in (429, 503):
                time.sleep(float(response.headers.get("Retry-After", delay)))
                continue
            return response
        raise RuntimeError(f"demo: giving up on {path} after {attempts} attempts")


def run_demo(*, url: str, key: str, admin_key: str | None, seed: int = 7, users: int = 300,
             history: timedelta = timedelta(hours=24), duration: float | None = None,
             echo: Callable[[str], None] = print, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> int:
    """Register the demo users, backfill ``history``, then stream live events; returns events sent."""
    traffic = DemoTraffic(seed=seed, users=users)
    client = _Client(url, key, echo)
    if admin_key:
        admin = _Client(url, admin_key, echo)
        for user in traffic.users:
            response = admin.post("/api/v1/users", orjson.dumps(user.registration()))
            if response.status_code not in (200, 201):
                raise RuntimeError(f"demo: cannot register {user.user_id}: {response.status_code} {response.text}")
        echo(f"demo: {len(traffic.users)} users registered")

    sent = 0
    # At least a working day: a quiet weekend alone is too little for the detectors to learn from.
    cursor = history_start(now(), history / timedelta(hours=1)) if history > timedelta(0) else now()

    def send(events: list[dict]) -> None:
        nonlocal sent
        for i in range(0, len(events), 1000):
            chunk = events[i:i + 1000]
            response = client.post("/api/v1/logs/batch", orjson.dumps(chunk))
            if response.status_code != 200:
                raise RuntimeError(f"demo: batch refused: {response.status_code} {response.text[:300]}")
            body = response.json()
            if body["rejected"]:
                echo(f"demo: {body['rejected']} events rejected, e.g. {body['errors'][:1]}")
            sent += len(chunk)

    # History, an hour at a time, with progress.
    end = now()
    hours = int((end - cursor).total_seconds() // 3600) + 1
    for i in range(hours):
        stop = min(cursor + timedelta(hours=1), end)
        send(list(traffic.events(cursor, stop)))
        cursor = stop
        if (i + 1) % 6 == 0 or i + 1 == hours:
            echo(f"demo: history {i + 1}/{hours} hours, {sent} events sent")
    echo("demo: streaming live traffic (incidents are injected daily at 01:40, 03:10, 10:17 and 14:05 UTC)")
    started = time.monotonic()
    last_report = started
    while duration is None or time.monotonic() - started < duration:
        time.sleep(1.0)
        stop = now()
        send(list(traffic.events(cursor, stop)))
        cursor = stop
        if time.monotonic() - last_report > 60:
            echo(f"demo: {sent} events sent")
            last_report = time.monotonic()
    return sent


@click.command()
@click.option("--url", default=None, help="The API base URL (default: this machine's server from settings).")
@click.option("--key", envvar="AUDITWATCH_DEMO_KEY", required=True, help="A system-role key (backfill allowed).")
@click.option("--admin-key", envvar="AUDITWATCH_DEMO_ADMIN_KEY", help="An admin key to register the demo users.")
@click.option("--seed", default=7, show_default=True)
@click.option("--users", "n_users", default=300, show_default=True)
@click.option("--history-hours", default=24, show_default=True, type=click.IntRange(0, 24 * 366),
              help="Backfill this much history first (0: none), more when it would hold less than a working day of "
                   "weekday hours (begun on a Sunday, it reaches back to Friday).")
@click.option("--duration", default=0.0, help="Stop after this many seconds of live traffic (0: run until stopped).")
def demo(url, key, admin_key, seed, n_users, history_hours, duration) -> None:
    """Send realistic audit traffic, with injected attacks, to a running server."""
    shutdown.dump_stacks_on_signal()
    if url is None:
        s = settings_mod.load()
        url = f"http://{s.host}:{s.port}"
    try:
        run_demo(url=url, key=key, admin_key=admin_key, seed=seed, users=n_users,
                 history=timedelta(hours=history_hours), duration=duration or None, echo=click.echo)
    except KeyboardInterrupt:  # Ctrl-C (under `up`, every component gets it): a stop, not click's "Aborted!"
        click.echo("demo: stopped", err=True)
