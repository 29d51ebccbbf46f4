"""Context for one anomaly: the entity's baseline against what happened, and how its peers compare.

Pure functions over frames the data API returns (``AuditData.rollup``, ``events``, ``users``), for
the investigation notebook and anything else that explains an anomaly to an analyst.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl


def hourly_baseline(hourly: pl.DataFrame, *, until: datetime, since: datetime | None = None,
                    sigmas: float = 3.0) -> pl.DataFrame:
    """Each hour's ``events`` next to what the same hour of day looked like before ``until``.

    ``hourly`` has ``bucket`` and ``events`` for one entity (missing hours count as zero). Adds
    ``expected`` (the mean for that hour of day over the earlier days), ``upper`` (``sigmas``
    standard deviations above it) and ``above`` (events beyond ``upper``). ``since`` is where the
    looked-at history starts: hours from it on with no events count as zero, so an entity first seen
    in the window (an attacker's address) has an expected count of zero, not none.
    """
    until = until.astimezone(UTC)
    if hourly.is_empty():
        return hourly.with_columns(expected=pl.lit(None, pl.Float64), upper=pl.lit(None, pl.Float64),
                                   above=pl.lit(None, pl.Boolean))
    first = hourly["bucket"].min()
    if since is not None:
        first = min(first, since.astimezone(UTC).replace(minute=0, second=0, microsecond=0))
    last = hourly["bucket"].max()
    grid = pl.datetime_range(first, last, "1h", eager=True, time_zone="UTC").alias("bucket").to_frame()
    full = (grid.join(hourly.select("bucket", pl.col("events").cast(pl.Float64)), on="bucket", how="left")
            .with_columns(pl.col("events").fill_null(0.0), hour=pl.col("bucket").dt.hour()))
    profile = (full.filter(pl.col("bucket") < until).group_by("hour")
               .agg(expected=pl.col("events").mean(), spread=pl.col("events").std(ddof=0)))
    return (full.join(profile, on="hour", how="left")
            .with_columns(upper=pl.col("expected") + sigmas * pl.col("spread").fill_null(0.0))
            .with_columns(above=pl.col("events") > pl.col("upper"))
            .select("bucket", "events", "expected", "upper", "above").sort("bucket"))


def peer_comparison(counts: pl.DataFrame, users: pl.DataFrame, *, entity: str,
                    group_by: str = "department") -> pl.DataFrame:
    """The entity and the users of its ``group_by`` peer group, ranked by ``events``.

    ``counts`` has ``user_id`` and ``events`` (peers without events count zero); adds ``rank``
    (1 = most), ``percentile`` (share of peers at or below) and ``is_entity``.
    """
    mine = users.filter(pl.col("user_id") == entity)
    if mine.is_empty():
        raise ValueError(f"{entity!r} is not in the user directory, so it has no peer group")
    group = mine[group_by][0]
    peers = users.filter(pl.col(group_by) == group) if group is not None else mine
    totals = counts.group_by("user_id").agg(pl.col("events").sum())
    frame = (peers.select("user_id", group_by).join(totals, on="user_id", how="left")
             .with_columns(pl.col("events").fill_null(0)))
    return (frame.with_columns(rank=pl.col("events").rank("min", descending=True).cast(pl.Int64),
                               percentile=pl.col("events").rank("max") / pl.len(),
                               is_entity=pl.col("user_id") == entity)
            .sort("events", "user_id", descending=[True, False]))
