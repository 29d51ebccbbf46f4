"""A realistic, seeded audit-traffic generator with injected incidents.

The same seed and time window always give the same events (event ids included), so a
replay after a crash is deduplicated (R5) and a demo or a test is reproducible. Events
are generated hour by hour: each hour's events depend only on (seed, hour).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.incidents import Incident

DEPARTMENTS = ("engineering", "finance", "sales", "support", "hr", "legal", "security")
# Public example ranges per country, so enrichment gives real countries.
COUNTRY_NETS = {
    "US": ("8.8.", "24.48.", "66.249."),
    "GB": ("81.2.", "212.58."),
    "DE": ("85.214.", "217.160."),
    "FR": ("90.84.", "212.27."),
    "NL": ("145.100.",),
}
HOSTILE_NETS = ("185.220.101.", "45.155.205.", "193.142.146.")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
)
# (event_type, weight) during a working hour of an ordinary user
WORK_MIX = (
    ("file_download", 30), ("file_upload", 12), ("data_query", 25), ("data_export", 4), ("config_change", 1),
)


def history_start(now: datetime, hours: float = 24.0) -> datetime:
    """Where a demo backfill ending at ``now`` starts: ``hours`` before it, and further back while it holds less
    than a working day (24 weekday hours). Demo people mostly rest at weekends, and a weekend alone is too
    little to learn a working week from (a Saturday holds a third of a weekday's events): begun on a Sunday
    evening, the history reaches back to Friday morning."""
    start, hour, weekday = now, timedelta(hours=1), 0
    while now - start < timedelta(hours=hours) or weekday < 24:
        start -= hour
        weekday += start.weekday() < 5
    return start


@dataclass(frozen=True)
class DemoUser:
    user_id: str
    display_name: str
    department: str
    kind: str  # human | service
    admin: bool
    start_hour: int  # UTC hour the working day starts
    day_hours: int
    country: str
    ip: str
    user_agent: str

    def registration(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "display_name": self.display_name, "department": self.department,
                "kind": self.kind, "email": f"{self.user_id}@example.com" if self.kind == "human" else None}


class DemoTraffic:
    def __init__(self, *, seed: int = 7, users: int = 300, service_accounts: int = 8,
                 events_per_user_hour: float = 6.0) -> None:
        self.seed = seed
        self.rate = events_per_user_hour
        rng = random.Random(seed)
        people = []
        for i in range(users):
            country = rng.choices(list(COUNTRY_NETS), weights=(50, 20, 15, 10, 5))[0]
            prefix = rng.choice(COUNTRY_NETS[country])
            people.append(DemoUser(
                user_id=f"user{i:04d}",
                display_name=f"Demo User {i}",
                department=rng.choice(DEPARTMENTS),
                kind="human",
                admin=rng.random() < 0.05,
                start_hour=rng.choice((6, 7, 7, 8, 8, 8, 9, 9, 10)),
                day_hours=rng.choice((8, 8, 9, 9, 10)),
                country=country,
                ip=f"{prefix}{rng.randrange(1, 255)}.{rng.randrange(1, 255)}",
                user_agent=rng.choice(USER_AGENTS),
            ))
        for i in range(service_accounts):
            people.append(DemoUser(
                user_id=f"svc-{('etl', 'backup', 'ci', 'billing', 'crm', 'search', 'mail', 'sso')[i % 8]}{i // 8 or ''}",
                display_name=f"Service account {i}", department="engineering", kind="service", admin=False,
                start_hour=0, day_hours=24, country="US", ip=f"10.0.{i}.{10 + i}", user_agent="python-requests/2.32",
            ))
        self.users: tuple[DemoUser, ...] = tuple(people)
        self._humans = [u for u in people if u.kind == "human"]
        self._non_admins = [u for u in self._humans if not u.admin]

    # -- incidents ------------------------------------------------------------------------------------

    def incidents(self, day: datetime) -> list[Incident]:
        """The attacks injected on a UTC day (the same every run for the same seed)."""
        rng = random.Random(f"{self.seed}:incidents:{day.date().isoformat()}")
        base = day.replace(hour=0, minute=0, second=0, microsecond=0)
        victim = rng.choice(self._humans)
        sprayer = f"{rng.choice(HOSTILE_NETS)}{rng.randrange(1, 255)}"
        burster = f"{rng.choice(HOSTILE_NETS)}{rng.randrange(1, 255)}"
        exfil = rng.choice(self._non_admins)
        escalator = rng.choice(self._non_admins)
        return [
            Incident.by("failed_login_burst", base + timedelta(hours=10, minutes=17),
                        base + timedelta(hours=10, minutes=19), victim.user_id, burster),
            Incident.by("password_spraying", base + timedelta(hours=14, minutes=5),
                        base + timedelta(hours=14, minutes=15), None, sprayer),
            Incident.by("night_data_export", base + timedelta(hours=3, minutes=10),
                        base + timedelta(hours=3, minutes=40), exfil.user_id, exfil.ip),
            Incident.by("unusual_permission_change", base + timedelta(hours=1, minutes=40),
                        base + timedelta(hours=1, minutes=45), escalator.user_id, escalator.ip),
        ]

    # -- events -------------------------------------------------------------------------------------------

    def events(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """Every event with ``start <= timestamp < end``, in time order."""
        hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        while hour < end:
            for event in self.hour(hour):
                ts = datetime.fromisoformat(event["timestamp"])
                if start <= ts < end:
                    yield event
            hour += timedelta(hours=1)

    def hour(self, hour: datetime) -> list[dict[str, Any]]:
        """All events of one UTC hour, sorted by time."""
        return self._hour(hour)[0]

    def injected_times(self, incident: Incident) -> list[datetime]:
        """When the events of one injected incident happen (an incident's events are drawn inside its window,
        so a range that cuts the window may hold some, all or none of them)."""
        hour = incident.start.replace(minute=0, second=0, microsecond=0)
        return self._hour(hour)[1].get(incident.scenario, [])

    def _hour(self, hour: datetime) -> tuple[list[dict[str, Any]], dict[str, list[datetime]]]:
        rng = random.Random(f"{self.seed}:{hour.isoformat()}")
        out: list[dict[str, Any]] = []
        weekend = hour.weekday() >= 5
        for user in self.users:
            if user.kind == "service":
                self._service_hour(rng, user, hour, out)
                continue
            offset = (hour.hour - user.start_hour) % 24
            working = offset < user.day_hours and not (weekend and rng.random() < 0.9)
            if not working:
                if rng.random() < 0.01:  # the odd evening check of mail
                    self._session(rng, user, hour, out, count=1)
                continue
            # Busier mid-morning and mid-afternoon; a login at the start of the day.
            shape = 0.6 + 0.6 * math.sin(math.pi * (offset + 0.5) / user.day_hours)
            count = _poisson(rng, self.rate * shape)
            self._session(rng, user, hour, out, count=count, login=offset == 0, logout=offset == user.day_hours - 1)
        injected: dict[str, list[datetime]] = {}
        for incident in self.incidents(hour):
            if hour <= incident.start < hour + timedelta(hours=1):
                first = len(out)
                self._inject(rng, incident, out)
                injected[incident.scenario] = sorted(datetime.fromisoformat(e["timestamp"]) for e in out[first:])
        out.sort(key=lambda e: e["timestamp"])
        return out, injected

    # -- pieces -------------------------------------------------------------------------------------------

    def _event(self, rng: random.Random, when: datetime, event_type: str, user: DemoUser | str, *,
               outcome: str = "success", ip: str | None = None, metadata: dict[str, Any] | None = None,
               resource: str | None = None, ua: str | None = None) -> dict[str, Any]:
        user_id = user if isinstance(user, str) else user.user_id
        event = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "timestamp": when.isoformat(timespec="microseconds"),
            "event_type": event_type,
            "user_id": user_id,
            "outcome": outcome,
            "source": "demo-app" if isinstance(user, str) or user.kind == "human" else "demo-batch",
            "source_ip": ip or (user.ip if not isinstance(user, str) else None),
            "user_agent": ua or (user.user_agent if not isinstance(user, str) else USER_AGENTS[0]),
            "metadata": metadata or {},
        }
        if resource:
            event["resource_id"] = resource
        return event

    def _session(self, rng, user: DemoUser, hour: datetime, out: list, *, count: int, login: bool = False,
                 logout: bool = False) -> None:
        if login:
            t = hour + timedelta(seconds=rng.uniform(0, 600))
            if rng.random() < 0.04:  # a mistyped password first
                out.append(self._event(rng, t, "user_login", user, outcome="failure",
                                       metadata={"method": "password", "reason": "bad_password"}))
                t += timedelta(seconds=rng.uniform(3, 20))
            out.append(self._event(rng, t, "user_login", user, metadata={"method": rng.choice(("password", "sso"))}))
        types, weights = zip(*WORK_MIX, strict=True)
        for _ in range(count):
            t = hour + timedelta(seconds=rng.uniform(0, 3600))
            kind = rng.choices(types, weights=weights)[0]
            metadata: dict[str, Any] = {}
            resource = None
            if kind in ("file_download", "file_upload"):
                resource = f"doc-{rng.randrange(10_000)}"
                metadata = {"bytes": int(rng.lognormvariate(12, 1.2)), "bucket": user.department}
            elif kind == "data_export":
                metadata = {"rows": int(rng.lognormvariate(7, 1.0)), "dataset": rng.choice(("crm", "billing", "hr"))}
            elif kind == "data_query":
                metadata = {"rows": rng.randrange(1, 500), "dataset": rng.choice(("crm", "billing", "tickets"))}
            elif kind == "config_change":
                if not user.admin:
                    kind, metadata = "file_download", {"bytes": 2048, "bucket": user.department}
                else:
                    metadata = {"setting": rng.choice(("sso.timeout", "mfa.required", "export.limit"))}
            out.append(self._event(rng, t, kind, user, metadata=metadata, resource=resource))
        if logout:
            out.append(self._event(rng, hour + timedelta(seconds=rng.uniform(3000, 3599)), "user_logout", user))

    def _service_hour(self, rng, user: DemoUser, hour: datetime, out: list) -> None:
        for _ in range(_poisson(rng, 30)):
            t = hour + timedelta(seconds=rng.uniform(0, 3600))
            out.append(self._event(rng, t, "data_query", user,
                                   metadata={"rows": rng.randrange(1, 5000), "dataset": "warehouse"}))
        if user.user_id.startswith("svc-backup") and hour.hour == 2:  # the nightly export that is normal
            out.append(self._event(rng, hour + timedelta(minutes=5), "data_export", user,
                                   metadata={"rows": 250_000, "dataset": "backup"}))

    def _inject(self, rng, incident: Incident, out: list) -> None:
        span = (incident.end - incident.start).total_seconds()

        def at() -> datetime:
            return incident.start + timedelta(seconds=rng.uniform(0, span))

        hostile_ua = "python-requests/2.31 (scanner)"
        if incident.scenario == "failed_login_burst":
            for _ in range(40):
                out.append(self._event(rng, at(), "user_login", incident.user_id, outcome="failure",
                                       ip=incident.source_ip, ua=hostile_ua,
                                       metadata={"method": "password", "reason": "bad_password"}))
        elif incident.scenario == "password_spraying":
            for victim in rng.sample(self._humans, 60):
                out.append(self._event(rng, at(), "user_login", victim.user_id, outcome="failure",
                                       ip=incident.source_ip, ua=hostile_ua,
                                       metadata={"method": "password", "reason": "bad_password"}))
        elif incident.scenario == "night_data_export":
            for _ in range(25):
                out.append(self._event(rng, at(), "data_export", incident.user_id, ip=incident.source_ip,
                                       metadata={"rows": rng.randrange(200_000, 900_000), "dataset": "crm"}))
        elif incident.scenario == "unusual_permission_change":
            # A night-time escalation by a non-admin, within minutes: they log in, grant themselves admin,
            # create an API key and shorten the audit log's retention to a day. Each step is modest on its own
            # (a single self-grant scored 0.57-0.62 over the demo's history, on either side of the 0.6 an
            # anomaly needs, with the time of day); the session is not.
            who, t = incident.user_id, incident.start + timedelta(seconds=rng.uniform(0, 60))
            steps = (("user_login", {"method": "password"}, None),
                     ("permission_change", {"granted": "admin", "target_user": who}, who),
                     ("api_key_created", {"scope": "admin", "key_id": f"k_{rng.getrandbits(32):08x}"}, None),
                     ("config_change", {"setting": "audit.retention_days", "value": 1}, None))
            for kind, metadata, resource in steps:
                out.append(self._event(rng, t, kind, who, ip=incident.source_ip, resource=resource,
                                       metadata=metadata))
                t += timedelta(seconds=rng.uniform(20, 70))


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(rng.gauss(lam, math.sqrt(lam)) + 0.5))
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1
