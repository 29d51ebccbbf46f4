"""End-to-end alert latency: the event that crosses a threshold → the fake Slack / PagerDuty receiving it.

Runs the real pieces at their default schedules: the API server (gunicorn) takes failed logins over
HTTP, `auditwatch worker` evaluates rules every 10 s (group_wait 10 s) and delivers the outbox every
2 s, to local fakes of Slack (HTTP) and PagerDuty (TLS, throwaway CA). Each trial is a fresh user
whose 10th failure within a minute crosses `failed_login_burst`; latency is from the moment that
batch was acknowledged to the moment each fake received the notification about that user.
Baseline (same run): one direct notifier call to each fake.

Also measures the two ways a threshold rule can count (``--query-events``): raw events over the
window vs the events_1m rollup + raw tail.

    python -m bench.alerts_latency --trials 12 --interval 7
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from alerts.lifecycle import fingerprint
from alerts.notifiers import PagerDuty, SlackChat
from alerts.testing import FakePagerDuty, FakeSlack
from bench.harness import ROOT, database, percentile, server
from storage.auth import Role
from storage.events import EventRecord, Outcome
from storage.timescale import alerts as store
from storage.timescale import catalog, db, outbox, rollups, rule_inputs
from storage.timescale.writer import EventWriter


def stats(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:34} no samples"
    return (f"{name:34} n={len(values):3}  P50 {percentile(values, 50):6.2f} s  P99 {percentile(values, 99):6.2f} s"
            f"  max {max(values):6.2f} s")


def latency(args: argparse.Namespace, url: str, tmp: Path) -> None:
    slack, pd = FakeSlack(), FakePagerDuty(tmp)
    pool = db.open_pool(url, min_size=1, max_size=2)
    _, key = catalog.create_key(pool, f"bench-{uuid.uuid4().hex[:8]}", Role.SYSTEM, "bench")
    env = {"AUDITWATCH_DATABASE_URL": url, "AUDITWATCH_DATA_DIR": str(tmp / "data"),
           "AUDITWATCH_SLACK_BOT_TOKEN": FakeSlack.TOKEN, "AUDITWATCH_SLACK_API_URL": slack.url,
           "AUDITWATCH_PAGERDUTY_ROUTING_KEY": FakePagerDuty.ROUTING_KEY,
           "AUDITWATCH_PAGERDUTY_EVENTS_URL": pd.url, "AUDITWATCH_PAGERDUTY_CA_BUNDLE": str(pd.ca_path),
           "AUDITWATCH_UNKNOWN_USERS": "register"}
    log = (tmp / "worker.log").open("wb")
    worker = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "worker"], cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT, env={**os.environ, **env})
    crossed: dict[str, float] = {}
    try:
        # Baseline: one direct call to each fake, no scheduling in between.
        direct = {"slack": [], "pagerduty": []}
        slack_notifier = SlackChat("b", token=FakeSlack.TOKEN, channel="#bench", base_url=slack.url)
        pd_notifier = PagerDuty("b", routing_key=FakePagerDuty.ROUTING_KEY, base_url=pd.url, ca_bundle=str(pd.ca_path))
        sample = {"status": "firing", "alerts": [{"fingerprint": "0" * 20, "status": "firing", "title": "baseline",
                                                  "severity": "info", "rule_id": "baseline"}]}
        for i in range(5):
            for name, notifier in (("slack", slack_notifier), ("pagerduty", pd_notifier)):
                started = time.perf_counter()
                notifier.send(i, sample)
                direct[name].append(time.perf_counter() - started)
        with server(url, workers=1, threads=8, **env) as base:
            headers = {"Authorization": f"Bearer {key}"}
            time.sleep(2)
            print(f"worker + server up; {args.trials} trials, one every {args.interval} s", flush=True)
            for _ in range(args.trials):
                user = f"bench-{uuid.uuid4().hex[:8]}"
                now = datetime.now(UTC)
                batch = [{"event_id": str(uuid.uuid4()), "timestamp": (now - timedelta(seconds=9 - j)).isoformat(),
                          "event_type": "user_login", "user_id": user, "outcome": "failure"} for j in range(10)]
                response = requests.post(f"{base}/api/v1/logs/batch", json=batch, headers=headers, timeout=30)
                response.raise_for_status()
                crossed[user] = time.time()
                time.sleep(args.interval)
            deadline = time.time() + 120
            while time.time() < deadline and (len(_pd_times(pd, crossed)) < len(crossed)
                                              or len(_slack_times(slack, crossed)) < len(crossed)):
                time.sleep(0.5)
        if args.verbose:  # where the time went, per trial: evaluation, group wait, delivery
            firing = {a.group_values.get("user_id"): a for a in store.list_alerts(pool, limit=1000)}
            notes = {n.payload["alerts"][0]["fingerprint"]: n for n in outbox.notifications(pool, receiver="pagerduty",
                                                                                          limit=1000)}
            pd_times = _pd_times(pd, crossed)
            for user, at in sorted(crossed.items(), key=lambda kv: kv[1]):
                alert = firing.get(user)
                note = notes.get(alert.fingerprint) if alert else None
                print(f"  {user}: firing +{alert.started_at.timestamp() - at:5.1f} s"
                      f"  enqueued +{note.created_at.timestamp() - at:5.1f} s" if note else "  not enqueued",
                      f"  received +{pd_times.get(user, float('nan')) - at:5.1f} s")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        pool.close()
        slack.close()
        pd.close()
    pd_lat = [pd_at - crossed[u] for u, pd_at in _pd_times(pd, crossed).items()]
    slack_times = _slack_times(slack, crossed)
    slack_lat = [t - crossed[u] for u, t in slack_times.items()]
    print(stats("baseline: direct Slack call", direct["slack"]))
    print(stats("baseline: direct PagerDuty call", direct["pagerduty"]))
    print(stats("event → PagerDuty (per alert)", pd_lat))
    print(stats("event → Slack (grouped by rule)", slack_lat))
    first = min(crossed.values())
    firsts = [t - crossed[u] for u, t in slack_times.items() if crossed[u] == first]
    print(stats("event → Slack, first of its group", firsts))
    print(f"missing: PagerDuty {len(crossed) - len(pd_lat)}, Slack {len(crossed) - len(slack_lat)}; "
          f"Slack messages {sum(m['channel'] != '#bench' for m in slack.messages)} for {len(crossed)} alerts (grouping)")


def _pd_times(pd: FakePagerDuty, crossed: dict[str, float]) -> dict[str, float]:
    keys = {fingerprint("failed_login_burst", {"user_id": u}): u for u in crossed}
    out: dict[str, float] = {}
    for r in list(pd.requests):
        body = r.get("body") or {}
        user = keys.get(body.get("dedup_key")) if isinstance(body, dict) else None
        if user and body.get("event_action") == "trigger" and user not in out:
            out[user] = r["at"]
    return out


def _slack_times(slack: FakeSlack, crossed: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in list(slack.requests):
        if r["path"] != "/api/chat.postMessage":
            continue
        text = json.dumps(r.get("body"))
        for user in crossed:
            if user not in out and f"Failed-login burst for {user}" in text:
                out[user] = r["at"]
    return out


def query_costs(url: str, events: int) -> None:
    """Raw count over the window vs events_1m + raw tail, for the two default threshold shapes."""
    pool = db.open_pool(url, min_size=1, max_size=4)
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        print(f"writing {events:,} events over the last 2 hours ...", flush=True)
        writer = EventWriter(pool)
        step = timedelta(hours=2) / events
        for low in range(0, events, 20_000):
            writer.write([EventRecord(event_id=uuid.uuid4(), timestamp=now - i * step, received_at=now,
                                      event_type="user_login", user_id=f"u{i % 3000}",
                                      outcome=Outcome.FAILURE if i % 7 == 0 else Outcome.SUCCESS,
                                      source_ip=f"10.{i % 50}.{i % 200}.{i % 250 + 1}")
                          for i in range(low, min(events, low + 20_000))])
        rollups.refresh(pool, now=now)

        def timed(fn, n: int = 5) -> float:
            fn()
            started = time.perf_counter()
            for _ in range(n):
                fn()
            return (time.perf_counter() - started) / n * 1000

        for label, window, group_by, distinct, dims in (
                ("1m per user_id", timedelta(minutes=1), ["user_id"], None, ["user_id"]),
                ("10m distinct users per source_ip", timedelta(minutes=10), ["source_ip"], "user_id",
                 ["source_ip", "user_id"])):
            raw = timed(lambda w=window, g=group_by, d=distinct: rule_inputs.threshold_hits(
                pool, start=now - w, end=now, event_types=["user_login"], outcome="failure", group_by=g, distinct=d,
                at_least=10))
            rollup = timed(lambda w=window, d=dims: rollups.series(pool, rollups.SeriesQuery(
                start=now - w, end=now, interval="1m", group_by=d, event_types=["user_login"], outcome="failure")))
            print(f"{label:34} raw {raw:7.1f} ms   events_1m+tail {rollup:7.1f} ms   (rollup/raw {rollup / raw:.2f}x)")
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an existing database (default: a throwaway local cluster)")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--interval", type=float, default=7.0, help="seconds between trials")
    parser.add_argument("--verbose", action="store_true", help="per-trial breakdown")
    parser.add_argument("--query-events", type=int, default=0, help="also compare raw vs rollup counting")
    args = parser.parse_args()
    with database(args.url) as url, tempfile.TemporaryDirectory() as tmp:
        latency(args, url, Path(tmp))
        if args.query_events:
            query_costs(url, args.query_events)


if __name__ == "__main__":
    main()
