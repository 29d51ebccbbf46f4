"""A labelled evaluation dataset: weeks of normal traffic with injected, labelled attacks.

Normal traffic for a few thousand people and their service accounts, with the rhythms and noise
that make fixed thresholds fail: working hours that differ per person, weekends, the odd evening
check, people who mistype their password (a few of them twice or three times), offices behind one
NAT address, home addresses that change weekly, travel, admins doing admin work, batch jobs that
export every night. Attacks (brute force fast and slow, password spraying, credential stuffing with
a final success, exfiltration by export volume, privilege escalation at night, a login from a new
country) are injected in the last days and returned as ``Incident`` labels. Generation is
vectorised (NumPy → Polars) and seeded: the same arguments give the same events.

Why ~430 lines: generator A is one seeded world (population, rhythms, attacks) whose draws must
happen in one order to stay reproducible; its benign look-alikes already live in ``lookalikes.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from analytics import hardcases
from analytics.events import SCHEMA, TS
from analytics.lookalikes import (
    Itinerary,
    People,
    inject,
    itineraries,
    lookalike_plan,
    stale_services,
    trips_plan,
)
from storage.incidents import Incident

__all__ = ["SCENARIOS", "Dataset", "Incident", "generate", "to_frame"]

COUNTRIES = {  # country: (weight, [(ip prefix, asn)])
    "US": (50, [("24.48", "AS7922"), ("66.249", "AS15169"), ("98.210", "AS7018")]),
    "GB": (20, [("81.2", "AS2856"), ("212.58", "AS5089")]),
    "DE": (15, [("85.214", "AS3320"), ("217.160", "AS8560")]),
    "FR": (10, [("90.84", "AS3215"), ("212.27", "AS12322")]),
    "NL": (5, [("145.100", "AS1103")]),
}
BUMPED = {  # each browser after an automatic update: the same client, a newer version
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36":
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/127.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15":
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0":
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
}
RARE_TRAVEL = {"JP": ("133.11", "AS2907"), "BR": ("200.160", "AS28573"), "IN": ("49.36", "AS9829")}
HOSTILE = {"RU": ("185.220", "AS60729"), "CN": ("45.155", "AS4134"), "VN": ("193.142", "AS7552")}
BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
)
SCANNER_UA = "python-requests/2.31"
WORK_MIX = {"file_download": 30, "file_upload": 12, "query_executed": 25, "data_export": 2, "export_requested": 2}
ADMIN_MIX = {"config_change": 6, "permission_change": 2, "api_key_created": 1, "password_change": 1}
SCENARIOS = ("brute_force_fast", "brute_force_slow", "password_spraying", "credential_stuffing",
             "exfiltration", "night_privilege_escalation", "new_country_login", "insider_chain")
DEPARTMENTS = {"engineering": 0.3, "finance": 0.05, "sales": 0.3, "support": 0.25, "hr": 0.05, "legal": 0.05}
VPN_IPS = ("98.210.250.1", "98.210.250.2", "98.210.250.3")  # corporate VPN egress: many people, one address
BURSTS = ("brute_force_fast", "password_spraying", "credential_stuffing")


@dataclass
class Dataset:
    events: pl.DataFrame
    incidents: list[Incident]
    start: datetime
    attack_start: datetime
    end: datetime
    users: int
    peer_groups: dict[str, str] = field(default_factory=dict)
    lookalikes: list[Incident] = field(default_factory=list)  # benign patterns that look like attacks


class _Builder:
    """Columns of events collected as NumPy arrays, turned into one frame at the end."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, n: int, **columns) -> None:
        if n == 0:
            return
        self.parts.append({k: (np.asarray(v) if np.ndim(v) else np.full(n, v, dtype=object))
                           for k, v in columns.items()})

    def frame(self, rng: np.random.Generator) -> pl.DataFrame:
        frames = []
        for part in self.parts:
            frames.append(pl.DataFrame([pl.Series(k, v.tolist(), dtype=pl.String) if v.dtype == object
                                        else pl.Series(k, v) for k, v in part.items()]))
        events = pl.concat(frames, how="diagonal_relaxed")
        n = events.height
        hexes = np.frombuffer(rng.bytes(16 * n).hex().encode(), dtype="S32").astype("U32")
        ids = pl.Series("h", hexes)
        event_id = pl.concat_str([ids.str.slice(0, 8), ids.str.slice(8, 4), pl.lit("4") + ids.str.slice(13, 3),
                                  pl.lit("a") + ids.str.slice(17, 3), ids.str.slice(20, 12)], separator="-")
        events = events.with_columns(pl.select(event_id.alias("event_id")).to_series())
        events = events.with_columns(pl.from_epoch(pl.col("ts_us").cast(pl.Int64), time_unit="us")
                                     .dt.replace_time_zone("UTC").alias("timestamp"))
        for name, dtype in SCHEMA.items():
            if name not in events.columns:
                events = events.with_columns(pl.lit(None, dtype=dtype).alias(name))
        return events.select([pl.col(c).cast(t) for c, t in SCHEMA.items()]).sort("timestamp")


def generate(*, users: int = 3000, days: int = 21, attack_days: int = 7, seed: int = 7,
             start: datetime = datetime(2024, 3, 4, tzinfo=UTC), attacks_per_day: int = 1, attacks: bool = True,
             lookalikes: bool = True, hard: bool = True) -> Dataset:
    """Normal traffic over ``days`` days with labelled attacks in the last ``attack_days``.

    ``attacks=False`` gives a month of steady traffic with no attack at all; ``lookalikes`` adds the benign
    patterns every organisation has (``analytics.lookalikes``) to the scored days, labelled separately;
    ``hard`` adds the patient, blended-in attack variants and the habits they hide among (``analytics.hardcases``).
    """
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng([seed, 13])  # look-alikes and joiners: the base traffic stays as it was
    b = _Builder()
    hours = days * 24
    t0 = int(start.timestamp() * 1_000_000)
    hour_us = 3_600_000_000

    # -- people ---------------------------------------------------------------------------------------
    names = list(COUNTRIES)
    weights = np.array([COUNTRIES[c][0] for c in names], dtype=float)
    country = rng.choice(len(names), size=users, p=weights / weights.sum())
    isp = np.array([rng.integers(len(COUNTRIES[names[c]][1])) for c in country])
    prefix = np.array([COUNTRIES[names[c]][1][i][0] for c, i in zip(country, isp, strict=True)], dtype=object)
    asn = np.array([COUNTRIES[names[c]][1][i][1] for c, i in zip(country, isp, strict=True)], dtype=object)
    start_hour = rng.choice([6, 7, 7, 8, 8, 8, 9, 9, 10, 13, 14], size=users)  # two time-zone clusters
    day_hours = rng.choice([8, 8, 9, 9, 10], size=users)
    admin = rng.random(users) < 0.05
    clumsy = rng.random(users) < 0.05
    dhcp = rng.random(users) < 0.2  # home address changes every week
    office = np.where(rng.random(users) < 0.3, rng.integers(0, 10, size=users), -1)
    second_device = rng.random(users) < 0.15
    browser = rng.integers(0, 3, size=users)
    mobile_ua = np.where(second_device, 3, browser)
    rate = rng.gamma(4.0, 1.5, size=users)  # events per busy hour, ~6 on average
    department = rng.choice(list(DEPARTMENTS), size=users, p=list(DEPARTMENTS.values()))
    user_ids = np.array([f"u{i:05d}" for i in range(users)], dtype=object)
    host = rng.integers(1, 255, size=(users, 2))

    def home_ip(u: np.ndarray, week: np.ndarray) -> np.ndarray:
        third = np.where(dhcp[u], (host[u, 0] + 37 * week) % 254 + 1, host[u, 0])
        return np.array([f"{p}.{a}.{b_}" for p, a, b_ in zip(prefix[u], third, host[u, 1], strict=True)],
                        dtype=object)

    office_ip = np.array([f"{COUNTRIES['US'][1][0][0]}.200.{10 + i}" for i in range(10)], dtype=object)
    # Remote workers behind the corporate VPN: a few egress addresses shared by hundreds of people.
    vpn = np.where((office < 0) & (extra.random(users) < 0.4), extra.choice(3, size=users, p=[0.6, 0.25, 0.15]), -1)
    vpn_ip = np.array(VPN_IPS, dtype=object)

    def address(u: np.ndarray, week: np.ndarray) -> np.ndarray:
        return np.where(office[u] >= 0, office_ip[np.maximum(office[u], 0)],
                        np.where(vpn[u] >= 0, vpn_ip[np.maximum(vpn[u], 0)], home_ip(u, week)))

    # Contractors and new joiners: their history starts part-way through (never an admin).
    joined = np.where((extra.random(users) < 0.03) & ~admin, extra.integers(days // 3, max(days - attack_days, days // 3 + 1),
                                                                            size=users), 0)
    scored_days = list(range(days - attack_days, days))
    plan = lookalike_plan(extra, scored_days, start) if lookalikes else {}

    # -- working hours: a users x hours intensity grid ----------------------------------------------------
    hour_index = np.arange(hours)
    hod = hour_index % 24
    dow = ((hour_index // 24) + start.weekday()) % 7
    offset = (hod[None, :] - start_hour[:, None]) % 24
    on_shift = offset < day_hours[:, None]
    weekend = (dow >= 5)[None, :]
    day_off = rng.random((users, days)) < 0.04  # leave and sick days
    day_off |= np.arange(days)[None, :] < joined[:, None]
    if "holiday" in plan:  # a public holiday: almost nobody works
        day_off[:, plan["holiday"]] |= extra.random(users) < 0.92
    working = on_shift & ~(weekend & (rng.random((users, hours)) < 0.92)) & ~np.repeat(day_off, 24, axis=1)
    shape = 0.6 + 0.6 * np.sin(np.pi * (offset + 0.5) / day_hours[:, None])
    lam = np.where(working, rate[:, None] * shape, 0.0)
    evening = ~working & (rng.random((users, hours)) < 0.01)
    counts = rng.poisson(lam) + evening
    u_idx, h_idx = np.nonzero(counts)
    reps = counts[u_idx, h_idx]
    eu = np.repeat(u_idx, reps)
    eh = np.repeat(h_idx, reps)
    n = eu.size
    ts = t0 + eh * hour_us + rng.integers(0, hour_us, size=n)
    travel_day = rng.random((users, days)) < 0.002
    rare_travel_day = rng.random((users, days)) < 0.00015
    trips = trips_plan(extra, users, days, plan) if lookalikes else []
    itinerary = (itineraries(np.random.default_rng([seed, 37]), {c: v[1][0] for c, v in COUNTRIES.items()}
                             | {c: v for c, v in RARE_TRAVEL.items()}, np.array(names, dtype=object)[country],
                             np.nonzero(~admin)[0], days=days, scored_from=scored_days[0])
                 if lookalikes and hard else Itinerary({}, set(), []))
    for who, first_day, last_day, far in trips:  # a trip of several days, somewhere common or rare
        (rare_travel_day if far else travel_day)[who, first_day:last_day + 1] = True
    day = eh // 24
    week = day // 7
    ip = address(eu, week)
    ctry = np.array(names, dtype=object)[country[eu]]
    net = asn[eu].copy()
    # Travellers: another common country (or, rarely, one few people use), a hotel address.
    def abroad(who, day, ip, ctry, net):
        """Where a traveller is on a trip day: their logins and their work come from the same place."""
        traveling, rare = travel_day[who, day], rare_travel_day[who, day]
        if traveling.any():
            # One destination per person and trip day.
            away = np.array(names, dtype=object)[(who[traveling] * 7 + day[traveling] // 7 * 13) % len(names)]
            ctry[traveling] = away
            net[traveling] = [COUNTRIES[c][1][0][1] for c in away]
            ip[traveling] = [f"{COUNTRIES[c][1][0][0]}.77.{int(x)}"
                             for c, x in zip(away, who[traveling] % 250, strict=True)]
        if rare.any():
            away = np.array(list(RARE_TRAVEL), dtype=object)[(who[rare] * 7 + day[rare] // 7 * 13) % len(RARE_TRAVEL)]
            ctry[rare] = away
            net[rare] = [RARE_TRAVEL[c][1] for c in away]
            ip[rare] = [f"{RARE_TRAVEL[c][0]}.9.{int(x)}" for c, x in zip(away, who[rare] % 250, strict=True)]
        for (w, d), (c, addr, a) in itinerary.stays.items():  # multi-country trips, a conference
            at = (who == w) & (day == d)
            ctry[at], ip[at], net[at] = c, addr, a

    def updated(who, day, ua):
        """A browser that updated itself during a trip: a new version of the same client."""
        for w, d in itinerary.bumped:
            at = (who == w) & (day == d)
            ua[at] = [BUMPED.get(x, x) for x in ua[at]]
        return ua

    abroad(eu, day, ip, ctry, net)
    ua = updated(eu, day, np.where(rng.random(n) < 0.2, np.array(BROWSERS, dtype=object)[mobile_ua[eu]],
                                   np.array(BROWSERS, dtype=object)[browser[eu]]))
    types = np.array(list(WORK_MIX), dtype=object)[
        rng.choice(len(WORK_MIX), size=n, p=np.array(list(WORK_MIX.values())) / sum(WORK_MIX.values()))]
    # Admins do admin work during their shift.
    is_admin_work = admin[eu] & (rng.random(n) < 0.04) & working[eu, eh]
    admin_types = np.array(list(ADMIN_MIX), dtype=object)[
        rng.choice(len(ADMIN_MIX), size=n, p=np.array(list(ADMIN_MIX.values())) / sum(ADMIN_MIX.values()))]
    types = np.where(is_admin_work, admin_types, types)
    # Engineers flip feature flags and deploy settings now and then, during the day.
    types = np.where((department[eu] == "engineering") & ~admin[eu] & (extra.random(n) < 0.004), "config_change", types)
    meta = _metadata(rng, types, department[eu], user_ids)
    flags = (types == "config_change") & (department[eu] == "engineering") & ~admin[eu]
    meta[flags] = [f'{{"setting":"feature_flag.f{int(x)}"}}' for x in extra.integers(1, 60, size=int(flags.sum()))]
    b.add(n, ts_us=ts, event_type=types, user_id=user_ids[eu], outcome="success", source_ip=ip,
          source_country=ctry, source_asn=net, user_agent=ua, metadata=meta,
          resource_id=np.where(np.isin(types, ["password_change", "permission_change"]),
                               user_ids[rng.integers(0, users, size=n)], None))

    # -- logins (with typos) at the start of each working day ----------------------------------------------
    first = working & ~np.roll(working, 1, axis=1)
    lu, lh = np.nonzero(first)
    lt = t0 + lh * hour_us + rng.integers(0, 600_000_000, size=lu.size)
    l_ip = address(lu, lh // 24 // 7)
    l_ctry = np.array(names, dtype=object)[country[lu]]
    l_asn = asn[lu].copy()
    abroad(lu, lh // 24, l_ip, l_ctry, l_asn)
    l_ua = updated(lu, lh // 24, np.array(BROWSERS, dtype=object)[browser[lu]])
    typos = np.where(rng.random(lu.size) < 0.04, 1, 0)
    typos = np.where(clumsy[lu] & (rng.random(lu.size) < 0.3), rng.choice([1, 2, 2, 3], size=lu.size), typos)
    for k in range(1, 4):
        sel = typos >= k
        b.add(int(sel.sum()), ts_us=lt[sel] - (4 - k) * rng.integers(5_000_000, 20_000_000, size=int(sel.sum())),
              event_type="user_login", user_id=user_ids[lu[sel]], outcome="failure", source_ip=l_ip[sel],
              source_country=l_ctry[sel], source_asn=l_asn[sel],
              user_agent=l_ua[sel],
              metadata='{"method":"password","reason":"bad_password"}')
    b.add(lu.size, ts_us=lt, event_type="user_login", user_id=user_ids[lu], outcome="success", source_ip=l_ip,
          source_country=l_ctry, source_asn=l_asn, user_agent=l_ua,
          metadata='{"method":"password"}')

    # -- service accounts ----------------------------------------------------------------------------------
    services = max(8, users // 100)
    for i in range(services):
        sid = f"svc-{('etl', 'backup', 'ci', 'billing', 'crm', 'search', 'mail', 'sso')[i % 8]}{i // 8}"
        per_hour = rng.poisson(30, size=hours)
        sh = np.repeat(hour_index, per_hour)
        b.add(sh.size, ts_us=t0 + sh * hour_us + rng.integers(0, hour_us, size=sh.size), event_type="query_executed",
              user_id=sid, outcome="success", source_ip=f"10.0.{i // 250}.{i % 250 + 1}", source_country=None,
              source_asn=None, user_agent="python-requests/2.32", metadata='{"rows":100,"dataset":"warehouse"}')
        if i % 8 in (0, 1):  # etl and backup export every night
            nights = np.arange(days)
            rows = (250_000 if i % 8 == 1 else 40_000) * rng.uniform(0.8, 1.25, size=days)
            b.add(days, ts_us=t0 + (nights * 24 + 2) * hour_us + rng.integers(0, 600_000_000, size=days),
                  event_type="data_export", user_id=sid, outcome="success",
                  source_ip=f"10.0.{i // 250}.{i % 250 + 1}", user_agent="python-requests/2.32",
                  metadata=np.array([f'{{"rows":{int(r)},"dataset":"backup"}}' for r in rows], dtype=object))

    # -- benign look-alikes ------------------------------------------------------------------------------------
    people = People(user_ids=user_ids, department=department, admin=admin, working=working, address=address,
                    country=np.array(names, dtype=object)[country], asn=asn,
                    user_agent=np.array(BROWSERS, dtype=object)[browser], vpn=vpn, t0=t0, start=start)
    benign = inject(extra, b.add, people, plan, days=days, logins=(lu, lh, lt, l_ip, l_ctry, l_asn),
                    trips=trips) if lookalikes else []
    benign += [Incident("traveller", start + timedelta(days=first), start + timedelta(days=last + 1),
                        frozenset(str(user_ids[w]) for w in who), note) for who, first, last, note in itinerary.labels]
    if hard:  # its own generator: the draws above stay as they were
        harder = np.random.default_rng([seed, 29])
        more = hardcases.Extra(start_hour=start_hour, day_hours=day_hours, days=days, scored_days=scored_days,
                               month_end=plan.get("month_end", []) if lookalikes else [])
        late, habits = hardcases.late_workers(harder, b.add, people, more)
        habits += hardcases.steady_pollers(harder, b.add, people, more)
        habits += stale_services(np.random.default_rng([seed, 31]), b.add, people, days=days,
                                 scored_from=scored_days[0])
        benign += habits if lookalikes else []

    # -- attacks ---------------------------------------------------------------------------------------------
    incidents: list[Incident] = []
    attack_start = start + timedelta(days=days - attack_days)
    humans = np.arange(users)
    contractors = np.nonzero((joined > 0) & (department != "engineering"))[0]
    insiders: list = []
    for d in (range(days - attack_days, days) if attacks else ()):
        for _ in range(attacks_per_day):
            incidents += _attacks(rng, b, start + timedelta(days=d), humans, admin, user_ids, start_hour,
                                  day_hours, browser, prefix, host, country, names)
            fresh = np.setdiff1d(contractors, insiders)  # a different contractor each time
            if fresh.size == 0:
                fresh = np.setdiff1d(humans[~admin & (department != "engineering")], insiders)
            insiders.append(int(extra.choice(fresh)))
            incidents.append(_insider_chain(extra, b, start + timedelta(days=d), insiders[-1], people, address))
    if hard and attacks and attacks_per_day > 0:
        incidents += hardcases.attacks(harder, b.add, people, more, late, rounds=max(2, attack_days // 2))
    # Everything a traveller does on a trip day comes from where they are, whichever part of the generator
    # added it (a finance close, a late evening, an expiry day): only what came from their usual address moves.
    away = travel_day | rare_travel_day
    for w, d in itinerary.stays:
        away[w, d] = True
    for part in b.parts:
        uid = part.get("user_id")
        if uid is None or "source_ip" not in part:
            continue
        who = np.array([int(u[1:]) if isinstance(u, str) and u[:1] == "u" and u[1:].isdigit() else -1
                        for u in uid.tolist()])
        day = np.clip((part["ts_us"] - t0) // (24 * hour_us), 0, days - 1).astype(np.int64)
        mine = (who >= 0) & (who < users)
        w = np.where(mine, who, 0)
        moved = mine & away[w, day] & (part["source_ip"] == address(w, day // 7))
        if moved.any():
            ip, c, a = (part.get(k, np.full(who.size, None, dtype=object)).astype(object).copy()
                        for k in ("source_ip", "source_country", "source_asn"))
            sub = tuple(x[moved] for x in (ip, c, a))
            abroad(w[moved], day[moved], *sub)
            ip[moved], c[moved], a[moved] = sub
            part["source_ip"], part["source_country"], part["source_asn"] = ip, c, a
    events = b.frame(rng)
    peer_groups = {str(u): str(g) for u, g in zip(user_ids, department, strict=True)}
    return Dataset(events, sorted(incidents, key=lambda i: i.start), start, attack_start,
                   start + timedelta(days=days), users, peer_groups, sorted(benign, key=lambda i: i.start))


def _insider_chain(rng, b: _Builder, day: datetime, who: int, people: People, address) -> Incident:
    """A contractor who never did a privileged action: in at ~03:00, admin for themselves, a key, audit off."""
    us = 1_000_000
    uid = str(people.user_ids[who])
    t = int(day.timestamp() * us) + int(rng.uniform(2.5, 3.75) * 3600 * us)
    steps = np.sort(rng.integers(30 * us, 420 * us, size=3))
    types = ["user_login", "permission_change", "api_key_created", "config_change"]
    meta = ['{"method":"password"}', f'{{"granted":"admin","target_user":"{uid}"}}', '{"scope":"all"}',
            '{"setting":"audit.retention_days","value":1}']
    stamps = [t, t + int(steps[0]), t + int(steps[1]), t + int(steps[2])]
    if rng.random() < 0.5:  # and sometimes takes a modest export on the way out
        types.append("data_export")
        meta.append(f'{{"rows":{int(rng.integers(2_000, 20_000))},"dataset":"crm"}}')
        stamps.append(stamps[-1] + int(rng.integers(20, 120)) * us)
    k = len(types)
    week = np.full(1, (day - people.start).days // 7)
    b.add(k, ts_us=np.array(stamps), event_type=np.array(types, dtype=object), user_id=uid, outcome="success",
          source_ip=str(address(np.array([who]), week)[0]), source_country=str(people.country[who]),
          source_asn=str(people.asn[who]), user_agent=str(people.user_agent[who]),
          resource_id=np.array([None, uid, None, None, None][:k], dtype=object), metadata=np.array(meta, dtype=object))
    end = datetime.fromtimestamp(stamps[-1] / us, UTC)
    return Incident("insider_chain", datetime.fromtimestamp(t / us, UTC), end, frozenset({uid}),
                    "self-granted admin, an API key and audit retention set to 1 day within minutes")


def _metadata(rng: np.random.Generator, types: np.ndarray, department: np.ndarray, user_ids: np.ndarray) -> np.ndarray:
    n = types.size
    rows = rng.lognormal(7, 1.0, size=n).astype(np.int64)
    size = rng.lognormal(12, 1.2, size=n).astype(np.int64)
    qrows = rng.integers(1, 500, size=n)
    meta = np.full(n, "{}", dtype=object)
    for kind, template in (("file_download", 'bytes'), ("file_upload", 'bytes')):
        sel = types == kind
        meta[sel] = [f'{{"{template}":{s},"bucket":"{d}"}}' for s, d in zip(size[sel], department[sel], strict=True)]
    for kind in ("data_export", "export_requested"):
        sel = types == kind
        meta[sel] = [f'{{"rows":{r},"dataset":"crm"}}' for r in rows[sel]]
    sel = types == "query_executed"
    meta[sel] = [f'{{"rows":{r},"dataset":"tickets"}}' for r in qrows[sel]]
    sel = types == "config_change"
    meta[sel] = '{"setting":"sso.timeout"}'
    sel = types == "permission_change"
    meta[sel] = '{"granted":"viewer"}'
    return meta


def _attacks(rng, b: _Builder, day: datetime, humans, admin, user_ids, start_hour, day_hours, browser, prefix,
             host, country, names) -> list[Incident]:
    us = 1_000_000
    base = int(day.timestamp() * us)
    out: list[Incident] = []

    def hostile() -> tuple[str, str, str]:
        c = str(rng.choice(list(HOSTILE)))
        return f"{HOSTILE[c][0]}.{rng.integers(1, 255)}.{rng.integers(1, 255)}", c, HOSTILE[c][1]

    def at_day(lo_h: float, hi_h: float) -> int:
        return base + int(rng.uniform(lo_h, hi_h) * 3600 * us)

    def fail(ts, users_, ip, c, a, ua=SCANNER_UA) -> None:
        b.add(len(ts), ts_us=np.asarray(ts), event_type="user_login", user_id=np.asarray(users_, dtype=object),
              outcome="failure", source_ip=ip, source_country=c, source_asn=a, user_agent=ua,
              metadata='{"method":"password","reason":"bad_password"}')

    def when(t: int) -> datetime:
        return datetime.fromtimestamp(t / us, UTC)

    # Fast brute force: 40-80 guesses at one user in 2-3 minutes.
    victim = user_ids[rng.choice(humans)]
    ip, c, a = hostile()
    t = at_day(0, 23.9)
    span = int(rng.uniform(120, 180) * us)
    n = int(rng.integers(40, 81))
    fail(t + np.sort(rng.integers(0, span, size=n)), [victim] * n, ip, c, a)
    out.append(Incident("brute_force_fast", when(t), when(t + span), frozenset({victim, ip})))

    # Slow brute force: one guess every 2-5 minutes for three hours.
    victim = user_ids[rng.choice(humans)]
    ip, c, a = hostile()
    t = at_day(0, 20.5)
    gaps = rng.integers(120 * us, 300 * us, size=60).cumsum()
    gaps = gaps[gaps < 3 * 3600 * us]
    fail(t + gaps, [victim] * gaps.size, ip, c, a)
    out.append(Incident("brute_force_slow", when(t), when(t + int(gaps[-1])), frozenset({victim, ip})))

    # Password spraying: one source, one guess each at 60-100 users in 10-20 minutes.
    ip, c, a = hostile()
    t = at_day(0, 23.6)
    span = int(rng.uniform(600, 1200) * us)
    targets = user_ids[rng.choice(humans, size=int(rng.integers(60, 101)), replace=False)]
    fail(t + np.sort(rng.integers(0, span, size=targets.size)), targets, ip, c, a)
    out.append(Incident("password_spraying", when(t), when(t + span), frozenset({ip, *targets})))

    # Credential stuffing: leaked pairs tried across 80-150 users, one works at the end.
    ip, c, a = hostile()
    t = at_day(0, 23.6)
    span = int(rng.uniform(300, 900) * us)
    targets = user_ids[rng.choice(humans, size=int(rng.integers(80, 151)), replace=False)]
    fail(t + np.sort(rng.integers(0, span, size=targets.size)), targets, ip, c, a, ua=BROWSERS[0])
    winner = targets[-1]
    b.add(1, ts_us=np.array([t + span + 5 * us]), event_type="user_login", user_id=np.array([winner], dtype=object),
          outcome="success", source_ip=ip, source_country=c, source_asn=a, user_agent=BROWSERS[0],
          metadata='{"method":"password"}')
    out.append(Incident("credential_stuffing", when(t), when(t + span + 5 * us), frozenset({ip, *targets})))

    # Exfiltration: an ordinary user exports 20-40 large datasets within half an hour.
    who = rng.choice(humans[~admin])
    t = base + int((start_hour[who] + rng.uniform(1, max(day_hours[who] - 1.5, 1.5))) * 3600 * us)
    k = int(rng.integers(20, 41))
    span = 1800 * us
    my_ip = f"{prefix[who]}.{host[who, 0]}.{host[who, 1]}"
    b.add(k, ts_us=t + np.sort(rng.integers(0, span, size=k)), event_type="data_export", user_id=user_ids[who],
          outcome="success", source_ip=my_ip, source_country=names[country[who]], user_agent=BROWSERS[browser[who]],
          metadata=np.array([f'{{"rows":{int(r)},"dataset":"crm"}}' for r in rng.integers(200_000, 900_000, size=k)],
                            dtype=object))
    out.append(Incident("exfiltration", when(t), when(t + span), frozenset({user_ids[who]})))

    # Privilege escalation at night: an ordinary user grants themselves admin and makes an API key.
    who = rng.choice(humans[~admin])
    night = (start_hour[who] + day_hours[who] + rng.uniform(3, 6)) % 24
    t = base + int(night * 3600 * us)
    b.add(2, ts_us=np.array([t, t + 90 * us]), event_type=np.array(["permission_change", "api_key_created"], dtype=object),
          user_id=user_ids[who], outcome="success", source_ip=f"{prefix[who]}.{host[who, 0]}.{host[who, 1]}",
          source_country=names[country[who]], user_agent=BROWSERS[browser[who]],
          resource_id=np.array([user_ids[who], None], dtype=object),
          metadata=np.array([f'{{"granted":"admin","target_user":"{user_ids[who]}"}}', '{"scope":"all"}'], dtype=object))
    out.append(Incident("night_privilege_escalation", when(t), when(t + 90 * us), frozenset({user_ids[who]})))

    # A login from a country nobody here uses, then some downloads.
    who = rng.choice(humans)
    ip, c, a = hostile()
    t = at_day(0, 23.5)
    ua = BROWSERS[int(rng.integers(0, 3))] if rng.random() < 0.5 else SCANNER_UA
    b.add(1, ts_us=np.array([t]), event_type="user_login", user_id=np.array([user_ids[who]], dtype=object),
          outcome="success", source_ip=ip, source_country=c, source_asn=a, user_agent=ua, metadata='{"method":"password"}')
    k = int(rng.integers(2, 8))
    b.add(k, ts_us=t + np.sort(rng.integers(us, 900 * us, size=k)), event_type="file_download", user_id=user_ids[who],
          outcome="success", source_ip=ip, source_country=c, source_asn=a, user_agent=ua,
          metadata='{"bytes":350000,"bucket":"finance"}')
    out.append(Incident("new_country_login", when(t), when(t + 900 * us), frozenset({user_ids[who], ip})))
    return out


def to_frame(incidents: list[Incident]) -> pl.DataFrame:
    """Labels as a frame (for writing next to a generated events file)."""
    return pl.DataFrame({
        "scenario": [i.scenario for i in incidents],
        "start": [i.start for i in incidents], "end": [i.end for i in incidents],
        "entities": [sorted(i.entities) for i in incidents],
    }, schema={"scenario": pl.String, "start": TS, "end": TS, "entities": pl.List(pl.String)})
