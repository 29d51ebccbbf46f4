"""The organisation: departments, sites and time zones, shifts, shared egress, contractors, service accounts.

Every person has a department, a site (with its UTC offset; daylight saving is ignored), a shift
(local start hour and length), a weekly rota, a way of connecting (the site's office NAT, the
corporate VPN, or their home line) and a browser. The office NATs and the VPN concentrators are a
handful of addresses shared by hundreds of people, as in a real company.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# name: (UTC offset hours, country, office NAT addresses)
SITES = {
    "nyc": (-5.0, "US", ("64.124.17.10", "64.124.17.11")),
    "london": (0.0, "GB", ("194.75.40.20",)),
    "bangalore": (5.5, "IN", ("115.110.9.30", "115.110.9.31")),
}
CORP_ASN = {"US": "AS6461", "GB": "AS2914", "IN": "AS4755"}
VPN_EGRESS = (("64.124.17.200", "US"), ("64.124.17.201", "US"), ("194.75.40.200", "GB"))
# Home broadband by country: (address prefix, ASN)
HOME_ISPS = {
    "US": (("73.162", "AS7922"), ("108.28", "AS7018"), ("174.63", "AS22773")),
    "GB": (("86.149", "AS5607"), ("109.150", "AS2856")),
    "IN": (("122.171", "AS24560"), ("49.204", "AS55836")),
    "PL": (("83.24", "AS5617"),), "PT": (("85.243", "AS3243"),), "MX": (("189.203", "AS8151"),),
    "PH": (("112.198", "AS9299"),),
}
# Mobile carriers put many phones behind one carrier-grade NAT address.
CARRIER_NAT = {"US": ("172.56.12", "AS21928"), "GB": ("92.40.180", "AS60339"), "IN": ("106.76.200", "AS45609")}
DESKTOP_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:126.0) Gecko/20100101 Firefox/126.0",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
)
MOBILE_UA = "CorpMobile/5.14.2 (iPhone; iOS 17.4.1; Scale/3.00)"

# department: (share of people, {site: share}, shift start local hour, sd, shift hours, events per hour)
DEPARTMENTS = {
    "engineering": (0.33, {"nyc": 0.4, "london": 0.2, "bangalore": 0.4}, 9.8, 1.1, 8.5, 1.3),
    "sales": (0.20, {"nyc": 0.6, "london": 0.4}, 8.2, 0.7, 9.0, 1.1),
    "support": (0.18, {"nyc": 0.34, "london": 0.33, "bangalore": 0.33}, None, 0.3, 8.0, 2.0),
    "finance": (0.08, {"nyc": 0.7, "london": 0.3}, 8.0, 0.6, 9.0, 1.2),
    "hr": (0.05, {"nyc": 0.6, "london": 0.4}, 8.8, 0.6, 8.0, 0.7),
    "it_admin": (0.03, {"nyc": 0.5, "bangalore": 0.5}, 8.5, 0.8, 9.0, 1.5),
    "contractor": (0.13, {}, 10.0, 2.5, 6.5, 1.0),
}
CONTRACTOR_HOMES = {"US": 0.3, "PL": 0.25, "PT": 0.15, "MX": 0.15, "PH": 0.15}
SUPPORT_SHIFTS = ((7.0, 0.6), (15.0, 0.25), (23.0, 0.15))  # local start hour, share


@dataclass
class Org:
    """One row per person (NumPy arrays), plus the service accounts."""

    user_ids: np.ndarray
    department: np.ndarray
    site: np.ndarray  # site name; contractors: "remote"
    tz: np.ndarray  # UTC offset in hours
    country: np.ndarray
    shift_start: np.ndarray  # local hour
    shift_hours: np.ndarray
    rota: np.ndarray  # people x 7: works on this local weekday (Mon = 0)
    rate: np.ndarray  # events per working hour
    remote: np.ndarray  # share of days connecting from outside the office
    vpn: np.ndarray  # when outside: share of days through the VPN (else the home line)
    home_ip: np.ndarray
    home_asn: np.ndarray
    office_ip: np.ndarray  # the site's NAT address this person goes out through ("" for contractors)
    vpn_ip: np.ndarray
    browser: np.ndarray
    mobile: np.ndarray  # also works from a phone (sales)
    services: list[Service]

    @property
    def size(self) -> int:
        return self.user_ids.size

    def members(self, department: str) -> np.ndarray:
        return np.flatnonzero(self.department == department)

    def peer_groups(self) -> dict[str, str]:
        return {str(u): str(d) for u, d in zip(self.user_ids, self.department, strict=True)}


@dataclass(frozen=True)
class Service:
    """A non-human account: steady calls from one internal address, some stuck in retry loops at times."""

    name: str
    ip: str
    per_hour: float
    user_agent: str
    retries: bool
    nightly_export_rows: int  # 0: no nightly export


def build(rng: np.random.Generator, users: int) -> Org:
    """A population of ``users`` people in the departments' proportions, and ``users // 80`` service accounts."""
    names = list(DEPARTMENTS)
    shares = np.array([DEPARTMENTS[d][0] for d in names])
    department = np.array(names, dtype=object)[rng.choice(len(names), size=users, p=shares / shares.sum())]
    site = np.empty(users, dtype=object)
    tz = np.zeros(users)
    country = np.empty(users, dtype=object)
    start = np.zeros(users)
    hours = np.zeros(users)
    rate = np.zeros(users)
    for name in names:
        idx = np.flatnonzero(department == name)
        _, sites, mean, sd, length, per_hour = DEPARTMENTS[name]
        if sites:
            keys = list(sites)
            site[idx] = np.array(keys, dtype=object)[rng.choice(len(keys), size=idx.size, p=list(sites.values()))]
            tz[idx] = [SITES[s][0] for s in site[idx]]
            country[idx] = [SITES[s][1] for s in site[idx]]
        else:
            keys = list(CONTRACTOR_HOMES)
            site[idx] = "remote"
            country[idx] = np.array(keys, dtype=object)[rng.choice(len(keys), size=idx.size,
                                                                  p=list(CONTRACTOR_HOMES.values()))]
            tz[idx] = [{"US": -6.0, "PL": 1.0, "PT": 0.0, "MX": -6.0, "PH": 8.0}[c] for c in country[idx]]
        if mean is None:  # support: day, evening and night shifts at every site (follow the sun)
            pick = rng.choice(len(SUPPORT_SHIFTS), size=idx.size, p=[s[1] for s in SUPPORT_SHIFTS])
            start[idx] = np.array([s[0] for s in SUPPORT_SHIFTS])[pick] + rng.normal(0, sd, idx.size)
        else:
            start[idx] = rng.normal(mean, sd, idx.size)
        hours[idx] = np.clip(rng.normal(length, 0.8, idx.size), 4, 12)
        rate[idx] = per_hour * rng.lognormal(0, 0.45, idx.size)
    rota = np.zeros((users, 7), dtype=bool)
    rota[:, :5] = True
    support = np.flatnonzero(department == "support")
    first = rng.integers(0, 7, size=support.size)  # five consecutive days from any weekday, weekends covered
    rota[support, :] = False
    for k in range(5):
        rota[support, (first + k) % 7] = True
    contractors = np.flatnonzero(department == "contractor")
    for u in contractors:
        rota[u, :5] = False
        rota[u, rng.choice(5, size=int(rng.integers(3, 6)), replace=False)] = True
    remote = np.where(department == "contractor", 1.0, np.where(rng.random(users) < 0.3, 0.9, rng.uniform(0, 0.4, users)))
    vpn = np.where(department == "contractor", rng.uniform(0, 0.3, users), rng.uniform(0.7, 1.0, users))
    home_ip = np.empty(users, dtype=object)
    home_asn = np.empty(users, dtype=object)
    for u in range(users):
        isps = HOME_ISPS[country[u]]
        prefix, asn = isps[int(rng.integers(len(isps)))]
        home_ip[u] = f"{prefix}.{int(rng.integers(1, 255))}.{int(rng.integers(1, 255))}"
        home_asn[u] = asn
    office_ip = np.array([rng.choice(SITES[s][2]) if s in SITES else "" for s in site], dtype=object)
    egress = [ip for ip, c in VPN_EGRESS]
    vpn_ip = np.array([egress[int(rng.integers(2))] if c != "GB" else egress[2] for c in country], dtype=object)
    ids = rng.choice(np.arange(100_000, 999_999), size=users, replace=False)
    user_ids = np.array([f"x-{i}" if d == "contractor" else f"e{i}" for i, d in zip(ids, department, strict=True)],
                        dtype=object)
    return Org(user_ids, department, site, tz, country, start % 24, hours, rota, rate, remote, vpn, home_ip, home_asn,
               office_ip, vpn_ip, rng.integers(0, len(DESKTOP_UAS), size=users), (department == "sales")
               & (rng.random(users) < 0.6), _services(rng, max(10, users // 80)))


SERVICE_KINDS = ("payroll-sync", "crm-etl", "backup", "ci-runner", "ldap-sync", "billing", "search-indexer",
                 "report-mailer", "siem-forwarder", "hr-feed")
SERVICE_UAS = ("Go-http-client/1.1", "Apache-HttpClient/4.5.14 (Java/17.0.9)", "curl/8.4.0",
               "aws-sdk-java/2.25.11", "python-httpx/0.27.0")


def _services(rng: np.random.Generator, n: int) -> list[Service]:
    out = []
    for i in range(n):
        kind = SERVICE_KINDS[i % len(SERVICE_KINDS)]
        nightly = int(rng.choice([0, 0, 0, 60_000, 400_000])) if kind in ("crm-etl", "backup", "billing") else 0
        out.append(Service(f"svc_{kind.replace('-', '_')}_{i // len(SERVICE_KINDS) + 1}", f"10.40.{i // 200}.{i % 200 + 10}",
                           float(rng.lognormal(np.log(4), 0.7)), SERVICE_UAS[int(rng.integers(len(SERVICE_UAS)))],
                           bool(rng.random() < 0.35), nightly))
    return out
