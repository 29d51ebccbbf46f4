"""Off-hours or unusual privileged actions: by an actor outside their working hours, or who never does them.

Two rarities, learned per actor with shrinkage towards the population: how often the actor's
events are this kind of privileged action, and how often the actor is active at this hour of the
day. Their product is the chance of seeing this action at this hour from this actor. A change an
actor makes to their own account (a role granted to themselves) is a third rarity, learned from
the population: how often changes of that type name their own actor as the target.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

import numpy as np
import polars as pl

from analytics import features as F
from analytics.detectors.base import Detector, with_scores, without_spans
from analytics.detectors.counts import _empty_scores

# Around an alarmed action, the actor's other events left out of what is learned of them (the rest of the
# escalation: the key created a minute later, the audit setting changed after it).
ALARM_MARGIN = timedelta(minutes=10)


class PrivilegedAction(Detector):
    """Privileged actions (permission_change, api_key_created, config_change, another's password_change).

    Parameters
    ----------
    type_prior : float, default 50.0
        Pseudo-events of population behaviour mixed into each actor's action-type frequencies.
    hour_prior : float, default 50.0
        Pseudo-events of population activity mixed into each actor's hour-of-day profile.
    min_type_share : float, default 1e-4
        Floor of the population share of a privileged type never seen in history.
    min_cohort : int, default 4
        Distinct actors doing one kind of action at an hour odd for each of them, within ``cohort_period``,
        that make it a planned cohort change (a release night): their hour is not held against them.
    cohort_period : str, default "6h"
        The span in which such actors are counted together.
    odd_hour : float, default 0.02
        An hour holding less than this share of an actor's activity is odd for them.
    self_prior : float, default 1.0
        Pseudo-count of self-targeted changes in each type's population share (so a type never seen
        self-targeted is rare, not impossible).
    alarm_score : float, default 0.6
        An actor's events within ``ALARM_MARGIN`` of a history action that scored this much, at an hour odd for
        them or on their own account, are left out of what is learned of them (an escalation alarmed on is not
        learned as their habit); 1.0 learns from everything.

    Attributes
    ----------
    actors_ : polars.DataFrame
        Per actor: events, and counts per privileged type.
    hours_ : polars.DataFrame
        Per actor and hour of day: events.
    type_share_, hour_share_ : dict, numpy.ndarray
        Population shares of each privileged type and of each hour.
    hours_seen_ : numpy.ndarray
        Hours of the day the history holds activity at; an hour it never covered is not held against anyone.
    version_ : str
        Identifies the fitted model.
    """

    name = "privileged_action"
    # 3: an alarmed action is not learned as the population's either; 4: judged without its minute; 5: without
    # the span an alarm on it leaves out (its minute and ``ALARM_MARGIN`` either side)
    version = "5"

    def __init__(self, *, type_prior: float = 50.0, hour_prior: float = 50.0, min_type_share: float = 1e-4,
                 min_cohort: int = 4, cohort_period: str = "6h", odd_hour: float = 0.02,
                 self_prior: float = 1.0, alarm_score: float = 0.6) -> None:
        self.type_prior = type_prior
        self.hour_prior = hour_prior
        self.min_type_share = min_type_share
        self.min_cohort = min_cohort
        self.cohort_period = cohort_period
        self.odd_hour = odd_hour
        self.self_prior = self_prior
        self.alarm_score = alarm_score

    @property
    def context(self) -> timedelta:
        """The privileged actions of one cohort period before a scored range (``analytics.lookback``): a release
        night's crowd is counted over whole periods, so a range starting mid-period sees the whole of it, and
        the worker's runs, whatever their start, score an action alike."""
        return F.duration(self.cohort_period)

    context_events: ClassVar[tuple[str, ...]] = tuple(F.PRIVILEGED_TYPES)

    @staticmethod
    def _actions(events: pl.LazyFrame) -> pl.LazyFrame:
        return events.filter(pl.col("event_type").is_in(F.PRIVILEGED_TYPES)).filter(F.is_privileged()).with_columns(
            pl.col("timestamp").dt.hour().alias("hour"), F.target_user().alias("target"))

    def _fit(self, events: pl.DataFrame) -> None:
        actions = self._learn(events)
        if self.alarm_score >= 1.0 or events.is_empty():
            return
        # An escalation alarmed on is not learned as the actor's habit: someone who granted themselves admin at
        # 18:15 on Tuesday is not, by Friday, an actor who does that at that hour. Alarmed, and at an hour odd for
        # them or on their own account: a rare change made in working hours is still learned (the admin's second
        # quarterly change is routine). Their events around each such alarm (the escalation's other steps) go too;
        # the population shares keep them (one actor hardly moves those). Each action is judged as if it had been
        # left out of the history, as it was when it happened.
        scored = self._score(events.lazy(), learned=True)
        if scored.is_empty():  # no privileged action in the history
            return
        alarmed = scored.filter(
            (pl.col("score") >= self.alarm_score) & ((pl.col("p_hour") < self.odd_hour) | (pl.col("p_self") < 1.0)))
        if alarmed.height:
            self._learn(without_spans(events, _spans(alarmed)), population=False)
            # Nor is it learned as the population's: while fewer than ``min_cohort`` actors were alarmed for a kind
            # of action, their alarmed actions leave its shares. Where such actions are rare, one escalation moved
            # them a lot: after a single alarmed self-grant, the only permission change on record, the next
            # actor's self-grant looked ordinary (the self share went from 1/2 to 2/3). A practice many actors
            # share (self-service elevation, a release night) is still learned.
            few = (alarmed.group_by("event_type").agg(pl.col("entity_value").n_unique().alias("actors"))
                   .filter(pl.col("actors") < self.min_cohort)["event_type"])
            leave = alarmed.filter(pl.col("event_type").is_in(few.implode()))
            if leave.height:
                # Every action of those kinds in the escalation's span, not only the rarest that the alarmed
                # minute's row names: two self-grants, in one minute or three apart, are one escalation.
                is_few = pl.col("event_type").is_in(few.implode())
                kept = without_spans(actions.filter(is_few), _spans(leave))
                self._population(pl.concat([actions.filter(~is_few), kept]), max(events.height, 1))

    def _learn(self, events: pl.DataFrame, *, population: bool = True) -> pl.DataFrame:
        """Each actor's counts and hours from ``events``; with ``population``, the population's shares too.
        Returns the privileged actions among ``events``."""
        lf = events.lazy()
        total = max(events.height, 1)
        self.actors_ = lf.group_by("user_id").agg(pl.len().alias("events")).collect()
        actions = self._actions(lf).collect()
        self.action_counts_ = actions.group_by("user_id", "event_type").agg(pl.len().alias("done"))
        hours = lf.with_columns(pl.col("timestamp").dt.hour().alias("hour"))
        self.hours_ = hours.group_by("user_id", "hour").agg(pl.len().alias("at_hour")).collect()
        if not population:
            return actions
        self._population(actions, total)
        per_hour = hours.group_by("hour").agg(pl.len().alias("n")).collect()
        share = np.full(24, 1.0)
        share[per_hour["hour"].to_numpy()] += per_hour["n"].to_numpy()
        self.hour_share_ = share / share.sum()
        # Hours of the day the history holds any activity at. One it never covered (a store younger than a
        # day, or the scored hour left out of a one-day warm-up) is judged by the hours either side of it: 13:00
        # is not odd for someone busy at 12:00 and 14:00 whose history simply has no 13:00 in it yet, while
        # 01:00 beside two quiet night hours still is. With neither side known the hour is no evidence.
        self.hours_seen_ = np.zeros(24, dtype=bool)
        self.hours_seen_[per_hour.filter(pl.col("n") > 0)["hour"].to_numpy()] = True
        return actions

    def _population(self, actions: pl.DataFrame, total: int) -> None:
        """The population's shares of each privileged type among ``total`` events, and of self-targeting in each."""
        mine = actions.filter(pl.col("target") == pl.col("user_id")).group_by("event_type").agg(pl.len().alias("k"))
        every = actions.group_by("event_type").agg(pl.len().alias("n")).join(mine, on="event_type", how="left")
        self.self_counts_ = {t: (float(n), float(k or 0)) for t, n, k in every.select("event_type", "n", "k").iter_rows()}
        self.self_share_ = {t: self._self_share(n, k) for t, (n, k) in self.self_counts_.items()}
        self.type_share_ = {t: max(actions.filter(pl.col("event_type") == t).height / total, self.min_type_share)
                            for t in F.PRIVILEGED_TYPES}

    def _self_share(self, n: float, k: float) -> float:
        return (k + self.self_prior) / (n + 2 * self.self_prior)

    def _score(self, events: pl.LazyFrame, *, learned: bool = False) -> pl.DataFrame:
        """``learned``: ``events`` are the history just learned, each action scored as if it had been left out of
        it with the actor's other events within ``ALARM_MARGIN`` of its minute."""
        found = self._actions(events).collect()
        if found.is_empty():
            return _empty_scores()
        found = (found.join(self.actors_, on="user_id", how="left")
                 .join(self.action_counts_, on=["user_id", "event_type"], how="left")
                 .join(self.hours_, on=["user_id", "hour"], how="left"))
        own = (found["target"] == found["user_id"]).fill_null(False).to_numpy()
        # Judged as if left out of the history with the actor's other events around it, the span an alarm on it
        # would leave out: an escalation's grants vouch for none of each other (a novice's second grant, a
        # minute or three after the first, is not "done once"), nor does the login that began it vouch for
        # its hour.
        if learned:
            mine, mine_hour, mine_type, mine_own = self._around(events, found, own)
        else:
            mine = mine_hour = mine_type = mine_own = np.zeros(found.height)
        n = np.maximum(found["events"].fill_null(0).to_numpy().astype(float) - mine, 0.0)
        done = np.maximum(found["done"].fill_null(0).to_numpy().astype(float) - mine_type, 0.0)
        at_hour = np.maximum(found["at_hour"].fill_null(0).to_numpy().astype(float) - mine_hour, 0.0)
        type_share = found["event_type"].replace_strict(self.type_share_, default=self.min_type_share,
                                                        return_dtype=pl.Float64).to_numpy()
        hour_share = self.hour_share_[found["hour"].to_numpy()]
        p_type = (done + self.type_prior * type_share) / (n + self.type_prior)
        hour = found["hour"].to_numpy()
        seen = self.hours_seen_[hour]
        if not seen.all():
            at_hour, hour_share, known = self._beside(found, at_hour, hour_share)
        p_hour = (at_hour + self.hour_prior * hour_share) / (n + self.hour_prior)
        if not seen.all():
            p_hour = np.where(seen | known, p_hour, 1.0)
        if learned:  # the type's counts without the span's actions of that type
            of_type, own_of_type = (found["event_type"].replace_strict(
                {t: c[i] for t, c in self.self_counts_.items()}, default=0.0, return_dtype=pl.Float64).to_numpy()
                for i in (0, 1))
            share_self = self._self_share(np.maximum(of_type - mine_type, 0.0), np.maximum(own_of_type - mine_own, 0.0))
        else:
            share_self = found["event_type"].replace_strict(self.self_share_, default=0.5,
                                                            return_dtype=pl.Float64).to_numpy()
        p_self = np.where(own, share_self, 1.0)
        # A release night: several actors doing this kind of action at an hour odd for each of them. The hour is
        # explained by the cohort (a planned change), so only the action's rarity for the actor remains.
        # Counted on two grids half a period apart, so a night that straddles a boundary is seen whole.
        shift = self.context / 2
        odd = found.select("user_id", "event_type", pl.Series("_odd", p_hour < self.odd_hour),
                           pl.col("timestamp").dt.truncate(self.cohort_period).alias("_a"),
                           (pl.col("timestamp") + shift).dt.truncate(self.cohort_period).alias("_b"))
        actors = pl.col("user_id").filter(pl.col("_odd")).n_unique()
        crowd = odd.select(pl.max_horizontal(actors.over("event_type", "_a"), actors.over("event_type", "_b"))
                           .alias("_crowd"))["_crowd"].to_numpy()
        cohort = crowd >= self.min_cohort
        p_hour = np.where(cohort, 1.0, p_hour)
        frame = found.with_columns(pl.Series("cohort", crowd),
            pl.lit("user").alias("entity_type"), pl.col("user_id").alias("entity_value"),
            pl.col("timestamp").dt.truncate("1m").alias("window_start"),
            (pl.col("timestamp").dt.truncate("1m") + timedelta(minutes=1)).alias("window_end"),
            pl.concat_list(pl.col("event_id")).alias("sample_event_ids"),
            pl.Series("p_type", p_type), pl.Series("p_hour", p_hour), pl.Series("p_self", p_self),
            pl.Series("pop_type_share", type_share), pl.Series("pop_hour_share", hour_share))
        scored = with_scores(frame, p_type * p_hour * p_self)
        # One row per actor and minute: the rarest action in it.
        return (scored.sort("p_value", "timestamp", "event_id")
                .group_by("entity_value", "window_start", maintain_order=True).first())

    @staticmethod
    def _around(events: pl.LazyFrame, found: pl.DataFrame, own: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per action in ``found``, the actor's history within ``ALARM_MARGIN`` of its minute: events, events at its
        hour of day, privileged actions of its type, and those of its type on their own account."""
        minute = pl.col("timestamp").dt.truncate("1m")
        hour = pl.col("timestamp").dt.truncate("1h")
        points = found.select("user_id", "event_type", lo=minute - ALARM_MARGIN,
                              hi=minute + timedelta(minutes=1) + ALARM_MARGIN, h0=hour, h1=hour + timedelta(hours=1))
        mine = events.select("user_id", "timestamp").join(points.lazy().select("user_id").unique(), on="user_id",
                                                          how="semi").collect()
        actions = found.select("user_id", "event_type", "timestamp", pl.Series("own", own))
        lo, hi = pl.col("lo"), pl.col("hi")
        return (_within(points, mine, ["user_id"], lo, hi),
                _within(points, mine, ["user_id"], pl.max_horizontal(lo, "h0"), pl.min_horizontal(hi, "h1")),
                _within(points, actions, ["user_id", "event_type"], lo, hi),
                _within(points, actions.filter("own"), ["user_id", "event_type"], lo, hi))

    def _beside(self, found: pl.DataFrame, at_hour: np.ndarray, hour_share: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For rows at an hour the history never covered: the actor's events and the population's share there
        as the mean of the known hours either side; ``known`` says whether either side was known."""
        hour = found["hour"].to_numpy()
        sides = []
        for step in (-1, 1):
            side = (hour + step) % 24
            mine = (found.select("user_id", pl.Series("hour", side, dtype=found["hour"].dtype))
                    .join(self.hours_, on=["user_id", "hour"], how="left", maintain_order="left")["at_hour"].fill_null(0).to_numpy())
            sides.append((self.hours_seen_[side], mine.astype(float), self.hour_share_[side]))
        weight = sum(k.astype(float) for k, _, _ in sides)
        known = weight > 0
        div = np.maximum(weight, 1.0)
        unseen = ~self.hours_seen_[hour]
        at_beside = sum(np.where(k, a, 0.0) for k, a, _ in sides) / div
        share_beside = sum(np.where(k, s, 0.0) for k, _, s in sides) / div
        return (np.where(unseen & known, at_beside, at_hour), np.where(unseen & known, share_beside, hour_share),
                known)

    def _explain(self, row: dict[str, Any]) -> dict[str, Any]:
        done, n = int(row["done"] or 0), int(row["events"] or 0)
        habit = "never before" if done == 0 else f"{done} times in {n} events"
        habit += "; on their own account" if row["p_self"] < 1 else ""
        hour = (f"{100 * (row['at_hour'] or 0) / max(n, 1):.1f}% of their activity is at this hour"
                if self.hours_seen_[row["hour"]] else "no history at this hour of day yet: judged by the hours "
                "either side")
        return {
            "summary": f"{row['entity_value']} did {row['event_type']} at {row['hour']:02d}:00 UTC ({habit}; {hour})",
            "observed": {"action": row["event_type"], "hour_utc": row["hour"], "target": row["target"]},
            "expected": {"share_of_actor_events": round(float(row["p_type"]), 8),
                         "share_of_actor_activity_at_hour": round(float(row["p_hour"]), 6)},
            "features": [
                {"name": "action_rarity", "value": round(float(row["p_type"]), 8),
                 "contribution": _share(row["p_type"], row["p_hour"])},
                {"name": "hour_rarity", "value": round(float(row["p_hour"]), 6),
                 "contribution": _share(row["p_hour"], row["p_type"])},
                *([{"name": "self_targeted", "value": round(float(row["p_self"]), 6),
                    "contribution": _share(row["p_self"], row["p_type"] * row["p_hour"])}] if row["p_self"] < 1 else []),
            ],
            "peers": {"population_share_of_action": round(float(row["pop_type_share"]), 8),
                      "actors_at_odd_hours_alike": int(row["cohort"]),
                      "population_share_at_hour": round(float(row["pop_hour_share"]), 6)},
        }


def _spans(alarmed: pl.DataFrame) -> pl.DataFrame:
    """Each alarmed row's span: the actor's events a minute's alarm leaves out, ``ALARM_MARGIN`` either side."""
    return alarmed.select(pl.col("entity_value").alias("user_id"), (pl.col("window_start") - ALARM_MARGIN).alias("start"),
                          (pl.col("window_end") + ALARM_MARGIN).alias("end"))


def _within(points: pl.DataFrame, among: pl.DataFrame, by: list[str], lo: pl.Expr, hi: pl.Expr) -> np.ndarray:
    """Per row of ``points``: the rows of ``among`` with its ``by`` values and a timestamp in [``lo``, ``hi``)."""
    if among.is_empty():
        return np.zeros(points.height)
    keys = among.select(by).unique(maintain_order=True).with_row_index("_g")
    ms = among.join(keys, on=by).select(pl.col("_g").cast(pl.Int64), t=pl.col("timestamp").dt.epoch("ms"))
    at = (points.join(keys, on=by, how="left", maintain_order="left")
          .select(pl.col("_g").cast(pl.Int64).fill_null(-1), lo=lo.dt.epoch("ms"), hi=hi.dt.epoch("ms")))
    t0 = min(ms["t"].min(), at["lo"].min())
    stride = max(ms["t"].max(), at["hi"].max()) - t0 + 1
    sorted_keys = np.sort((ms["_g"] * stride + ms["t"] - t0).to_numpy())
    g = at["_g"].to_numpy()
    lo_k = np.maximum(g, 0) * stride + at["lo"].to_numpy() - t0
    hi_k = np.maximum(g, 0) * stride + at["hi"].to_numpy() - t0
    counts = np.searchsorted(sorted_keys, hi_k, "left") - np.searchsorted(sorted_keys, lo_k, "left")
    return np.where(g >= 0, counts, 0).astype(float)


def _share(a: float, b: float) -> float:
    la, lb = -np.log(max(a, 1e-300)), -np.log(max(b, 1e-300))
    return round(float(la / max(la + lb, 1e-12)), 3)
