"""Everyday traffic: each person's shifts on their rota, the service accounts' steady calls and retry loops.

A working day is one session: a login (now and then after a typo or two), work events at the
person's rate in their department's mix, often a second login after lunch when the session token
expires, sometimes a logout, and on a small share of evenings a quick check from home. The
connection is decided per day: the office NAT, the VPN, the home line, or a hotel while travelling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics.orgsim import org as O
from analytics.orgsim.batch import Book, Events
from analytics.orgsim.fields import metadata

HOUR = 3_600_000_000
DAY = 24 * HOUR
SECOND = 1_000_000
MIXES = {
    "engineering": {"query_executed": 40, "file_download": 18, "file_upload": 14, "report_viewed": 6,
                    "record_updated": 8, "config_change": 0.8, "export_requested": 0.6},
    "sales": {"record_updated": 30, "query_executed": 22, "report_viewed": 20, "file_download": 18,
              "data_export": 1.6, "export_requested": 1.2, "file_upload": 5},
    "support": {"record_updated": 48, "query_executed": 30, "file_download": 12, "file_upload": 6,
                "report_viewed": 4},
    "finance": {"query_executed": 34, "report_viewed": 24, "file_download": 16, "file_upload": 10,
                "data_export": 3.5, "export_requested": 2, "record_updated": 10},
    "hr": {"record_updated": 35, "report_viewed": 20, "file_download": 22, "file_upload": 15, "data_export": 1.2},
    "it_admin": {"query_executed": 30, "config_change": 8, "permission_change": 6, "password_change": 4,
                 "api_key_created": 1, "user_created": 2.5, "file_download": 10, "record_updated": 10,
                 "report_viewed": 6},
    "contractor": {"query_executed": 38, "file_download": 26, "file_upload": 20, "record_updated": 12,
                   "report_viewed": 4},
}
TRAVEL = {"JP": ("126.77", "AS17676"), "SG": ("116.86", "AS9506"), "DE": ("91.64", "AS3320"),
          "ES": ("88.27", "AS3352"), "AE": ("94.200", "AS5384"), "BR": ("177.92", "AS28573"),
          "CA": ("99.229", "AS812"), "AU": ("1.128", "AS1221")}


@dataclass
class Sessions:
    """One row per person and working day: when, and through which connection."""

    user: np.ndarray
    day: np.ndarray
    start: np.ndarray  # µs since the epoch, the day's first login
    end: np.ndarray
    ip: np.ndarray
    country: np.ndarray
    asn: np.ndarray
    ua: np.ndarray


def connections(rng: np.random.Generator, org: O.Org, users: np.ndarray, trip: np.ndarray) -> tuple:
    """Address, country and ASN for each (person, day): office NAT, VPN, home line or, travelling, a hotel."""
    n = users.size
    outside = rng.random(n) < org.remote[users]
    via_vpn = rng.random(n) < org.vpn[users]
    ip = np.where(outside, np.where(via_vpn, org.vpn_ip[users], org.home_ip[users]), org.office_ip[users])
    vpn_country = np.array([dict(O.VPN_EGRESS)[a] for a in org.vpn_ip[users]], dtype=object)
    site_country = np.array([O.SITES[s][1] if s in O.SITES else "" for s in org.site[users]], dtype=object)
    country = np.where(outside, np.where(via_vpn, vpn_country, org.country[users]), site_country)
    corp = np.array([O.CORP_ASN[c] if c in O.CORP_ASN else "" for c in country], dtype=object)
    asn = np.where(outside & ~via_vpn, org.home_asn[users], corp)
    away = (trip != "") & (rng.random(n) < 0.55)  # on a trip: the hotel line, unless through the VPN
    for k in np.flatnonzero(away):
        prefix, net = TRAVEL[trip[k]]
        ip[k] = f"{prefix}.{(users[k] * 7) % 250 + 1}.{(users[k] * 13) % 250 + 3}"
        country[k] = trip[k]
        asn[k] = net
    return ip.astype(object), country.astype(object), asn.astype(object)


def people(rng: np.random.Generator, org: O.Org, ev: Events, *, t0: int, days: int, weekday0: int,
           off: np.ndarray, trip: np.ndarray) -> Sessions:
    """Every person's working days (``off``: leave or holiday; ``trip``: travel country or "")."""
    weekdays = (weekday0 + np.arange(days)) % 7
    works = org.rota[:, weekdays] & ~off
    su, sd = np.nonzero(works)
    n = su.size
    local = org.shift_start[su] + rng.normal(0, 0.4, n)
    length = np.clip(org.shift_hours[su] + rng.normal(0, 0.6, n), 2.5, 13)
    start = t0 + sd * DAY + ((local - org.tz[su]) * HOUR).astype(np.int64)
    end = start + (length * HOUR).astype(np.int64)
    ip, country, asn = connections(rng, org, su, trip[su, sd])
    ua = np.array(O.DESKTOP_UAS, dtype=object)[org.browser[su]]
    sessions = Sessions(su, sd, start, end, ip, country, asn, ua)

    # work events, spread over the shift
    k = rng.poisson(org.rate[su] * length)
    row = np.repeat(np.arange(n), k)
    ts = start[row] + (rng.random(row.size) * (end[row] - start[row])).astype(np.int64)
    user = su[row]
    dept = org.department[user]
    types = np.empty(row.size, dtype=object)
    for name, mix in MIXES.items():
        sel = np.flatnonzero(dept == name)
        kinds = list(mix)
        weights = np.array(list(mix.values()), dtype=float)
        types[sel] = np.array(kinds, dtype=object)[rng.choice(len(kinds), size=sel.size, p=weights / weights.sum())]
    e_ip, e_country, e_asn, e_ua = ip[row].copy(), country[row].copy(), asn[row].copy(), ua[row].copy()
    phone = org.mobile[user] & (rng.random(row.size) < 0.3)
    for k_ in np.flatnonzero(phone):
        c = e_country[k_] if e_country[k_] in O.CARRIER_NAT else "US"
        prefix, net = O.CARRIER_NAT[c]
        e_ip[k_], e_country[k_], e_asn[k_], e_ua[k_] = f"{prefix}.{int(ts[k_] // HOUR + user[k_]) % 24 + 1}", c, net, O.MOBILE_UA
    meta, resource = metadata(rng, types, dept, org.user_ids)
    ev.add(ts, event_type=types, user_id=org.user_ids[user], outcome="success", source_ip=e_ip,
           source_country=e_country, source_asn=e_asn, user_agent=e_ua, metadata=meta, resource_id=resource)

    # logins: the day's first, typos before it, the after-lunch re-login, a logout
    typos = np.where(rng.random(n) < 0.025, 1, 0) + np.where(rng.random(n) < 0.006, 1, 0)
    for k_ in (1, 2):
        sel = np.flatnonzero(typos >= k_)
        ev.add(start[sel] - (3 - k_) * rng.integers(8, 40, sel.size) * SECOND, event_type="user_login",
               user_id=org.user_ids[su[sel]], outcome="failure", source_ip=ip[sel], source_country=country[sel],
               source_asn=asn[sel], user_agent=ua[sel], metadata='{"method":"password","reason":"bad_password"}')
    ev.add(start, event_type="user_login", user_id=org.user_ids[su], outcome="success", source_ip=ip,
           source_country=country, source_asn=asn, user_agent=ua, metadata='{"method":"password","mfa":"push"}')
    again = np.flatnonzero((rng.random(n) < 0.35) & (length > 5))
    ev.add(start[again] + (rng.uniform(3.5, 5.0, again.size) * HOUR).astype(np.int64), event_type="user_login",
           user_id=org.user_ids[su[again]], outcome="success", source_ip=ip[again], source_country=country[again],
           source_asn=asn[again], user_agent=ua[again], metadata='{"method":"sso","reason":"session_renewal"}')
    out = np.flatnonzero(rng.random(n) < 0.4)
    ev.add(end[out], event_type="user_logout", user_id=org.user_ids[su[out]], outcome="success", source_ip=ip[out],
           source_country=country[out], source_asn=asn[out], user_agent=ua[out], metadata="{}")
    _evening_checks(rng, org, ev, t0=t0, days=days, off=off, trip=trip)
    return sessions


def _evening_checks(rng: np.random.Generator, org: O.Org, ev: Events, *, t0: int, days: int, off: np.ndarray,
                    trip: np.ndarray) -> None:
    """On ~2% of days (weekends too) a person looks at something from home in the evening."""
    cu, cd = np.nonzero((rng.random((org.size, days)) < 0.02) & ~off)
    n = cu.size
    start = t0 + cd * DAY + ((rng.uniform(19.5, 23.0, n) - org.tz[cu]) * HOUR).astype(np.int64)
    ip, country, asn = connections(rng, org, cu, trip[cu, cd])
    at_office = ip == org.office_ip[cu]  # nobody is at the office in the evening: the VPN instead
    egress = np.array([dict(O.VPN_EGRESS)[a] for a in org.vpn_ip[cu]], dtype=object)
    ip = np.where(at_office, org.vpn_ip[cu], ip)
    country = np.where(at_office, egress, country)
    asn = np.where(at_office, [O.CORP_ASN[c] for c in egress], asn)
    ua = np.array(O.DESKTOP_UAS, dtype=object)[org.browser[cu]]
    ev.add(start, event_type="user_login", user_id=org.user_ids[cu], outcome="success", source_ip=ip,
           source_country=country, source_asn=asn, user_agent=ua, metadata='{"method":"password","mfa":"push"}')
    k = rng.integers(1, 5, n)
    row = np.repeat(np.arange(n), k)
    ts = start[row] + rng.integers(20, 1200, row.size) * SECOND
    types = np.array(["report_viewed", "query_executed", "file_download"], dtype=object)[rng.integers(0, 3, row.size)]
    meta, resource = metadata(rng, types, org.department[cu[row]], org.user_ids)
    ev.add(ts, event_type=types, user_id=org.user_ids[cu[row]], outcome="success", source_ip=ip[row],
           source_country=country[row], source_asn=asn[row], user_agent=ua[row], metadata=meta, resource_id=resource)


def services(rng: np.random.Generator, org: O.Org, ev: Events, book: Book, *, t0: int, days: int) -> None:
    """Steady service traffic with hourly token refreshes, nightly exports, and retry loops (labelled as benign)."""
    hours = days * 24
    for s in org.services:
        hour = np.arange(hours)
        per_hour = rng.poisson(s.per_hour * (1 + 0.35 * np.sin(2 * np.pi * (hour % 24 - 9) / 24)))
        h = np.repeat(hour, per_hour)
        ts = t0 + h * HOUR + rng.integers(0, HOUR, h.size)
        kinds = np.array(["query_executed", "record_updated", "file_upload"], dtype=object)[
            rng.choice(3, size=h.size, p=[0.6, 0.3, 0.1])]
        meta = np.where(kinds == "file_upload", '{"bytes":2048000,"path":"/sync/batch.json"}',
                        np.where(kinds == "query_executed", '{"rows":500,"dataset":"warehouse"}',
                                 '{"object":"sync_record"}')).astype(object)
        ev.add(ts, event_type=kinds, user_id=s.name, outcome="success", source_ip=s.ip, user_agent=s.user_agent,
               metadata=meta)
        refresh = t0 + hour * HOUR + rng.integers(0, 120, hours) * SECOND
        ev.add(refresh, event_type="user_login", user_id=s.name, outcome="success", source_ip=s.ip,
               user_agent=s.user_agent, metadata='{"method":"client_credentials"}')
        if s.nightly_export_rows:
            nights = np.arange(days)
            rows = (s.nightly_export_rows * rng.uniform(0.8, 1.25, days)).astype(int)
            ev.add(t0 + nights * DAY + (rng.uniform(1.0, 3.0, days) * HOUR).astype(np.int64), event_type="data_export",
                   user_id=s.name, outcome="success", source_ip=s.ip, user_agent=s.user_agent,
                   metadata=np.array([f'{{"rows":{r},"dataset":"nightly_snapshot","format":"parquet"}}' for r in rows],
                                     dtype=object))
        if s.retries:  # a rotated secret or an expired token: back-off retries, then the new credential works
            chance = rng.uniform(0.05, 0.3)
            for d in np.flatnonzero(rng.random(days) < chance):
                first = t0 + d * DAY + int(rng.uniform(0, 24) * HOUR)
                tries = int(rng.integers(4, 41))
                gaps = np.minimum(2.0 ** np.minimum(np.arange(tries), 6) * rng.uniform(0.5, 1.5, tries), 60)
                fails = first + (np.cumsum(gaps) * SECOND).astype(np.int64)
                ok = int(fails[-1] + rng.integers(5, 60) * SECOND)
                tag = book.cohort("service_retry_loop", {s.name, s.ip}, f"{tries} failed logins, then success")
                ev.add(fails, cohort=tag, event_type="user_login", user_id=s.name, outcome="failure",
                       source_ip=s.ip, user_agent=s.user_agent,
                       metadata='{"method":"client_credentials","reason":"invalid_client"}')
                ev.add(ok, cohort=tag, event_type="user_login", user_id=s.name, outcome="success",
                       source_ip=s.ip, user_agent=s.user_agent, metadata='{"method":"client_credentials"}')
