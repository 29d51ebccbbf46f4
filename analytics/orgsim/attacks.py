"""Attacks, each instance with its timing and intensity drawn from a range, labelled with its events.

Attackers come from hosting providers, from networks of hostile reputation, or (credential
stuffing) from residential proxies in the victims' own countries. Insiders act from their usual
connection. The label's entities are what an analyst would name: the attacking addresses and the
targeted accounts, or the acting insider (never a shared corporate egress address).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from analytics.orgsim import org as O
from analytics.orgsim.batch import Book, Events
from analytics.orgsim.routine import DAY, HOUR, SECOND, Sessions

CLASSES = ("brute_force_fast", "brute_force_slow", "password_spraying", "password_spraying_slow",
           "credential_stuffing", "exfiltration", "night_privilege_escalation", "new_country_login", "insider_chain")
HOSTING = (("US", "AS14061", "159.223"), ("NL", "AS14061", "188.166"), ("DE", "AS24940", "95.216"),
           ("US", "AS16509", "3.88"), ("SG", "AS16509", "13.212"))
HOSTILE = (("RU", "AS49505", "91.240"), ("CN", "AS4837", "123.160"), ("IR", "AS58224", "5.160"),
           ("VN", "AS45899", "113.161"), ("NG", "AS36873", "105.112"), ("BR", "AS28573", "177.37"))
RESIDENTIAL = tuple((c, asn, prefix) for c in ("US", "GB", "IN") for prefix, asn in O.HOME_ISPS[c])
TOOL_UAS = ("python-requests/2.31.0", "Go-http-client/2.0", "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1)",
            "okhttp/4.12.0", O.DESKTOP_UAS[1])
FAILED = '{"method":"password","reason":"bad_password"}'


class Attacker:
    """Draws the attacks into ``ev`` and their labels into ``book``."""

    def __init__(self, rng: np.random.Generator, org: O.Org, ev: Events, book: Book, sessions: Sessions, *,
                 t0: int, window: tuple[int, int]) -> None:
        self.rng, self.org, self.ev, self.book, self.sessions = rng, org, ev, book, sessions
        self.t0, self.window = t0, window
        self.humans = np.arange(org.size)

    def run(self, per_class: int) -> None:
        steps: dict[str, Callable[[], None]] = {name: getattr(self, name) for name in CLASSES}
        for name in CLASSES:
            for _ in range(per_class):
                steps[name]()

    # -- helpers ------------------------------------------------------------------------------------------

    def _when(self, lo_h: float = 0.0, hi_h: float = 24.0) -> int:
        day = int(self.rng.integers(*self.window))
        return self.t0 + day * DAY + int(self.rng.uniform(lo_h, hi_h) * HOUR)

    def _targets(self, lo: int, hi: int) -> np.ndarray:
        """Accounts to try: ``lo``..``hi`` of them, at most 40% of a small organisation."""
        n = min(int(self.rng.integers(lo, hi + 1)), max(5, int(0.4 * self.humans.size)))
        return self.org.user_ids[self.rng.choice(self.humans, size=n, replace=False)]

    def _net(self, pool) -> tuple[str, str, str]:
        country, asn, prefix = pool[int(self.rng.integers(len(pool)))]
        return f"{prefix}.{int(self.rng.integers(1, 255))}.{int(self.rng.integers(1, 255))}", country, asn

    def _logins(self, tag: int, ts, users, ip, country, asn, ua, outcome: str = "failure") -> None:
        self.ev.add(ts, tag=tag, event_type="user_login", user_id=np.asarray(users, dtype=object), outcome=outcome,
                    source_ip=ip, source_country=country, source_asn=asn, user_agent=ua,
                    metadata=FAILED if outcome == "failure" else '{"method":"password"}')

    def _loot(self, tag: int, t: int, user: str, ip, country, asn, ua, k: int, span_s: float) -> None:
        ts = t + np.sort(self.rng.integers(SECOND, int(span_s * SECOND), k))
        kinds = np.array(["file_download", "query_executed", "report_viewed"], dtype=object)[self.rng.integers(0, 3, k)]
        meta = np.where(kinds == "file_download", '{"bytes":2400000,"path":"/shares/finance/payroll.xlsx"}',
                        np.where(kinds == "query_executed", '{"rows":900,"dataset":"crm_accounts"}',
                                 '{"report":"headcount"}')).astype(object)
        self.ev.add(ts, tag=tag, event_type=kinds, user_id=user, outcome="success", source_ip=ip, source_country=country,
                    source_asn=asn, user_agent=ua, metadata=meta)

    def _session(self, people: np.ndarray) -> int:
        """A working session (index) of one of ``people`` inside the attack window."""
        s = self.sessions
        inside = np.isin(s.user, people) & (s.day >= self.window[0]) & (s.day < self.window[1])
        return int(self.rng.choice(np.flatnonzero(inside)))

    # -- the classes --------------------------------------------------------------------------------------

    def brute_force_fast(self) -> None:
        rng = self.rng
        victim = self.org.user_ids[rng.choice(self.humans)]
        ip, c, a = self._net(HOSTING + HOSTILE)
        n, span = int(rng.integers(20, 151)), rng.uniform(60, 900)
        t = self._when()
        ua = TOOL_UAS[int(rng.integers(len(TOOL_UAS)))]
        won = rng.random() < 0.3
        tag = self.book.attack("brute_force_fast", {victim, ip}, actor=ip, attempts=n, span_s=span, succeeded=won)
        self._logins(tag, t + np.sort(rng.integers(0, int(span * SECOND), n)), [victim] * n, ip, c, a, ua)
        if won:
            end = t + int(span * SECOND) + 3 * SECOND
            self._logins(tag, end, [victim], ip, c, a, ua, "success")
            self._loot(tag, end, victim, ip, c, a, ua, int(rng.integers(1, 6)), 600)

    def brute_force_slow(self) -> None:
        rng = self.rng
        victim = self.org.user_ids[rng.choice(self.humans)]
        nets = [self._net(HOSTING + HOSTILE) for _ in range(int(rng.integers(1, 4)))]
        n = int(rng.integers(15, 61))
        gaps = rng.uniform(3, 20, n) * 60 * SECOND
        ts = self._when() + np.cumsum(gaps).astype(np.int64)
        pick = rng.integers(0, len(nets), n)
        tag = self.book.attack("brute_force_slow", {victim, *(x[0] for x in nets)}, actor=nets[0][0], attempts=n,
                               span_s=float(gaps.sum() / SECOND), addresses=len(nets))
        self._logins(tag, ts, [victim] * n, np.array([nets[k][0] for k in pick], dtype=object),
                     np.array([nets[k][1] for k in pick], dtype=object),
                     np.array([nets[k][2] for k in pick], dtype=object), TOOL_UAS[int(rng.integers(len(TOOL_UAS)))])

    def password_spraying(self) -> None:
        rng = self.rng
        ip, c, a = self._net(HOSTING + HOSTILE)
        targets = self._targets(40, 300)
        rounds = 2 if rng.random() < 0.3 else 1
        span = rng.uniform(300, 2400)
        users = np.tile(targets, rounds)
        tag = self.book.attack("password_spraying", {ip, *targets}, actor=ip, users=targets.size, rounds=rounds,
                               span_s=span)
        self._logins(tag, self._when() + np.sort(rng.integers(0, int(span * SECOND), users.size)), users, ip, c, a,
                     TOOL_UAS[int(rng.integers(len(TOOL_UAS)))])

    def password_spraying_slow(self) -> None:
        rng = self.rng
        nets = [self._net(HOSTING + HOSTILE) for _ in range(int(rng.integers(1, 4)))]
        targets = self._targets(30, 150)
        span = rng.uniform(6, 30) * HOUR
        ts = self._when() + np.sort(rng.integers(0, int(span), targets.size))
        pick = rng.integers(0, len(nets), targets.size)
        tag = self.book.attack("password_spraying_slow", {*(x[0] for x in nets), *targets}, actor=nets[0][0],
                               users=targets.size, span_s=span / SECOND, addresses=len(nets))
        self._logins(tag, ts, targets, np.array([nets[k][0] for k in pick], dtype=object),
                     np.array([nets[k][1] for k in pick], dtype=object),
                     np.array([nets[k][2] for k in pick], dtype=object), TOOL_UAS[int(rng.integers(len(TOOL_UAS)))])

    def credential_stuffing(self) -> None:
        rng = self.rng
        pool = RESIDENTIAL if rng.random() < 0.6 else HOSTING + RESIDENTIAL
        nets = [self._net(pool) for _ in range(int(rng.integers(15, 201)))]
        targets = self._targets(100, 600)
        span = rng.uniform(20, 180) * 60 * SECOND
        t = self._when()
        ts = t + np.sort(rng.integers(0, int(span), targets.size))
        pick = rng.integers(0, len(nets), targets.size)
        ips = np.array([nets[k][0] for k in pick], dtype=object)
        countries = np.array([nets[k][1] for k in pick], dtype=object)
        asns = np.array([nets[k][2] for k in pick], dtype=object)
        won = np.flatnonzero(rng.random(targets.size) < rng.uniform(0.01, 0.04))
        if won.size == 0:
            won = np.array([int(rng.integers(targets.size))])
        ua = O.DESKTOP_UAS[int(rng.integers(len(O.DESKTOP_UAS)))]
        tag = self.book.attack("credential_stuffing", {*ips.tolist(), *targets}, actor=None, users=targets.size,
                               addresses=len(set(ips.tolist())), span_s=span / SECOND, successes=won.size)
        fail = np.setdiff1d(np.arange(targets.size), won)
        self._logins(tag, ts[fail], targets[fail], ips[fail], countries[fail], asns[fail], ua)
        self._logins(tag, ts[won], targets[won], ips[won], countries[won], asns[won], ua, "success")
        for k in won:
            self._loot(tag, int(ts[k]), targets[k], ips[k], countries[k], asns[k], ua, int(rng.integers(1, 4)), 300)

    def exfiltration(self) -> None:
        rng = self.rng
        who = np.flatnonzero(np.isin(self.org.department, ["sales", "finance", "engineering", "hr", "support"]))
        s = self._session(who)
        ss = self.sessions
        k = int(rng.integers(10, 61))
        span = rng.uniform(20, 150) * 60 * SECOND
        latest = max(int(ss.end[s] - span), int(ss.start[s]) + HOUR)
        t = int(rng.integers(int(ss.start[s]) + 15 * 60 * SECOND, latest + 1))
        rows = (rng.lognormal(np.log(rng.uniform(20_000, 250_000)), 0.6, k)).astype(np.int64)
        user = self.org.user_ids[ss.user[s]]
        tag = self.book.attack("exfiltration", {user}, actor=user, exports=k, rows=float(rows.sum()),
                               span_s=span / SECOND)
        kinds = np.where(rng.random(k) < 0.8, "data_export", "export_requested").astype(object)
        self.ev.add(t + np.sort(rng.integers(0, int(span), k)), tag=tag, event_type=kinds, user_id=user,
                    outcome="success", source_ip=ss.ip[s], source_country=ss.country[s], source_asn=ss.asn[s],
                    user_agent=ss.ua[s],
                    metadata=np.array([f'{{"rows":{r},"dataset":"crm_accounts","format":"csv"}}' for r in rows],
                                      dtype=object))

    def _night_chain(self, scenario: str, u: int, steps: list[tuple[str, str, str | None]], gap_s: tuple) -> None:
        rng, org = self.rng, self.org
        local = rng.uniform(0.5, 4.5)
        day = int(rng.integers(*self.window))
        t = self.t0 + day * DAY + int(((local - org.tz[u]) % 24) * HOUR)
        ts = t + np.cumsum(np.r_[0, rng.uniform(*gap_s, len(steps))] * SECOND).astype(np.int64)
        user = org.user_ids[u]
        tag = self.book.attack(scenario, {user}, actor=user, local_hour=local, span_s=float((ts[-1] - ts[0]) / SECOND),
                               steps=len(steps))
        kinds = np.array(["user_login"] + [k for k, _, _ in steps], dtype=object)
        meta = np.array(['{"method":"password","mfa":"push"}'] + [m for _, m, _ in steps], dtype=object)
        resource = np.array([None] + [r for _, _, r in steps], dtype=object)
        self.ev.add(ts, tag=tag, event_type=kinds, user_id=user, outcome="success", source_ip=org.home_ip[u],
                    source_country=org.country[u], source_asn=org.home_asn[u],
                    user_agent=O.DESKTOP_UAS[org.browser[u]], metadata=meta, resource_id=resource)

    def night_privilege_escalation(self) -> None:
        rng, org = self.rng, self.org
        u = int(rng.choice(np.flatnonzero(np.isin(org.department, ["sales", "finance", "engineering", "hr", "support"]))))
        user = org.user_ids[u]
        steps = [("permission_change", f'{{"granted":"admin","target_user":"{user}"}}', user)]
        if rng.random() < 0.7:
            steps.append(("api_key_created", '{"scope":"admin:all","key_id":"k_7f3a9c01","ttl_days":3650}', None))
        if rng.random() < 0.3:
            steps.append(("config_change", '{"setting":"sso.mfa_required","before":"true","after":"false"}', None))
        self._night_chain("night_privilege_escalation", u, steps, (30, 600))

    def insider_chain(self) -> None:
        """A contractor, who never did a privileged action, at an odd hour: admin, a key, audit retention 1 day."""
        rng, org = self.rng, self.org
        u = int(rng.choice(org.members("contractor")))
        user = org.user_ids[u]
        steps = [("permission_change", f'{{"granted":"admin","target_user":"{user}"}}', user),
                 ("api_key_created", '{"scope":"admin:all","key_id":"k_0c11d3e5","ttl_days":365}', None),
                 ("config_change", '{"setting":"audit.retention_days","before":"365","after":"1"}', "audit.retention")]
        if rng.random() < 0.5:
            steps.append(("data_export", '{"rows":4200,"dataset":"crm_accounts","format":"csv"}', None))
        self._night_chain("insider_chain", u, steps, (40, 180))

    def new_country_login(self) -> None:
        rng, org = self.rng, self.org
        u = int(rng.choice(self.humans))
        user = org.user_ids[u]
        ip, c, a = self._net(HOSTILE + HOSTING)
        t = self._when()
        ua = O.DESKTOP_UAS[int(rng.integers(len(O.DESKTOP_UAS)))] if rng.random() < 0.7 else TOOL_UAS[0]
        tries = int(rng.integers(0, 4))
        k = int(rng.integers(3, 26))
        span = rng.uniform(10, 90) * 60
        tag = self.book.attack("new_country_login", {user, ip}, actor=ip, failures=tries, actions=k, span_s=span)
        if tries:
            self._logins(tag, t - np.arange(tries, 0, -1) * 25 * SECOND, [user] * tries, ip, c, a, ua)
        self._logins(tag, t, [user], ip, c, a, ua, "success")
        self._loot(tag, t, user, ip, c, a, ua, k, span)
