"""Generator B: deterministic, with the populations, cohort events and ranged attacks its spec describes."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest

from analytics import orgsim
from analytics.events import read_ndjson, write_ndjson
from analytics.features import PRIVILEGED_TYPES
from analytics.orgsim import org as O


@pytest.fixture(scope="module")
def month() -> orgsim.OrgDataset:
    """400 people over the default 28 days (the quarter-end close and the expiry day fall in its second half)."""
    return orgsim.generate(users=400, days=28, seed=5)


def test_same_seed_same_data_other_seed_other_data():
    one = orgsim.generate(users=60, days=8, seed=3)
    two = orgsim.generate(users=60, days=8, seed=3)
    assert one.events.equals(two.events)
    assert one.incidents == two.incidents and one.cohorts == two.cohorts
    other = orgsim.generate(users=60, days=8, seed=4)
    assert not other.events.equals(one.events)
    assert [i.params for i in other.incidents] != [i.params for i in one.incidents]


def test_events_have_the_ingest_schema_and_round_trip_through_ndjson(tmp_path):
    data = orgsim.generate(users=40, days=5, seed=2)
    path = tmp_path / "events.ndjson"
    assert write_ndjson(data.events, path) == data.events.height
    back = read_ndjson(path)
    assert back.columns == data.events.columns and back.height == data.events.height
    left = data.events.with_columns(pl.col("metadata").replace("{}", None))
    assert back.sort("event_id").select(pl.exclude("metadata")).equals(left.sort("event_id").select(pl.exclude("metadata")))
    assert back["event_id"].n_unique() == back.height


def test_departments_sites_and_shared_egress(month):
    ev = month.events
    counts = dict(pl.Series(list(month.peer_groups.values())).value_counts().iter_rows())
    assert set(counts) == {"engineering", "sales", "support", "finance", "hr", "it_admin", "contractor"}
    assert counts["engineering"] > counts["finance"] > counts["it_admin"]
    # a few corporate addresses carry a large share of everyone
    per_ip = ev.filter(~pl.col("user_id").str.starts_with("svc_"), pl.col("timestamp") < month.attack_start).group_by(
        "source_ip").agg(
        pl.col("user_id").n_unique().alias("people"))
    shared = per_ip.filter(pl.col("people") >= 40)
    assert shared.height >= 3 and shared["people"].sum() >= 400
    assert set(shared["source_ip"]) <= {ip for v in O.SITES.values() for ip in v[2]} | {ip for ip, _ in O.VPN_EGRESS} \
        | {f"{p}.{k}" for p, _ in O.CARRIER_NAT.values() for k in range(1, 25)}
    # contractors connect from abroad and never do privileged work before any attack
    contractors = ev.filter(pl.col("user_id").str.starts_with("x-"), pl.col("timestamp") < month.attack_start)
    assert {"PL", "PT", "MX", "PH"} & set(contractors["source_country"].unique())
    assert contractors.filter(pl.col("event_type").is_in(PRIVILEGED_TYPES[:3])).height == 0


def test_support_covers_the_night_and_service_accounts_are_steady_with_retry_loops(month):
    ev = month.events
    support = [u for u, d in month.peer_groups.items() if d == "support"]
    hours = ev.filter(pl.col("user_id").is_in(support)).group_by(pl.col("timestamp").dt.hour()).len()
    assert hours.height == 24 and hours["len"].min() > 0
    svc = ev.filter(pl.col("user_id").str.starts_with("svc_"))
    daily = svc.group_by("user_id", pl.col("timestamp").dt.date()).len()
    assert daily.group_by("user_id").len()["len"].min() == 28  # every account, every day
    loops = [c for c in month.cohorts if c.kind == "service_retry_loop"]
    assert loops
    for c in loops[:5]:
        (account,) = [e for e in c.entities if e.startswith("svc_")]
        burst = ev.filter(pl.col("user_id") == account, pl.col("timestamp").is_between(c.start, c.end),
                          pl.col("event_type") == "user_login")
        assert burst["outcome"].to_list()[-1] == "success" and (burst["outcome"] == "failure").sum() >= 4


def test_password_expiry_day_many_fail_behind_shared_egress_then_get_in(month):
    (expiry,) = [c for c in month.cohorts if c.kind == "password_expiry"]
    assert expiry.start >= month.attack_start
    people = {e for e in expiry.entities if not e[0].isdigit()}
    assert len(people) >= 80  # hundreds at the default 2,000 people
    ev = month.events.filter(pl.col("user_id").is_in(list(people)),
                             pl.col("timestamp").is_between(expiry.start, expiry.end + timedelta(minutes=5)))
    changed = ev.filter(pl.col("event_type") == "password_change", pl.col("resource_id") == pl.col("user_id"))
    assert changed["user_id"].n_unique() == changed.height == len(people)
    around = (ev.filter(pl.col("event_type") == "user_login")
              .join(changed.select("user_id", pl.col("timestamp").alias("changed")), on="user_id")
              .filter(pl.col("timestamp").is_between(pl.col("changed") - timedelta(minutes=10),
                                                     pl.col("changed") + timedelta(minutes=1))))
    per = around.group_by("user_id").agg(
        ((pl.col("outcome") == "failure") & (pl.col("timestamp") < pl.col("changed"))).sum().alias("failed"),
        ((pl.col("outcome") == "success") & (pl.col("timestamp") > pl.col("changed"))).sum().alias("in"),
        pl.col("source_ip").first())
    assert per.height == len(people)
    assert per["failed"].is_between(1, 4).all() and (per["in"] >= 1).all()  # once or twice (or a typo more), then in
    assert (per["failed"] <= 2).mean() > 0.9
    shared = {ip for v in O.SITES.values() for ip in v[2]} | {ip for ip, _ in O.VPN_EGRESS}
    behind = per.filter(pl.col("source_ip").is_in(list(shared)))
    assert behind.height >= 0.7 * len(people)
    assert behind.group_by("source_ip").len()["len"].max() >= len(people) / 8  # many on one address


def test_quarter_end_close_holiday_release_night_and_maintenance(month):
    ev = month.events
    kinds = {c.kind for c in month.cohorts}
    assert {"finance_close", "holiday", "release_night", "admin_maintenance", "travel"} <= kinds
    (close,) = [c for c in month.cohorts if c.kind == "finance_close"]
    finance = list(close.entities)
    exports = ev.filter(pl.col("user_id").is_in(finance), pl.col("event_type").is_in(["data_export", "export_requested"]))
    rows = exports.with_columns(pl.col("metadata").str.json_path_match("$.rows").cast(pl.Int64).alias("rows"))
    during = rows.filter(pl.col("timestamp").is_between(close.start, close.end))
    before = rows.filter(pl.col("timestamp") < month.attack_start)
    assert during["user_id"].n_unique() >= 0.8 * len(finance)
    assert during["rows"].sum() / 3 > 8 * before["rows"].sum() / 10  # a close day moves far more than a normal one

    (holiday,) = [c for c in month.cohorts if c.kind == "holiday"]
    off = [e for e in holiday.entities if not e[0].isdigit()]
    on_day = ev.filter(pl.col("user_id").is_in(off), pl.col("timestamp").is_between(holiday.start, holiday.end))
    week_before = ev.filter(pl.col("user_id").is_in(off), pl.col("timestamp").is_between(
        holiday.start - timedelta(days=7), holiday.end - timedelta(days=7)))
    assert on_day.height < 0.2 * week_before.height

    night = [c for c in month.cohorts if c.kind == "release_night" and c.start >= month.attack_start][0]
    changes = ev.filter(pl.col("user_id").is_in(list(night.entities)), pl.col("event_type") == "config_change",
                        pl.col("timestamp").is_between(night.start, night.end))
    assert changes.height >= 2 * len(night.entities)

    (window,) = [c for c in month.cohorts if c.kind == "admin_maintenance"]
    (admin,) = window.entities
    assert month.peer_groups[admin] == "it_admin"
    work = ev.filter(pl.col("user_id") == admin, pl.col("timestamp").is_between(window.start, window.end))
    assert work.filter(pl.col("event_type").is_in(PRIVILEGED_TYPES)).height >= 10


def test_labels_reference_real_events_and_name_their_actors(month):
    ev = month.events
    ids = set(ev["event_id"])
    assert {i.scenario for i in month.incidents} == set(orgsim.CLASSES)
    assert all(i.start >= month.attack_start for i in month.incidents)
    for incident in month.incidents:
        assert incident.event_ids and set(incident.event_ids) <= ids
        mine = ev.filter(pl.col("event_id").is_in(list(incident.event_ids)))
        assert (mine["timestamp"].min(), mine["timestamp"].max()) == (incident.start, incident.end)
        named = set(mine["user_id"]) | set(mine["source_ip"])
        assert incident.entities & named
        assert not incident.entities & {ip for ip, _ in O.VPN_EGRESS}  # never the shared egress


def test_the_insider_chain(month):
    chains = [i for i in month.incidents if i.scenario == "insider_chain"]
    assert len(chains) == 3
    for chain in chains:
        actor = chain.actor
        assert actor.startswith("x-") and month.peer_groups[actor] == "contractor"
        steps = month.events.filter(pl.col("event_id").is_in(list(chain.event_ids))).sort("timestamp")
        kinds = steps["event_type"].to_list()
        assert kinds[:4] == ["user_login", "permission_change", "api_key_created", "config_change"]
        assert '"audit.retention_days"' in steps["metadata"][3] and '"after":"1"' in steps["metadata"][3]
        assert steps["resource_id"][1] == actor  # granted to themselves
        assert chain.end - chain.start <= timedelta(minutes=15)
        past = month.events.filter(pl.col("user_id") == actor, pl.col("timestamp") < chain.start)
        assert past.filter(pl.col("event_type").is_in(PRIVILEGED_TYPES[:3])).height == 0


def test_attack_intensity_is_drawn_from_ranges(month):
    for name in ("brute_force_fast", "password_spraying", "credential_stuffing", "exfiltration"):
        params = [dict(i.params) for i in month.incidents if i.scenario == name]
        assert len({tuple(sorted(p.items())) for p in params}) == len(params) == 3
    stuffing = [i for i in month.incidents if i.scenario == "credential_stuffing"]
    for i in stuffing:
        mine = month.events.filter(pl.col("event_id").is_in(list(i.event_ids)))
        assert mine["source_ip"].n_unique() >= 10 and (mine["outcome"] == "success").sum() >= 1
    slow = [i for i in month.incidents if i.scenario == "password_spraying_slow"]
    assert all(i.end - i.start >= timedelta(hours=4) for i in slow)


def test_no_attacks_mode_is_the_same_month_without_incidents():
    quiet = orgsim.generate(users=80, days=10, seed=9, attacks_on=False)
    loud = orgsim.generate(users=80, days=10, seed=9)
    assert quiet.incidents == [] and loud.incidents
    assert [(c.kind, c.entities) for c in quiet.cohorts] == [(c.kind, c.entities) for c in loud.cohorts]
    attack_ids = {e for i in loud.incidents for e in i.event_ids}
    assert loud.events.height - len(attack_ids) == quiet.events.height


def test_attack_days_put_the_attacks_and_the_scored_span_in_the_last_days():
    from analytics import evaluation

    data = evaluation.generate("b", users=60, days=8, attack_days=2, seed=6)
    assert data.attack_start == data.start + timedelta(days=6) and data.window == (6, 8)
    assert data.incidents and all(data.attack_start <= i.start < data.end for i in data.incidents)
    assert data.events["timestamp"].max() < data.end
    with pytest.raises(ValueError, match="history_days"):
        orgsim.generate(users=60, days=8, attack_window=(2, 9))
