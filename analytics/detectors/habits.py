"""Failure habits: a machine's stale credential failing for days, told apart from guessing by its shape.

A service whose secret went stale fails on a timer or in bursts (a retry loop, every replica after a
deploy) for days: always the same client, against the same account, from a few hosts of one or two
networks. Whether it is resolved by a success within minutes says nothing (often it never is). What
matters about such a stream is a *change*: another client, an address outside its networks, an hourly
rate it never reached, not that it goes on. Guessing has none of that shape: a brute force rotates
through many networks, a spray touches many accounts once, and neither has days of history on one
client before it starts. Failures that fit a learned habit are set aside by the failure detectors;
everything else about the account is scored as before.

A habit takes days to learn; the first time a service's secret is rotated under it, its retry loop
is judged by where it comes from and how it ends instead (``loops.RetryLoops``, applied here too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from analytics import features as F
from analytics.detectors.loops import RetryLoops

KEYS = ("user_id", "_client")


def _client() -> pl.Expr:
    return pl.col("user_agent").fill_null("")


def _network() -> pl.Expr:
    """The address's network: an IPv4 /24 or the first four groups of an IPv6 address ("" when none)."""
    ip = pl.col("source_ip").fill_null("")
    return pl.when(ip.str.contains(":")).then(ip.str.extract(r"^([0-9a-fA-F]*:[0-9a-fA-F]*:[0-9a-fA-F]*:"
                                                              r"[0-9a-fA-F]*)", 1)
                                              ).otherwise(ip.str.replace(r"\.\d+$", "")).fill_null("")


@dataclass(frozen=True)
class FailureHabits:
    """Streams of failed logins that are a habit: (user, client) with the networks and the hourly ceiling seen.

    Learn with ``learn``; ``drop_from`` removes the failures that fit a habit from an events frame, and cuts a
    first-time retry loop (``loops``) to its last failure.
    """

    streams: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(
        schema={"user_id": pl.String, "_client": pl.String, "_ceiling": pl.Float64}))
    networks: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(
        schema={"user_id": pl.String, "_client": pl.String, "_network": pl.String}))
    loops: RetryLoops = field(default_factory=RetryLoops)
    # Addresses that did legitimate work in the history (any success): at the live edge a failure from one of
    # them may be seconds from its owner's success (``features.with_resolved``), one from elsewhere is not.
    worked: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={"source_ip": pl.String}))

    @classmethod
    def learn(cls, events: pl.LazyFrame, *, min_failures: int = 30, min_days: int = 2, min_hours: int = 3,
              max_networks: int = 2, min_share: float = 0.9, headroom: float = 2.0) -> FailureHabits:
        """Habits in ``events``: one client for at least ``min_share`` of a user's failures, at least ``min_failures``
        of them on ``min_days`` days and in ``min_hours`` distinct hours, from at most ``max_networks`` networks.
        The ceiling is ``headroom`` times the most failures the stream had in one hour (plus a few)."""
        loops = RetryLoops.learn(events)
        worked = F.good_sources(events).sort("source_ip").collect()
        failed = (events.filter(F.is_failed_login() & pl.col("user_id").is_not_null())
                  .select("user_id", _client().alias("_client"), _network().alias("_network"), "timestamp")
                  .collect())
        if failed.is_empty():
            return cls(loops=loops, worked=worked)
        per_user = failed.group_by("user_id").agg(pl.len().alias("_all"))
        hourly = (failed.group_by(*KEYS, pl.col("timestamp").dt.truncate("1h").alias("_hour"))
                  .agg(pl.len().alias("_n")))
        streams = (failed.group_by(KEYS).agg(
            pl.len().alias("_failures"), pl.col("timestamp").dt.date().n_unique().alias("_days"),
            pl.col("_network").n_unique().alias("_networks"))
            .join(hourly.group_by(KEYS).agg(pl.len().alias("_hours"), pl.col("_n").max().alias("_peak")), on=KEYS)
            .join(per_user, on="user_id")
            .filter((pl.col("_failures") >= min_failures) & (pl.col("_days") >= min_days)
                    & (pl.col("_hours") >= min_hours) & (pl.col("_networks") <= max_networks)
                    & (pl.col("_failures") >= min_share * pl.col("_all")))
            .select(*KEYS, (headroom * pl.col("_peak") + 5).cast(pl.Float64).alias("_ceiling")))
        networks = failed.select(*KEYS, "_network").unique().join(streams.select(KEYS), on=KEYS, how="semi")
        return cls(streams, networks, loops, worked)

    def drop_from(self, events: pl.LazyFrame, *, now: datetime | None = None) -> pl.LazyFrame:
        """``events`` without the failed logins that fit a habit (its client, its networks, under its ceiling), and
        with each retry loop of a known program cut to its last failure (``loops``: it needs the successes; at
        the live edge ``now``, a loop still open is held until it ends)."""
        events = self.loops.thin(events, now=now)
        if self.streams.is_empty():
            return events
        failed = F.is_failed_login()
        marked = (events.filter(failed)
                  .with_columns(_client().alias("_client"), _network().alias("_network"))
                  .join(self.networks.lazy().with_columns(pl.lit(True).alias("_known")),
                        on=[*KEYS, "_network"], how="left")
                  .join(self.streams.lazy(), on=KEYS, how="left"))
        known = pl.col("_known").fill_null(False)
        in_hour = known.cast(pl.Int64).sum().over(*KEYS, pl.col("timestamp").dt.truncate("1h"))
        habitual = known & (in_hour <= pl.col("_ceiling").fill_null(-1.0))
        kept = marked.filter(~habitual).drop("_client", "_network", "_known", "_ceiling")
        return pl.concat([events.filter(~failed), kept], how="vertical_relaxed")
