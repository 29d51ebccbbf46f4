"""Generator A's hard variants: the slow, blended-in attacks and the benign habits that hide them.

The easy attacks in ``analytics.scenarios`` are loud (dozens of guesses in minutes, one scanner
address). Real ones are often patient: a few guesses an hour for a day or two from rotating
proxies, a spray that touches each account once over a night, an export by someone whose whole
department is exporting (month end), an export staged over an afternoon as dozens of modest files, a self-grant of admin by someone who often works late, a
login from a country that travellers also visit. Each intensity and timing is drawn from a range.
The benign habits they hide among are here too: people who work some evenings, and monitoring
accounts whose stale credential fails steadily every few minutes, all day, every day.

Labels use the attack classes' own names (``brute_force_slow``, ``password_spraying_slow``,
``exfiltration``, ``night_privilege_escalation``, ``new_country_login``) with a ``hard:``
description, so recall per class counts easy and hard instances together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from analytics.lookalikes import People
from storage.incidents import Incident

US = 1_000_000
HOUR = 3_600 * US
# Residential and hosting proxies in ordinary countries (rotating): an address says little on its own.
PROXY_NETS = (("US", "104.28", "AS13335"), ("US", "172.98", "AS20473"), ("DE", "88.198", "AS24940"),
              ("NL", "51.15", "AS16276"), ("GB", "178.62", "AS14061"), ("FR", "51.91", "AS16276"),
              ("RU", "5.188", "AS51659"), ("UA", "91.219", "AS15497"))
# Countries a traveller may visit, and a compromised account may be used from.
ELSEWHERE = (("ES", "83.44", "AS3352"), ("IT", "79.56", "AS3269"), ("SG", "116.12", "AS9506"),
             ("AE", "94.200", "AS5384"), ("MX", "189.203", "AS8151"))
BUMPED = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/{v}.0 Safari/537.36",
          "Mozilla/5.0 (X11; Linux x86_64; rv:{v}.0) Gecko/20100101 Firefox/{v}.0")
POLL_UA = "monitor-agent/2.4"


@dataclass
class Extra:
    """What the hard variants need beyond ``People``: shifts, the scored days, the month-end days."""

    start_hour: np.ndarray
    day_hours: np.ndarray
    days: int
    scored_days: list[int]
    month_end: list[int]


def late_workers(rng: np.random.Generator, add: Callable[..., None], people: People, extra: Extra
                 ) -> tuple[np.ndarray, list[Incident]]:
    """About 1% of people work 1-3 hours late on 15-40% of their days, all month (a habit, not an attack)."""
    humans = np.nonzero(~people.admin)[0]
    crew = rng.choice(humans, size=max(3, humans.size // 100), replace=False)
    out = []
    for who in crew:
        share = rng.uniform(0.15, 0.4)
        nights = np.nonzero(rng.random(extra.days) < share)[0]
        for d in nights:
            begin = (extra.start_hour[who] + extra.day_hours[who] + rng.uniform(2.0, 5.0))
            k = int(rng.integers(3, 15))
            ts = people.t0 + int((d * 24 + begin) * HOUR) + np.sort(rng.integers(0, int(rng.uniform(1, 3) * HOUR),
                                                                               size=k))
            hour = (ts - people.t0) // HOUR
            kinds = rng.choice(["file_download", "query_executed", "file_upload"], size=k, p=[0.4, 0.45, 0.15])
            add(k, ts_us=ts, event_type=kinds.astype(object), user_id=people.user_ids[who], outcome="success",
                source_ip=people.address(np.full(k, who), hour // 24 // 7), source_country=people.country[who],
                source_asn=people.asn[who], user_agent=people.user_agent[who],
                metadata=np.array([f'{{"rows":{int(r)},"dataset":"tickets"}}' for r in rng.integers(1, 400, size=k)],
                                  dtype=object))
        scored = [d for d in nights if d in extra.scored_days]
        if scored:
            out.append(Incident("late_worker", _at(people, scored[0] * 24), _at(people, scored[-1] * 24 + 30),
                                frozenset({str(people.user_ids[who])}), "works late some evenings"))
    return crew, out


def steady_pollers(rng: np.random.Generator, add: Callable[..., None], people: People, extra: Extra
                   ) -> list[Incident]:
    """Two monitoring accounts with a stale password: one failure every 4-15 minutes, day and night, for weeks."""
    out = []
    for i in range(2):
        sid, ip = f"svc-monitor{i}", f"10.0.8.{i + 1}"
        period = rng.uniform(4, 15) * 60 * US
        begin = rng.uniform(0, 0.2) * extra.days * 24 * HOUR  # the credential went stale early on
        ts = np.arange(begin, extra.days * 24 * HOUR - 60 * US, period).astype(np.int64)
        ts = ts + rng.integers(0, 20 * US, size=ts.size)
        add(ts.size, ts_us=people.t0 + ts, event_type="user_login", user_id=sid, outcome="failure", source_ip=ip,
            user_agent=POLL_UA, metadata='{"method":"password","reason":"bad_password"}')
        first = max(extra.scored_days[0] * 24 * HOUR, int(begin))
        out.append(Incident("service_retry_loop", _at(people, first / HOUR), _at(people, extra.days * 24),
                            frozenset({sid, ip}), "a steady stale-credential poll"))
    return out


def attacks(rng: np.random.Generator, add: Callable[..., None], people: People, extra: Extra,
            late: np.ndarray, *, rounds: int = 2) -> list[Incident]:
    """``rounds`` instances of each hard variant, spread over the scored days."""
    out: list[Incident] = []
    days = extra.scored_days
    humans = np.nonzero(~people.admin)[0]
    for r in range(rounds):
        day = days[(r * 3 + 1) % len(days)] if len(days) > 1 else days[0]
        out.append(_slow_brute_force(rng, add, people, extra, day, humans))
        out.append(_slow_spray(rng, add, people, extra, days[(r * 3) % len(days)], humans))
        out.append(_night_escalation(rng, add, people, extra, days[(r * 2 + 1) % len(days)], late[r % late.size]))
        out.append(_elsewhere_login(rng, add, people, days[(r * 2) % len(days)], humans))
        close = extra.month_end or days
        out.append(_exfiltration_in_cohort(rng, add, people, extra, close[r % len(close)]))
        out.append(_staged_exfiltration(rng, add, people, extra, days[(r * 2 + 1) % len(days)], humans))
    return out


def _at(people: People, hour: float) -> datetime:
    return people.start + timedelta(hours=float(hour))


def _when(us: int) -> datetime:
    return datetime.fromtimestamp(us / US, UTC)


def _proxies(rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nets = rng.integers(0, len(PROXY_NETS), size=k)
    ips = np.array([f"{PROXY_NETS[n][1]}.{rng.integers(1, 255)}.{rng.integers(1, 255)}" for n in nets], dtype=object)
    return (ips, np.array([PROXY_NETS[n][0] for n in nets], dtype=object),
            np.array([PROXY_NETS[n][2] for n in nets], dtype=object))


def _end_cap(people: People, extra: Extra) -> int:
    return people.t0 + extra.days * 24 * HOUR - 120 * US


def _slow_brute_force(rng, add, people: People, extra: Extra, day: int, humans: np.ndarray) -> Incident:
    """1-4 guesses in some hours, for 12-60 hours, each from one of 6-40 rotating proxy addresses."""
    victim = str(people.user_ids[rng.choice(humans)])
    hours = int(rng.integers(12, 61))
    active = rng.random(hours) < rng.uniform(0.3, 0.8)
    per = np.where(active, rng.integers(1, 5, size=hours), 0)
    hour = np.repeat(np.arange(hours), per)
    t = people.t0 + day * 24 * HOUR + int(rng.uniform(0, 12) * HOUR) + hour * HOUR + rng.integers(0, HOUR, hour.size)
    t = np.sort(t[t < _end_cap(people, extra)])
    pool, ctry, asn = _proxies(rng, int(rng.integers(6, 41)))
    pick = rng.integers(0, pool.size, size=t.size)
    ua = BUMPED[0].format(v=int(rng.integers(118, 128)))
    add(t.size, ts_us=t, event_type="user_login", user_id=victim, outcome="failure", source_ip=pool[pick],
        source_country=ctry[pick], source_asn=asn[pick], user_agent=ua,
        metadata='{"method":"password","reason":"bad_password"}')
    return Incident("brute_force_slow", _when(int(t[0])), _when(int(t[-1])), frozenset({victim, *pool[pick]}),
                    f"hard: {t.size} guesses over {hours} h from {np.unique(pick).size} rotating addresses")


def _slow_spray(rng, add, people: People, extra: Extra, day: int, humans: np.ndarray) -> Incident:
    """One guess (rarely two) at each of 40-160 people over 10-40 hours, from 1-3 addresses, long gaps."""
    targets = people.user_ids[rng.choice(humans, size=int(rng.integers(40, 161)), replace=False)]
    span = rng.uniform(10, 40) * HOUR
    t0 = people.t0 + day * 24 * HOUR + int(rng.uniform(0, 14) * HOUR)
    t = t0 + np.sort(rng.integers(0, int(span), size=targets.size))
    again = rng.random(targets.size) < 0.1
    t = np.concatenate([t, t[again] + rng.integers(HOUR, 4 * HOUR, size=int(again.sum()))])
    who = np.concatenate([targets, targets[again]])
    keep = t < _end_cap(people, extra)
    t, who = t[keep], who[keep]
    pool, ctry, asn = _proxies(rng, int(rng.integers(1, 4)))
    pick = rng.integers(0, pool.size, size=t.size)
    add(t.size, ts_us=t, event_type="user_login", user_id=who, outcome="failure", source_ip=pool[pick],
        source_country=ctry[pick], source_asn=asn[pick], user_agent=BUMPED[1].format(v=int(rng.integers(115, 128))),
        metadata='{"method":"password","reason":"bad_password"}')
    return Incident("password_spraying_slow", _when(int(t.min())), _when(int(t.max())),
                    frozenset({*pool, *(str(u) for u in np.unique(who))}),
                    f"hard: {np.unique(who).size} people over {span / HOUR:.0f} h from {pool.size} addresses")


def _night_escalation(rng, add, people: People, extra: Extra, day: int, who: int) -> Incident:
    """Someone who often works late grants themselves a role and makes a key, in one of their late hours."""
    uid = str(people.user_ids[who])
    begin = extra.start_hour[who] + extra.day_hours[who] + rng.uniform(2.5, 5.0)
    t = people.t0 + int((day * 24 + begin) * HOUR)
    role = str(rng.choice(["admin", "owner", "billing_admin"]))
    steps = [("permission_change", f'{{"granted":"{role}","target_user":"{uid}"}}', uid)]
    if rng.random() < 0.7:
        steps.append(("api_key_created", '{"scope":"all"}', None))
    k = len(steps)
    ts = t + np.concatenate([[0], np.sort(rng.integers(30 * US, 600 * US, size=k - 1))]).astype(np.int64)
    hour = (ts - people.t0) // HOUR
    add(k, ts_us=ts, event_type=np.array([s[0] for s in steps], dtype=object), user_id=uid, outcome="success",
        source_ip=people.address(np.full(k, who), hour // 24 // 7), source_country=people.country[who],
        source_asn=people.asn[who], user_agent=people.user_agent[who],
        resource_id=np.array([s[2] for s in steps], dtype=object), metadata=np.array([s[1] for s in steps], dtype=object))
    return Incident("night_privilege_escalation", _when(int(ts[0])), _when(int(ts[-1]) + 60 * US), frozenset({uid}),
                    f"hard: a late worker self-grants {role}")


def _elsewhere_login(rng, add, people: People, day: int, humans: np.ndarray) -> Incident:
    """A stolen session used from a country travellers also visit, with a current browser, while the owner works."""
    who = int(rng.choice(humans))
    uid = str(people.user_ids[who])
    c, prefix, asn = ELSEWHERE[int(rng.integers(0, len(ELSEWHERE)))]
    ip = f"{prefix}.{rng.integers(1, 255)}.{rng.integers(1, 255)}"
    t = people.t0 + int((day * 24 + rng.uniform(0, 22)) * HOUR)
    k = int(rng.integers(2, 12))
    ts = t + np.concatenate([[0], np.sort(rng.integers(US, 1500 * US, size=k))]).astype(np.int64)
    kinds = np.array(["user_login", *rng.choice(["file_download", "query_executed", "data_export"], size=k,
                                                p=[0.6, 0.3, 0.1])], dtype=object)
    meta = np.array(['{"method":"password"}', *[f'{{"rows":{int(r)},"dataset":"crm"}}'
                                                 for r in rng.integers(100, 20_000, size=k)]], dtype=object)
    add(k + 1, ts_us=ts, event_type=kinds, user_id=uid, outcome="success", source_ip=ip, source_country=c,
        source_asn=asn, user_agent=BUMPED[0].format(v=int(rng.integers(124, 130))), metadata=meta)
    return Incident("new_country_login", _when(int(ts[0])), _when(int(ts[-1]) + 60 * US), frozenset({uid, ip}),
                    f"hard: account used from {c} with a current browser")


def _staged_exfiltration(rng, add, people: People, extra: Extra, day: int, humans: np.ndarray) -> Incident:
    """Data taken a piece at a time: 12-50 exports over 1-4 working hours, each only 3-20x an ordinary export
    (no single one stands out; their number and their sum over the afternoon do), some as export requests."""
    who = int(rng.choice(humans[people.department[humans] != "finance"]))
    uid = str(people.user_ids[who])
    span = int(rng.uniform(1, 4) * HOUR)
    begin = extra.start_hour[who] + rng.uniform(0.5, max(extra.day_hours[who] - span / HOUR, 0.75))
    t = people.t0 + int((day * 24 + begin) * HOUR)
    k = int(rng.integers(12, 51))
    ts = t + np.sort(rng.integers(0, span, size=k))
    rows = (np.exp(7.0) * rng.uniform(3, 20) * rng.lognormal(0, 0.5, size=k)).astype(np.int64)
    kinds = np.where(rng.random(k) < 0.7, "data_export", "export_requested").astype(object)
    hour = (ts - people.t0) // HOUR
    add(k, ts_us=ts, event_type=kinds, user_id=uid, outcome="success",
        source_ip=people.address(np.full(k, who), hour // 24 // 7), source_country=people.country[who],
        source_asn=people.asn[who], user_agent=people.user_agent[who],
        metadata=np.array([f'{{"rows":{int(r)},"dataset":"crm"}}' for r in rows], dtype=object))
    return Incident("exfiltration", _when(int(ts[0])), _when(int(ts[-1]) + 60 * US), frozenset({uid}),
                    f"hard: staged, {int(rows.sum()):,} rows in {k} exports over {span / HOUR:.1f} h")


def _exfiltration_in_cohort(rng, add, people: People, extra: Extra, day: int) -> Incident:
    """A member of the exporting department takes 4-15x their peers' close volume, over 30-120 minutes."""
    cohort = np.nonzero((people.department == "finance") & ~people.admin)[0]
    who = int(rng.choice(cohort))
    uid = str(people.user_ids[who])
    t = people.t0 + int((day * 24 + extra.start_hour[who] + rng.uniform(1, max(extra.day_hours[who] - 2.5, 1.5)))
                        * HOUR)
    span = int(rng.uniform(30, 120) * 60 * US)
    k = int(rng.integers(8, 31))
    ts = t + np.sort(rng.integers(0, span, size=k))
    rows = (np.exp(10.5) * rng.uniform(4, 15) * rng.lognormal(0, 0.4, size=k)).astype(np.int64)
    hour = (ts - people.t0) // HOUR
    add(k, ts_us=ts, event_type="data_export", user_id=uid, outcome="success",
        source_ip=people.address(np.full(k, who), hour // 24 // 7), source_country=people.country[who],
        source_asn=people.asn[who], user_agent=people.user_agent[who],
        metadata=np.array([f'{{"rows":{int(r)},"dataset":"ledger"}}' for r in rows], dtype=object))
    return Incident("exfiltration", _when(int(ts[0])), _when(int(ts[-1]) + 60 * US), frozenset({uid}),
                    f"hard: {int(rows.sum()):,} rows in {k} exports during the department's close")
