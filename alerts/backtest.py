"""Backtests: how often a rule would have fired over stored data.

Threshold rules replay the events_1m rollup (plus its raw tail) as minute-by-minute sliding windows
in Polars — one query per day instead of one per evaluation — so a month of a busy system takes
seconds. Minute buckets make the window edges approximate (±1 minute) compared with the live
evaluator, which counts raw events to the second. Runs of firing minutes closer than the rule's
cooldown are one episode, as the live lifecycle would hold them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl
from psycopg_pool import ConnectionPool

from alerts.errors import ConfigError
from alerts.rules import Absence, Anomaly, Health, Rule, Threshold
from storage.timescale import anomalies, rollups, rule_inputs


@dataclass(frozen=True)
class Episode:
    group: dict[str, str]
    start: datetime
    end: datetime
    peak: int


@dataclass
class BacktestResult:
    rule_id: str
    start: datetime
    end: datetime
    method: str
    episodes: list[Episode] = field(default_factory=list)

    @property
    def groups(self) -> int:
        return len({tuple(sorted(e.group.items())) for e in self.episodes})

    def top(self, n: int = 10) -> list[tuple[dict[str, str], int]]:
        counts: dict[tuple, int] = {}
        for e in self.episodes:
            key = tuple(sorted(e.group.items()))
            counts[key] = counts.get(key, 0) + 1
        return [(dict(k), v) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def backtest(pool: ConnectionPool, rule: Rule, *, start: datetime, end: datetime,
             progress: Callable[[datetime, datetime], None] | None = None) -> BacktestResult:
    cond = rule.condition
    if isinstance(cond, Health):
        raise ConfigError(f"{rule.id} is a health rule: it reads the platform's live state (leader, outbox, "
                          "checkpoints), which is not kept as history, so it cannot be backtested")
    if isinstance(cond, Threshold):
        return _threshold(pool, rule, cond, start, end, progress)
    if isinstance(cond, Anomaly):
        hits = anomalies.anomaly_hits(pool, start=start, end=end, detectors=cond.detectors, min_score=cond.min_score,
                                  severities=cond.severities)
        episodes = [Episode({"entity_type": h.entity_type, "entity_value": h.entity_value}, h.window_end,
                            h.window_end, h.anomalies) for h in hits]
        return BacktestResult(rule.id, start, end, "anomalies table", episodes)
    if isinstance(cond, Absence):
        gaps = rule_inputs.sender_gaps(pool, field_name=cond.field, values=cond.values, start=start, end=end,
                                 min_gap_seconds=cond.silent_for.total_seconds())
        episodes = [Episode({cond.field: sender}, before + cond.silent_for, after,
                            int((after - before).total_seconds() // 60)) for sender, before, after in gaps]
        tail = rule_inputs.last_seen(pool, field_name=cond.field, values=cond.values, since=start, until=end)
        episodes += [Episode({cond.field: s}, last + cond.silent_for, end, int((end - last).total_seconds() // 60))
                     for s, last in tail.items() if last is not None and end - last >= cond.silent_for]
        return BacktestResult(rule.id, start, end, "raw events (gaps per sender)", episodes)
    raise TypeError(f"unknown condition {type(cond).__name__}")


def _threshold(pool: ConnectionPool, rule: Rule, cond: Threshold, start: datetime, end: datetime,
               progress: Callable[[datetime, datetime], None] | None) -> BacktestResult:
    minutes = max(1, -(-int(cond.window.total_seconds()) // 60))
    window = timedelta(minutes=minutes)
    group_by = list(cond.group_by)
    dims = group_by + ([cond.distinct] if cond.distinct else [])
    frames = []
    day = start
    while day < end:
        day_end = min(day + timedelta(days=1), end)
        frame = rollups.series(pool, rollups.SeriesQuery(start=day - window, end=day_end, interval="1m",
                                                         group_by=dims or ["event_type"],
                                                         event_types=cond.event_types, outcome=cond.outcome))
        if frame.height:
            frames.append(_windows(frame, group_by, cond, minutes, day, day_end))
        if progress:
            progress(day, day_end)
        day = day_end
    hits = pl.concat(frames) if frames else pl.DataFrame()
    return BacktestResult(rule.id, start, end, "events_1m rollup, 1-minute sliding windows",
                          _episodes(hits, group_by, rule.cooldown))


def _windows(frame: pl.DataFrame, group_by: list[str], cond: Threshold, minutes: int, low: datetime,
             high: datetime) -> pl.DataFrame:
    """(end, group..., value) for every minute in [low, high) whose trailing window reaches the threshold."""
    spread = (frame.drop_nulls(group_by).with_columns(pl.int_ranges(1, minutes + 1).alias("k")).explode("k")
              .with_columns((pl.col("bucket") + pl.duration(minutes=pl.col("k"))).alias("end"))
              .filter((pl.col("end") > low) & (pl.col("end") <= high)))
    keys = ["end", *group_by]
    value = pl.col(cond.distinct).n_unique() if cond.distinct else pl.col("events").sum()
    return spread.group_by(keys).agg(value.cast(pl.Int64).alias("value")).filter(pl.col("value") >= cond.at_least)


def _episodes(hits: pl.DataFrame, group_by: list[str], cooldown: timedelta) -> list[Episode]:
    if hits.is_empty():
        return []
    gap = cooldown + timedelta(minutes=1)
    episodes: list[Episode] = []
    ordered = hits.sort([*group_by, "end"]) if group_by else hits.sort("end")
    current: dict | None = None
    for row in ordered.iter_rows(named=True):
        group = {g: str(row[g]) for g in group_by}
        if current and current["group"] == group and row["end"] - current["end"] <= gap:
            current["end"] = row["end"]
            current["peak"] = max(current["peak"], row["value"])
            continue
        if current:
            episodes.append(Episode(current["group"], current["start"], current["end"], current["peak"]))
        current = {"group": group, "start": row["end"], "end": row["end"], "peak": row["value"]}
    if current:
        episodes.append(Episode(current["group"], current["start"], current["end"], current["peak"]))
    return sorted(episodes, key=lambda e: e.start)
