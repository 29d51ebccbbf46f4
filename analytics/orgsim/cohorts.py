"""Benign cohort events, built as carefully as the attacks and labelled as such.

The calendar (leave, a public holiday, trips) is planned before the routine traffic, which it
changes; the cohort events (a finance close, a password-expiry day, release nights, an admin's
maintenance window) add their own events on top, tagged with their label.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from analytics.orgsim import org as O
from analytics.orgsim.batch import Book, Events
from analytics.orgsim.fields import metadata
from analytics.orgsim.routine import DAY, HOUR, SECOND, TRAVEL, Sessions

CLOSE_ROWS = 6000  # a finance export's ordinary size (rows); a close multiplies it


@dataclass
class Calendar:
    off: np.ndarray  # people x days: on leave or a public holiday
    trip: np.ndarray  # people x days: travel country, or ""
    days: int
    weekday0: int
    window: tuple[int, int]  # the days where the scored cohort events fall (and the attacks)


def _weekdays(cal_weekday0: int, lo: int, hi: int) -> np.ndarray:
    d = np.arange(lo, hi)
    return d[(cal_weekday0 + d) % 7 < 5]


def plan(rng: np.random.Generator, org: O.Org, book: Book, *, t0: int, first: date, days: int,
         window: tuple[int, int]) -> Calendar:
    """Leave, one public holiday inside ``window`` and week-long trips abroad (the last two labelled)."""
    weekday0 = first.weekday()
    off = rng.random((org.size, days)) < 0.02
    week_off = np.flatnonzero(rng.random(org.size) < 0.06)  # a week of vacation
    for u in week_off:
        d0 = int(rng.integers(0, max(days - 5, 1)))
        off[u, d0:d0 + 5] = True
    cal = Calendar(off, np.full((org.size, days), "", dtype=object), days, weekday0, window)
    choices = _weekdays(weekday0, *window)
    if choices.size:
        day = int(rng.choice(choices))
        country = str(rng.choice(["US", "GB", "IN"], p=[0.6, 0.25, 0.15]))
        idx = np.flatnonzero((org.site != "remote") & (org.country == country))
        still = rng.random(idx.size) < 0.03
        off[idx[~still], day] = True
        lo = t0 + day * DAY - int(O.SITES[str(org.site[idx[0]])][0] * HOUR) if idx.size else t0 + day * DAY
        book.cohort("holiday", {*org.user_ids[idx], *[ip for s, v in O.SITES.items() if v[1] == country for ip in v[2]]},
                    f"public holiday in {country}: {idx.size} people off", start=lo, end=lo + DAY)
    for u in np.flatnonzero(rng.random(org.size) < 0.03):
        d0 = int(rng.integers(0, max(days - 3, 1)))
        length = int(rng.integers(4, 10))
        where = str(rng.choice([c for c in TRAVEL if c != org.country[u]]))
        cal.trip[u, d0:d0 + length] = where
        end = min(d0 + length, days)
        book.cohort("travel", {org.user_ids[u]}, f"{org.user_ids[u]} in {where} for {end - d0} days",
                    start=t0 + d0 * DAY, end=t0 + end * DAY)
    return cal


def close_days(first: date, days: int) -> list[tuple[list[int], bool]]:
    """Month-end closes in range: the last two business days and the first of the next month (quarter-end?)."""
    out = []
    dates = [first + timedelta(days=d) for d in range(days + 40)]
    business = [d for d in dates if d.weekday() < 5]
    for k in range(len(business) - 1):
        here, nxt = business[k], business[k + 1]
        if here.month != nxt.month:  # `here` is the month's last business day
            span = [business[k - 1], here, nxt] if k else [here, nxt]
            idx = [(d - first).days for d in span if (d - first).days < days]
            if idx:
                out.append((idx, here.month in (3, 6, 9, 12)))
    return out


def _session_index(sessions: Sessions, people: int, days: int) -> np.ndarray:
    index = np.full(people * days, -1, dtype=np.int64)
    index[sessions.user * days + sessions.day] = np.arange(sessions.user.size)
    return index.reshape(people, days)


def emit(rng: np.random.Generator, org: O.Org, ev: Events, book: Book, sessions: Sessions, cal: Calendar, *,
         t0: int, first: date) -> None:
    """The finance close, the password-expiry day, release nights and an admin's maintenance window."""
    index = _session_index(sessions, org.size, cal.days)
    finance = org.members("finance")
    for day_list, quarter in close_days(first, cal.days):
        tag = book.cohort("finance_close", set(org.user_ids[finance]),
                          f"{'quarter' if quarter else 'month'}-end close on days {day_list}")
        for d in day_list:
            s = index[finance, d]
            s = s[s >= 0]
            k = rng.poisson(rng.uniform(8, 22) * (1.5 if quarter else 1.0), s.size)
            row = np.repeat(s, k)
            late = t0 + d * DAY + ((21.0 - org.tz[sessions.user[row]]) * HOUR).astype(np.int64)
            end = np.maximum(sessions.end[row], late)  # the close keeps them late
            ts = sessions.start[row] + (rng.random(row.size) * (end - sessions.start[row])).astype(np.int64)
            rows = (CLOSE_ROWS * rng.lognormal(np.log(rng.uniform(3, 10)), 1.0, row.size)).astype(np.int64)
            kind = np.where(rng.random(row.size) < 0.7, "data_export", "export_requested").astype(object)
            ev.add(ts, cohort=tag, event_type=kind, user_id=org.user_ids[sessions.user[row]], outcome="success",
                   source_ip=sessions.ip[row], source_country=sessions.country[row], source_asn=sessions.asn[row],
                   user_agent=sessions.ua[row],
                   metadata=np.array([f'{{"rows":{r},"dataset":"general_ledger","format":"xlsx"}}' for r in rows],
                                     dtype=object))
    _password_expiry(rng, org, ev, book, sessions, cal, index)
    _release_nights(rng, org, ev, book, cal, t0=t0)
    _maintenance(rng, org, ev, book, cal, t0=t0)


def _password_expiry(rng, org: O.Org, ev: Events, book: Book, sessions: Sessions, cal: Calendar,
                     index: np.ndarray) -> None:
    """A company-wide expiry: at their first login that day many fail once or twice, change it, get in."""
    choices = [d for d in _weekdays(cal.weekday0, *cal.window) if not cal.off[:, d].mean() > 0.2]
    if not choices:
        return
    d = int(rng.choice(choices))
    s = index[:, d]
    s = s[s >= 0]
    s = s[rng.random(s.size) < rng.uniform(0.25, 0.5)]
    shared = {ip for v in O.SITES.values() for ip in v[2]} | {ip for ip, _ in O.VPN_EGRESS}
    tag = book.cohort("password_expiry", {*org.user_ids[sessions.user[s]], *shared},
                      f"{s.size} people change an expired password on day {d}")
    tries = np.where(rng.random(s.size) < 0.7, 1, 2)
    for k in (1, 2):
        sel = s[tries >= k]
        reason = np.where(rng.random(sel.size) < 0.75, "password_expired", "bad_password")
        ev.add(sessions.start[sel] - (4 - k) * rng.integers(20, 90, sel.size) * SECOND, cohort=tag,
               event_type="user_login", user_id=org.user_ids[sessions.user[sel]], outcome="failure",
               source_ip=sessions.ip[sel], source_country=sessions.country[sel], source_asn=sessions.asn[sel],
               user_agent=sessions.ua[sel],
               metadata=np.array([f'{{"method":"password","reason":"{r}"}}' for r in reason], dtype=object))
    who = org.user_ids[sessions.user[s]]
    ev.add(sessions.start[s] - rng.integers(5, 20, s.size) * SECOND, cohort=tag, event_type="password_change",
           user_id=who, outcome="success", source_ip=sessions.ip[s], source_country=sessions.country[s],
           source_asn=sessions.asn[s], user_agent=sessions.ua[s], resource_id=who,
           metadata=np.array([f'{{"target_user":"{u}","reason":"expired"}}' for u in who], dtype=object))


def _release_nights(rng, org: O.Org, ev: Events, book: Book, cal: Calendar, *, t0: int) -> None:
    """Every other Thursday a release team deploys from 20:00 local: config changes, deploy keys, checks."""
    engineers = org.members("engineering")
    if engineers.size < 4:
        return
    pool = engineers[rng.random(engineers.size) < 0.2]
    parity = int(rng.integers(2))
    for d in range(cal.days):
        if (cal.weekday0 + d) % 7 != 3 or (d // 7) % 2 != parity:
            continue
        site = str(rng.choice(["nyc", "bangalore"]))
        members = pool[org.site[pool] == site]
        if members.size == 0:
            continue
        team = rng.choice(members, size=min(members.size, int(rng.integers(6, 20))), replace=False)
        tag = book.cohort("release_night", set(org.user_ids[team]), f"release night on day {d} ({site})")
        begin = t0 + d * DAY + int((rng.uniform(19.5, 21) - O.SITES[site][0]) * HOUR)
        for u in team:
            n = int(rng.integers(3, 16))
            ts = begin + np.sort(rng.integers(0, int(rng.uniform(2, 5.5) * HOUR), n + 1))
            kinds = np.array(["config_change"] * n + ["user_login"], dtype=object)
            kinds[rng.random(n + 1) < 0.3] = "query_executed"
            kinds[0] = "user_login"
            if rng.random() < 0.2:
                kinds[-1] = "api_key_created"
            meta, resource = metadata(rng, kinds, np.full(n + 1, "engineering", dtype=object), org.user_ids)
            setting = np.flatnonzero(kinds == "config_change")
            meta[setting] = [f'{{"setting":"deploy.{x}","before":"r{d}","after":"r{d + 1}"}}'
                             for x in rng.choice(["version", "feature_flags", "db_migration", "canary_share"],
                                                 setting.size)]
            meta[kinds == "user_login"] = '{"method":"password","mfa":"push"}'
            ev.add(ts, cohort=tag, event_type=kinds, user_id=org.user_ids[u], outcome="success",
                   source_ip=org.vpn_ip[u], source_country=dict(O.VPN_EGRESS)[org.vpn_ip[u]],
                   source_asn=O.CORP_ASN[dict(O.VPN_EGRESS)[org.vpn_ip[u]]],
                   user_agent=O.DESKTOP_UAS[org.browser[u]], metadata=meta, resource_id=resource)


def _maintenance(rng, org: O.Org, ev: Events, book: Book, cal: Calendar, *, t0: int) -> None:
    """An IT admin's planned weekend window: onboarding a batch, resets, grants, config, many in a few hours."""
    admins = org.members("it_admin")
    weekend = [d for d in range(*cal.window) if (cal.weekday0 + d) % 7 >= 5]
    if admins.size == 0 or not weekend:
        return
    u = int(rng.choice(admins))
    d = int(rng.choice(weekend))
    n = int(rng.integers(30, 91))
    begin = t0 + d * DAY + int((rng.uniform(7, 10) - org.tz[u]) * HOUR)
    ts = begin + np.sort(rng.integers(0, int(rng.uniform(3, 5) * HOUR), n))
    kinds = np.array(["user_created", "permission_change", "password_change", "config_change", "query_executed"],
                     dtype=object)[rng.choice(5, size=n, p=[0.25, 0.35, 0.15, 0.1, 0.15])]
    kinds[0] = "user_login"
    meta, resource = metadata(rng, kinds, np.full(n, "it_admin", dtype=object), org.user_ids)
    meta[0] = '{"method":"password","mfa":"hardware_key"}'
    tag = book.cohort("admin_maintenance", {org.user_ids[u]}, f"{n} admin actions on day {d}")
    ev.add(ts, cohort=tag, event_type=kinds, user_id=org.user_ids[u], outcome="success",
           source_ip=org.office_ip[u], source_country=O.SITES[org.site[u]][1],
           source_asn=O.CORP_ASN[O.SITES[org.site[u]][1]], user_agent=O.DESKTOP_UAS[org.browser[u]],
           metadata=meta, resource_id=resource)
