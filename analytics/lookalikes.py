"""Benign patterns that look like attacks, for the scenario generator (``analytics.scenarios``).

Every organisation has them, and a detector that pages on them is turned off: a department's
month-end close (a cohort exporting heavily for days), a password-expiry day (hundreds of people
failing once or twice behind the corporate VPN, then succeeding), service accounts in retry loops,
travellers abroad for days, a public holiday, a release night (engineers changing settings off
hours). Each is injected independently of the attack injector and returned as a labelled
``Incident`` (``scenario`` = the pattern), so an evaluation can count how many anomalies each
one draws: every one of them is a false alarm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from storage.incidents import Incident

PATTERNS = ("month_end_close", "password_expiry", "service_retry_loop", "traveller", "holiday", "release_night")
US = 1_000_000
HOUR = 3_600 * US


@dataclass
class People:
    """What the look-alikes need of the generated population (arrays indexed by user)."""

    user_ids: np.ndarray
    department: np.ndarray
    admin: np.ndarray
    working: np.ndarray  # users x hours: on shift
    address: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (users, weeks) -> source ip
    country: np.ndarray  # country code per user
    asn: np.ndarray
    user_agent: np.ndarray
    vpn: np.ndarray  # VPN egress index per user, -1 when not on the VPN
    t0: int  # first hour, microseconds since the epoch
    start: datetime


def lookalike_plan(rng: np.random.Generator, scored_days: list[int], start: datetime) -> dict:
    """Which scored days hold which pattern: the cohort events fall on weekdays, as they do in real life."""
    weekdays = [d for d in scored_days if (start + timedelta(days=d)).weekday() < 5] or list(scored_days)
    return {"month_end": weekdays[:3], "expiry": weekdays[min(1, len(weekdays) - 1)],
            "release": weekdays[min(2, len(weekdays) - 1)], "trips_from": scored_days[0],
            **({"holiday": weekdays[3]} if len(weekdays) > 3 else {})}


def trips_plan(rng: np.random.Generator, users: int, days: int, plan: dict) -> list[tuple[int, int, int, bool]]:
    """A few people abroad for 3-5 days from the first scored day: (user, first day, last day, rare country)."""
    out = []
    for who in rng.choice(users, size=max(2, users // 250), replace=False):
        first = plan["trips_from"] + int(rng.integers(0, 2))
        out.append((int(who), first, min(first + int(rng.integers(2, 5)), days - 1), bool(rng.random() < 0.3)))
    return out


def inject(rng: np.random.Generator, add: Callable[..., None], people: People, plan: dict, *, days: int,
           logins: tuple[np.ndarray, ...],
           trips: list[tuple[int, int, int, bool]]) -> list[Incident]:
    """Add every planned pattern's events through ``add`` (the generator's builder); returns their labels."""
    out: list[Incident] = []
    if plan.get("month_end"):
        out.append(_month_end(rng, add, people, plan["month_end"]))
    if "expiry" in plan:
        out.append(_password_expiry(rng, add, people, plan["expiry"], logins))
    out += _retry_loops(rng, add, people, days)
    if "release" in plan:
        out.append(_release_night(rng, add, people, plan["release"], last=plan["release"] == days - 1))
    for who, first, last, _far in trips:
        out.append(Incident("traveller", _at(people, first * 24), _at(people, (last + 1) * 24),
                            frozenset({str(people.user_ids[who])}), "abroad for days"))
    if "holiday" in plan:
        d = plan["holiday"]
        out.append(Incident("holiday", _at(people, d * 24), _at(people, d * 24 + 24), frozenset(), "traffic drops"))
    return out


def _at(people: People, hour: float) -> datetime:
    return people.start + timedelta(hours=hour)


def _month_end(rng, add, people: People, close_days: list[int]) -> Incident:
    """A whole department (finance, ~5% of people) exports heavily through its working hours for days."""
    cohort = np.nonzero(people.department == "finance")[0]
    hours = np.concatenate([np.arange(d * 24, d * 24 + 24) for d in close_days])
    grid = people.working[np.ix_(cohort, hours)]
    counts = rng.poisson(np.where(grid, rng.uniform(1.5, 5.0, size=(cohort.size, 1)), 0.0))
    ui, hi = np.nonzero(counts)
    reps = counts[ui, hi]
    who = np.repeat(cohort[ui], reps)
    hour = np.repeat(hours[hi], reps)
    n = who.size
    rows = rng.lognormal(10.5, 1.0, size=n).astype(np.int64)
    add(n, ts_us=people.t0 + hour * HOUR + rng.integers(0, HOUR, size=n),
        event_type=np.where(rng.random(n) < 0.7, "data_export", "export_requested").astype(object),
        user_id=people.user_ids[who], outcome="success", source_ip=people.address(who, hour // 24 // 7),
        source_country=people.country[who], source_asn=people.asn[who], user_agent=people.user_agent[who],
        metadata=np.array([f'{{"rows":{r},"dataset":"ledger"}}' for r in rows], dtype=object))
    return Incident("month_end_close", _at(people, close_days[0] * 24), _at(people, close_days[-1] * 24 + 24),
                    frozenset(str(u) for u in people.user_ids[cohort]), "a department's month-end close")


def _password_expiry(rng, add, people: People, day: int, logins) -> Incident:
    """Most people on the main VPN egress fail once or twice at their first login, reset, then get in."""
    lu, lh, lt, l_ip, l_ctry, l_asn = logins  # where each login came from (a traveller: abroad)
    sel = np.nonzero((lh // 24 == day) & (people.vpn[lu] == 0) & (rng.random(lu.size) < 0.8))[0]
    tries = rng.choice([1, 1, 1, 2, 2, 3], size=sel.size)
    for k in range(1, 4):
        pick = sel[tries >= k]
        add(pick.size, ts_us=lt[pick] - (5 - k) * rng.integers(8 * US, 25 * US, size=pick.size),
            event_type="user_login", user_id=people.user_ids[lu[pick]], outcome="failure", source_ip=l_ip[pick],
            source_country=l_ctry[pick], source_asn=l_asn[pick],
            user_agent=people.user_agent[lu[pick]], metadata='{"method":"password","reason":"password_expired"}')
    add(sel.size, ts_us=lt[sel] - rng.integers(2 * US, 6 * US, size=sel.size), event_type="password_change",
        user_id=people.user_ids[lu[sel]], outcome="success", source_ip=l_ip[sel],
        source_country=l_ctry[sel], source_asn=l_asn[sel], user_agent=people.user_agent[lu[sel]],
        resource_id=people.user_ids[lu[sel]], metadata='{"reason":"expired"}')
    users = frozenset(str(u) for u in people.user_ids[lu[sel]])
    return Incident("password_expiry", _at(people, day * 24), _at(people, day * 24 + 24),
                    users | frozenset(str(i) for i in np.unique(l_ip[sel])), f"{len(users)} expired passwords")


def _retry_loops(rng, add, people: People, days: int) -> list[Incident]:
    """Two sync services whose stale credential fails in bursts, then a retry with the fresh one works."""
    out = []
    for i in range(2):
        sid, ip = f"svc-sync{i}", f"10.0.9.{i + 1}"
        episodes = np.sort(rng.integers(0, days * 24 * HOUR - 600 * US, size=int(rng.poisson(3 * days))))
        for t in episodes:
            k = int(rng.integers(5, 26))
            gaps = np.sort(rng.integers(0, int(rng.uniform(30, 150) * US), size=k))
            add(k, ts_us=people.t0 + t + gaps, event_type="user_login", user_id=sid, outcome="failure",
                source_ip=ip, user_agent="sync-agent/3.1", metadata='{"method":"token","reason":"expired_token"}')
            add(1, ts_us=np.array([people.t0 + t + int(gaps[-1]) + 3 * US]), event_type="user_login",
                user_id=np.array([sid], dtype=object), outcome="success", source_ip=ip, user_agent="sync-agent/3.1",
                metadata='{"method":"token"}')
            start = people.start + timedelta(microseconds=int(t))
            out.append(Incident("service_retry_loop", start, start + timedelta(seconds=160), frozenset({sid, ip})))
    return out


def _release_night(rng, add, people: People, day: int, *, last: bool = False) -> Incident:
    """Engineers ship a release in the evening: config changes and checks between 21:00 and 02:00 UTC
    (19:00 to midnight on the dataset's last day, so nothing falls after its end)."""
    begin = 19 if last else 21
    engineers = np.nonzero((people.department == "engineering") & ~people.admin)[0]
    crew = rng.choice(engineers, size=min(engineers.size, max(5, engineers.size // 25)), replace=False)
    k = rng.integers(2, 7, size=crew.size)
    who = np.repeat(crew, k)
    n = who.size
    ts = people.t0 + day * 24 * HOUR + begin * HOUR + rng.integers(0, 5 * HOUR, size=n)
    flags = np.array([f'{{"setting":"feature_flag.release_{int(x)}"}}' for x in rng.integers(1, 40, size=n)],
                     dtype=object)
    add(n, ts_us=ts, event_type="config_change", user_id=people.user_ids[who], outcome="success",
        source_ip=people.address(who, np.full(n, day // 7)), source_country=people.country[who],
        source_asn=people.asn[who], user_agent=people.user_agent[who], metadata=flags)
    q = n * 2
    qwho = np.repeat(crew, 2 * k)
    add(q, ts_us=people.t0 + day * 24 * HOUR + begin * HOUR + rng.integers(0, 5 * HOUR, size=q),
        event_type="query_executed", user_id=people.user_ids[qwho], outcome="success",
        source_ip=people.address(qwho, np.full(q, day // 7)), source_country=people.country[qwho],
        source_asn=people.asn[qwho], user_agent=people.user_agent[qwho], metadata='{"rows":20,"dataset":"deploys"}')
    return Incident("release_night", _at(people, day * 24 + begin), _at(people, day * 24 + begin + 5),
                    frozenset(str(u) for u in people.user_ids[crew]), "a release")



# -- service accounts with a stale credential (generator A's hard habits) ---------------------------------------
# Real retry loops are seldom resolved by a success within minutes: a stale secret fails on a timer, with jitter,
# until someone rotates it; a fleet of hosts shares it; a deploy restarts every replica at once.
STALE_VARIANTS = ("jittered_timer", "fleet", "deploy_bursts", "late_fix", "retry_bursts")


def stale_services(rng: np.random.Generator, add: Callable[..., None], people: People, *, days: int,
                   scored_from: int) -> list[Incident]:
    """One service account per variant whose stale credential fails for weeks, labelled ``service_retry_loop``.

    - ``jittered_timer``: one host retries every 3-30 min (±40 % jitter), never succeeding;
    - ``fleet``: 2-5 hosts in one subnet, each on its own timer, never succeeding; one more host of the subnet
      joins during the scored days (the service scaled out);
    - ``deploy_bursts``: quiet retries every 20-60 min, and on each deploy (1-2 per weekday, in working hours)
      every replica (1-3 hosts) fails 10-60 times within 1-5 min; never succeeding;
    - ``late_fix``: retries every 2-8 min and a nightly job refreshes the token, so a success comes after
      15-90 min of failing, too late to resolve the run;
    - ``retry_bursts``: 2-5 times a day at any hour, a client retries 5-25 times within 30-150 s and gives up.

    Then the services whose secret is rotated on a scored day (``rotated_secrets``).
    """
    out = []
    span = days * 24 * HOUR - 120 * US
    for i, variant in enumerate(STALE_VARIANTS):
        sid, agent = f"svc-{variant.replace('_', '')}{i}", f"{variant.replace('_', '-')}-agent/{i + 1}.{i * 3}"
        begin = int(rng.uniform(0.0, 0.15) * span)  # stale early on: the habit is in the history
        hosts = [f"10.0.{20 + i}.{h + 1}" for h in range(int(rng.integers(2, 6)) if variant == "fleet" else
                                                       int(rng.integers(1, 4)) if variant == "deploy_bursts" else 1)]
        times, ips, successes = [], [], []
        period = {"jittered_timer": (3, 30), "fleet": (3, 30), "deploy_bursts": (20, 60), "late_fix": (2, 8),
                  "retry_bursts": (None, None)}[variant]
        for ip in hosts if variant != "retry_bursts" else ():
            step = rng.uniform(*period) * 60 * US
            n = int((span - begin) / step) + 1
            ts = begin + np.cumsum(step * rng.uniform(0.6, 1.4, size=n)).astype(np.int64)
            ts = ts[ts < span]
            times.append(ts)
            ips.append(np.full(ts.size, ip, dtype=object))
        if variant == "deploy_bursts":
            for d in range(days):
                if (people.start + timedelta(days=d)).weekday() >= 5:
                    continue
                for at in rng.uniform(9, 18, size=int(rng.integers(1, 3))):
                    t = d * 24 * HOUR + int(at * HOUR)
                    if not begin <= t < span:
                        continue
                    for ip in hosts:
                        k = int(rng.integers(10, 61))
                        times.append(t + np.sort(rng.integers(0, int(rng.uniform(1, 5) * 60 * US), size=k)))
                        ips.append(np.full(k, ip, dtype=object))
        if variant == "fleet":
            ip = f"10.0.{20 + i}.{len(hosts) + 1}"
            joins = int(rng.uniform(scored_from * 24 * HOUR, span))
            ts = joins + np.cumsum(rng.uniform(3, 30) * 60 * US * rng.uniform(0.6, 1.4, size=5000)).astype(np.int64)
            times.append(ts[ts < span])
            ips.append(np.full(times[-1].size, ip, dtype=object))
            hosts.append(ip)
        if variant == "retry_bursts":
            episodes = np.sort(rng.integers(begin, span, size=int(rng.uniform(2, 5) * (span - begin) / (24 * HOUR))))
            for t in episodes:
                k = int(rng.integers(5, 26))
                times.append(t + np.sort(rng.integers(0, int(rng.uniform(30, 150) * US), size=k)))
                ips.append(np.full(k, hosts[0], dtype=object))
        if variant == "late_fix":
            nights = np.arange(days) * 24 * HOUR + (rng.uniform(0, 4, size=days) * HOUR).astype(np.int64)
            successes = [t for t in nights if begin < t < span]
        ts, ip = np.concatenate(times), np.concatenate(ips)
        add(ts.size, ts_us=people.t0 + ts, event_type="user_login", user_id=sid, outcome="failure", source_ip=ip,
            user_agent=agent, metadata='{"method":"client_secret","reason":"invalid_client"}')
        if successes:
            ok = np.array(successes, dtype=np.int64)
            add(ok.size, ts_us=people.t0 + ok, event_type="user_login", user_id=sid, outcome="success",
                source_ip=hosts[0], user_agent=agent, metadata='{"method":"client_secret"}')
        first = max(scored_from * 24 * HOUR, begin)
        out.append(Incident("service_retry_loop", _at(people, first / HOUR), _at(people, days * 24),
                            frozenset({sid, *hosts}), f"stale credential: {variant}"))
    return out + rotated_secrets(rng, add, people, days=days, scored_from=scored_from)  # after its draws: they stay


# -- a secret rotated under a running service (generator A's first-time retry loops) ----------------------------
SERVICE_CLIENTS = ("Go-http-client/1.1", "okhttp/4.12.0", "Apache-HttpClient/4.5.14 (Java/17.0.9)",
                   "python-requests/2.31", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)")
ROTATED = ("payroll", "ledger", "tickets", "inventory", "notify", "reports")


def rotated_secrets(rng: np.random.Generator, add: Callable[..., None], people: People, *, days: int,
                    scored_from: int) -> list[Incident]:
    """3-5 service accounts that work quietly all along until their secret is rotated on a scored day, each
    labelled ``service_retry_loop`` for the loop that follows.

    Each logs in every 10-60 min (±30 % jitter) from its own 1-3 hosts (no other account there) with its own
    program's client, and runs 0-3 queries after each login. The rotation comes in a weekday's working hours (a
    person rotates it) or at any hour (a scheduled rotation). Within 2 min every host's program fails and retries
    every 3-60 s (±30 %) for 10-90 min, until the new secret is deployed; its next try succeeds from the same host
    and client, and its work resumes. The loop is the first of its kind: nothing like it is in the history.
    """
    out = []
    span = days * 24 * HOUR
    for i, name in enumerate(rng.permutation(ROTATED)[: int(rng.integers(3, 6))]):
        sid, client = f"svc-{name}{i}", str(rng.choice(SERVICE_CLIENTS))
        hosts = [f"10.0.{40 + i}.{h + 1}" for h in range(int(rng.integers(1, 4)))]
        day = int(rng.integers(scored_from, days))
        weekday = (people.start + timedelta(days=day)).weekday() < 5
        hour = rng.uniform(9, 17) if weekday and rng.random() < 0.6 else rng.uniform(0, 24)
        broken = min(int((day * 24 + hour) * HOUR), span - 2 * HOUR)
        fixed = broken + int(rng.uniform(10, 90) * 60 * US)
        period, retry = rng.uniform(10, 60) * 60 * US, rng.uniform(3, 60) * US
        failures = 0
        for ip in hosts:
            steps = period * rng.uniform(0.7, 1.3, size=int(span / (0.7 * period)) + 2)
            logins = (rng.uniform(0, period) + np.cumsum(steps)).astype(np.int64)
            tries = broken + int(rng.uniform(0, 120) * US) + np.cumsum(
                retry * rng.uniform(0.7, 1.3, size=int((fixed - broken) / (0.7 * retry)) + 3)).astype(np.int64)
            back = int(tries[tries >= fixed][0])  # the first try with the new secret
            failed = tries[tries < fixed]
            ok = np.concatenate([logins[(logins < broken) | (logins > back)], [back]])
            ok = np.sort(ok[ok < span])
            failures += failed.size
            add(failed.size, ts_us=people.t0 + failed, event_type="user_login", user_id=sid, outcome="failure",
                source_ip=ip, user_agent=client, metadata='{"method":"client_secret","reason":"invalid_client"}')
            add(ok.size, ts_us=people.t0 + ok, event_type="user_login", user_id=sid, outcome="success", source_ip=ip,
                user_agent=client, metadata='{"method":"client_secret"}')
            work = np.repeat(ok, rng.integers(0, 4, size=ok.size))
            work = work + rng.integers(US, 300 * US, size=work.size)
            work = work[work < span]  # the last login's queries stay inside the generated days
            add(work.size, ts_us=people.t0 + work, event_type="query_executed", user_id=sid, outcome="success",
                source_ip=ip, user_agent=client, metadata=f'{{"rows":50,"dataset":"{name}"}}')
        out.append(Incident("service_retry_loop", _at(people, broken / HOUR), _at(people, fixed / HOUR + 0.05),
                            frozenset({sid, *hosts}),
                            f"secret rotated: {failures} failures over {(fixed - broken) / 60 / US:.0f} min, then fixed"))
    return out


# -- travellers beyond one destination (generator A's hard habits) -----------------------------------------------
@dataclass
class Itinerary:
    """Where some people are on some days: ``stays[(user, day)] = (country, ip, asn)``; ``bumped``: (user, day)
    pairs whose browser updated itself (a new version, the same client); ``labels``: (users, first, last, note)."""

    stays: dict[tuple[int, int], tuple[str, str, str]]
    bumped: set[tuple[int, int]]
    labels: list[tuple[tuple[int, ...], int, int, str]]


def itineraries(rng: np.random.Generator, places: dict[str, tuple[str, str]], home: np.ndarray,
                candidates: np.ndarray, *, days: int, scored_from: int) -> Itinerary:
    """Two people on multi-country trips (2-3 legs of 1-2 days; one's browser updates on the second leg) and a
    conference: 5-9 people in one country behind one hotel address for 2-3 days. ``places``: country → (ip
    prefix, asn); ``home``: each person's country; ``candidates``: who may travel."""
    out = Itinerary({}, set(), [])
    names = sorted(places)
    chosen = rng.choice(candidates, size=2 + 9, replace=False)
    for k, who in enumerate(chosen[:2]):
        day = scored_from + int(rng.integers(0, 2))
        first = day
        legs = [c for c in rng.permutation(names) if c != home[who]][: int(rng.integers(2, 4))]
        for leg, c in enumerate(legs):
            for _ in range(int(rng.integers(1, 3))):
                if day >= days:
                    break
                prefix, asn = places[c]
                out.stays[(int(who), day)] = (c, f"{prefix}.88.{int(rng.integers(1, 255))}", asn)
                if k == 1 and leg >= 1:
                    out.bumped.add((int(who), day))
                day += 1
        out.labels.append(((int(who),), first, min(day, days) - 1,
                           "a multi-country trip" + (", the browser updated on the way" if k == 1 else "")))
    group = chosen[2: 2 + int(rng.integers(5, 10))]
    c = str(rng.choice(names))
    prefix, asn = places[c]
    ip = f"{prefix}.99.{int(rng.integers(1, 255))}"
    first = scored_from + int(rng.integers(0, 2))
    last = min(first + int(rng.integers(1, 3)), days - 1)
    for who in group:
        if home[who] == c:
            continue
        for day in range(first, last + 1):
            out.stays[(int(who), day)] = (c, ip, asn)
    out.labels.append((tuple(int(w) for w in group if home[w] != c), first, last,
                       f"a conference in {c} behind one hotel address"))
    return out
