"""The scheduled analytics jobs: score new windows, refit baselines, both on the elected leader only.

``score_job`` scores each detector over [watermark - late allowance, now - end offset) and upserts
what it finds as incidents (``storage.timescale.anomalies.upsert`` merges windows), so a rerun
rewrites nothing (idempotent) and events that arrive late, within the allowance, are counted on the
next run. History is scored too: on a first start over a store that already holds events, and for
ranges written behind the job (a bulk ingest, a backfill, the demo's history), once they settle,
bounded to ``JobConfig.backfill``. History is scored prequentially: each ``refit_every`` span with
models fitted only on the events before it (or, inside the first ``warmup`` of the store, on that
warm-up itself), as the live job would have scored it. The platform's own principals
(``storage.timescale.self_audit``) are not scored by the user detectors; their rollup series are
scored as their own population, and their anomalies are capped at ``medium`` so they never page. ``refit_job`` refits every detector on recent history
on a slower schedule and stores each model under a version that the anomalies it scores carry, so
a score can be reproduced from the stored model. Analyst feedback (false positives, scoped to an
entity and/or a detector until a date) is applied before anything is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import pickle
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import polars as pl
from psycopg_pool import ConnectionPool

from analytics import events, lookback, pipeline
from analytics.detectors import Detector, SeasonalSeries, empty_anomalies
from analytics.errors import ModelNotFound, TamperedModel  # noqa: F401 - re-exported for callers
from storage.timescale import anomalies as store
from storage.timescale import catalog, queries, rollups, watermarks
from storage.timescale.self_audit import platform_actor

log = logging.getLogger(__name__)


class Leader(Protocol):
    def is_leader(self) -> bool: ...


@dataclass(frozen=True)
class JobConfig:
    """How far back to learn and to look again; built from settings by the worker."""

    detectors: tuple[str, ...] = ()  # empty: all
    history: timedelta = timedelta(days=14)
    late: timedelta = timedelta(hours=1)  # rescored every run, so late events inside it are counted
    end_offset: timedelta = timedelta(seconds=30)  # leave the newest seconds to in-flight writes
    first_run: timedelta = timedelta(hours=1)  # what a detector without a watermark scores live first
    backfill: timedelta = timedelta(days=3)  # history scored on a first start and after a backfill, at most
    refit_every: timedelta = timedelta(hours=6)  # history is scored with a model refitted this often
    # The first day of a store learns from itself (nothing is before it): each `warmup_step` of it is scored by
    # models fitted on the rest of that day. A whole day and short steps, so a day's routine (everyone's morning
    # logins, evening logouts) is in what each model learnt while the step scored, an attack in it, is left out;
    # 12 h in 6 h steps made the first day's ordinary sessions look rare (hundreds of session_chain anomalies).
    warmup: timedelta = timedelta(hours=24)
    warmup_step: timedelta = timedelta(hours=1)
    settle: timedelta = timedelta(seconds=90)  # a backfill is scored once nothing more arrived for this long
    merge_gap: timedelta = timedelta(hours=1)  # windows of one detector and entity this close are one incident
    max_span: timedelta = timedelta(hours=6)  # catch up in steps of at most this
    context: timedelta = timedelta(days=2)  # most events read before a scored range (first-seen checks)
    # Farthest back a detector's declared lookback reads (``analytics.lookback``; slow_failures' week), only
    # the event types it declares, kept between runs by the worker's LookbackCache.
    max_context: timedelta = timedelta(days=7)
    min_score: float | None = None
    series: bool = True
    # Rollup history read before each scored range of the series detector (its level, scale and, from a
    # day on, its hour-of-day profile); longer learns more and costs more each minute.
    series_history: timedelta = timedelta(hours=26)
    # Stored models are pickles: each is sealed with an HMAC under this key and refused at load when the
    # seal does not match, so write access to `detector_models` is not code execution in the worker.
    # The worker passes `analytics_model_key` (or a key generated under the data directory); the empty
    # default is for notebooks and tests only.
    model_key: bytes = field(default=b"", repr=False)


@dataclass
class ScoreResult:
    ran: bool
    ranges: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    inserted: int = 0
    updated: int = 0
    suppressed: int = 0
    versions: dict[str, str] = field(default_factory=dict)


def _floor(moment: datetime, step: timedelta) -> datetime:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // step) * step


def _names(config: JobConfig) -> list[str]:
    return list(config.detectors) or list(pipeline.build())


# -- models -----------------------------------------------------------------------------------------

_SEAL = hashlib.sha256().digest_size


def seal(model: bytes, key: bytes) -> bytes:
    """The model prefixed with its HMAC-SHA256 under ``key``."""
    return hmac.new(key, model, hashlib.sha256).digest() + model


def unseal(blob: bytes, key: bytes, *, what: str) -> bytes:
    """The model inside a sealed blob; TamperedModel when the seal does not match ``key``."""
    tag, model = blob[:_SEAL], blob[_SEAL:]
    if len(blob) <= _SEAL or not hmac.compare_digest(tag, hmac.new(key, model, hashlib.sha256).digest()):
        raise TamperedModel(f"stored model {what} fails its HMAC seal: it was not written by a worker holding "
                            "this `analytics_model_key` (or the key changed); refit with `auditwatch analytics refit`")
    return model


def people(frame: pl.DataFrame) -> pl.DataFrame:
    """The events of the organisation's users: without the platform's own principals' activity."""
    return frame.filter(~platform_actor("user_id").fill_null(False))


def _fit(pool: ConnectionPool, name: str, history: pl.DataFrame, *, start: datetime, end: datetime,
         fitted_at: datetime, config: JobConfig, peer_groups=None) -> Detector:
    """Fit one detector on ``history`` (the events of [start, end)) and store it under its version."""
    groups = catalog.peer_groups(pool) if peer_groups is None else peer_groups
    detector = pipeline.build([name], peer_groups=groups)[name].fit(history)
    store.save_model(pool, detector=name, version=detector.version_, model=seal(pickle.dumps(detector), config.model_key),
                     params={k: repr(v) for k, v in detector.get_params().items() if k != "peer_groups"},
                     trained_from=start, trained_to=end, fitted_at=fitted_at)
    return detector


def refit(pool: ConnectionPool, name: str, *, now: datetime, config: JobConfig) -> Detector:
    """Fit one detector on the history before ``now`` and store it under its version."""
    end = _floor(now - config.end_offset, timedelta(minutes=1))
    history = people(events.read(pool, end - config.history, end))
    detector = _fit(pool, name, history, start=end - config.history, end=end, fitted_at=now, config=config)
    log.info("refit %s on %d events: version %s", name, history.height, detector.version_)
    return detector


def load(pool: ConnectionPool, name: str, version: str | None = None, *,
         key: bytes) -> tuple[Detector, store.StoredModel]:
    """A stored detector (the newest, or ``version`` to reproduce an old score), its seal checked first.

    ``key`` is required: the worker's ``JobConfig.model_key`` (an empty default would check nothing)."""
    stored = store.load_model(pool, name, version)
    if stored is None:
        raise ModelNotFound(f"no stored model for {name}{f' version {version}' if version else ''}; "
                            "run the refit job (`auditwatch analytics refit`) first")
    model = unseal(bytes(stored.model), key, what=f"{name} version {stored.version}")
    return pickle.loads(model), stored  # noqa: S301 - sealed by a holder of the key (see JobConfig.model_key)


def refit_job(pool: ConnectionPool, *, now: datetime | None = None, config: JobConfig | None = None,
              leader: Leader | None = None) -> dict[str, str] | None:
    """Refit every detector (the slow schedule); returns detector → new version, None when not leader."""
    if leader is not None and not leader.is_leader():
        return None
    now = now or datetime.now(UTC)
    config = config or JobConfig()
    return {name: refit(pool, name, now=now, config=config).version_ for name in _names(config)}


# -- scoring -----------------------------------------------------------------------------------------

def about_filer(entity_type: pl.Expr, entity_value: pl.Expr, filer: pl.Expr) -> pl.Expr:
    """True where an anomaly's entity is the person who filed the feedback: their user, or their user from
    an address (``user|address``). Feedback never hides findings about the one who gave it."""
    return (((entity_type == "user") & (entity_value == filer))
            | ((entity_type == "user_ip") & (entity_value.str.split("|").list.first() == filer)))


def suppress(found: pl.DataFrame, scopes: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Drop anomalies inside an active false-positive scope; returns what is kept and how many were dropped.

    An anomaly about the scope's own filer (``created_by``) is never dropped, whatever the scope."""
    if found.is_empty() or scopes.is_empty():
        return found, 0
    if "created_by" not in scopes.columns:
        scopes = scopes.with_columns(created_by=pl.lit(None, dtype=pl.String))
    indexed = found.with_row_index("_row")
    pairs = indexed.select("_row", "detector", "entity_type", "entity_value", "window_start").join(
        scopes.rename({"detector": "s_detector", "entity_type": "s_type", "entity_value": "s_value"}), how="cross")
    hit = pairs.filter(
        (pl.col("s_detector").is_null() | (pl.col("s_detector") == pl.col("detector")))
        & (pl.col("s_type").is_null() | ((pl.col("s_type") == pl.col("entity_type"))
                                         & (pl.col("s_value") == pl.col("entity_value"))))
        & (pl.col("until").is_null() | (pl.col("until") > pl.col("window_start")))
        & ~about_filer(pl.col("entity_type"), pl.col("entity_value"), pl.col("created_by")).fill_null(False)
    )["_row"].unique()
    kept = indexed.filter(~pl.col("_row").is_in(hit.implode())).drop("_row")
    return kept, found.height - kept.height


def score_job(pool: ConnectionPool, *, now: datetime | None = None, config: JobConfig | None = None,
              leader: Leader | None = None, cache: lookback.LookbackCache | None = None) -> ScoreResult:
    """Score every detector over the windows since its watermark; safe to run twice or on two workers.

    ``cache`` keeps the long lookbacks between runs (the worker passes one); without it each run reads them."""
    if leader is not None and not leader.is_leader():
        return ScoreResult(ran=False)
    now = now or datetime.now(UTC)
    config = config or JobConfig()
    end = _floor(now - config.end_offset, timedelta(minutes=1))
    result = ScoreResult(ran=True)
    scopes = store.suppressions(pool, now=now)
    history_fitted = _score_history(pool, end=end, config=config, scopes=scopes, now=now, result=result)
    cache = lookback.LookbackCache(refresh=config.refit_every) if cache is None else cache
    if history_fitted:
        cache.clear()
    models: dict[str, tuple[Detector, datetime | None, datetime]] = {}
    for name in _names(config):
        mark = watermarks.job_watermark(pool, f"score:{name}")
        start = _floor((mark if mark is not None else end - config.first_run + config.late) - config.late,
                       timedelta(hours=1))
        try:
            detector, stored = load(pool, name, key=config.model_key)
            trained_to = stored.trained_to
            if getattr(detector, "n_events_", 1) == 0 and history_fitted:
                # Fitted at a first start on an empty store, and history has arrived since (`up`'s demo):
                # live scoring learns from it now rather than at the next scheduled refit.
                detector = refit(pool, name, now=now, config=config)
                trained_to = detector.trained_to_
        except TamperedModel as exc:
            log.warning("%s; refitting it now", exc)
            detector = refit(pool, name, now=now, config=config)
            trained_to = detector.trained_to_
        except ModelNotFound:
            detector = refit(pool, name, now=now, config=config)
            trained_to = detector.trained_to_
        models[name] = (detector, trained_to, min(start, end))
    # One read of the events per step serves every detector.
    low = min((start for _, _, start in models.values()), default=end)
    while low < end:
        high = min(low + config.max_span, end)
        trained = [t for _, t, _ in models.values() if t is not None]
        context_from = max(min([low - timedelta(hours=1), *trained]), low - config.context)
        # A catch-up span reads the hour after it too, as its windows would have been rescored live.
        reach = min(high + config.late, end)
        frame = people(events.read(pool, context_from, reach))
        active = {name: detector for name, (detector, _, start) in models.items() if start < high}
        given = lookback.frames(active, frame, pool=pool, low=low, context_from=context_from,
                                bound=config.max_context, cache=cache, now=now)
        for name, (detector, _, start) in models.items():
            if start >= high:
                continue
            # At the live edge what may still resolve itself waits (a retry loop minutes from its fix, a failure
            # seconds from its owner's success): the late allowance rescores it when its time is up.
            found = detector.detect(given[name], start=max(low, start), min_score=config.min_score,
                                    now=end if reach == end else None)
            if high < end:  # the next span's windows are its own (a window still open at the live edge is not)
                found = pipeline.until(found, {name: detector}, high)
            _store(pool, found, scopes=scopes, now=now, config=config, result=result)
            watermarks.advance_job(pool, f"score:{name}", high)
        low = high
    for name, (detector, _, start) in models.items():
        result.ranges[name] = (start, end)
        result.versions[name] = detector.version_
    if config.series:
        mark = watermarks.job_watermark(pool, SERIES_JOB)
        start = min((mark or end - config.first_run) - config.late, end)
        # The series are read from the rollups, which count a minute when they refresh it: events that arrived
        # since (a backfill's last hour, a shipper catching up) would read as zeros before the live minutes,
        # a drop and then a spike that page. So the rollups are brought up to date first (Apache edition).
        try:
            rollups.refresh_job(pool, now=now, quiet=False)
        except rollups.RefreshDeferred as exc:  # the next run scores these minutes, from current rollups
            log.warning("the series were not scored this run: %s", exc)
        else:
            _score_series(pool, start=start, end=end, config=config, scopes=scopes, now=now, result=result)
            watermarks.advance_job(pool, SERIES_JOB, end)
    if result.inserted or result.suppressed:
        log.info("scored %s: %d new anomalies, %d updated, %d suppressed by feedback",
                 ", ".join(result.ranges), result.inserted, result.updated, result.suppressed)
    return result


def _store(pool: ConnectionPool, found: pl.DataFrame, *, scopes: pl.DataFrame, now: datetime, config: JobConfig,
           result: ScoreResult) -> None:
    kept, dropped = suppress(found, scopes)
    written = store.upsert(pool, kept, detected_at=now, merge_gap=config.merge_gap)
    result.inserted += written.inserted
    result.updated += written.updated
    result.suppressed += dropped


SERIES_JOB = "score:univariate_series"
PLATFORM_SERIES = "events_1m:population=platform,"  # entity prefix of the platform's own series
_PLATFORM_MAX_SEVERITY = "medium"  # below every paging rule: the platform's activity is shown, never paged


def _score_series(pool: ConnectionPool, *, start: datetime, end: datetime, config: JobConfig,
                  scopes: pl.DataFrame, now: datetime, result: ScoreResult) -> None:
    """The univariate detector over the per-minute rollup series (events by type and outcome), per population.

    Each series is fitted on its own ``series_history`` before ``start`` only, so scoring history is
    prequential by construction.
    """
    history = config.series_history
    minutes = pl.datetime_range(_floor(start - history, timedelta(minutes=1)), end - timedelta(minutes=1), "1m",
                                eager=True, time_zone="UTC").alias("timestamp").to_frame()
    found = [empty_anomalies()]
    for population, prefix in (("users", "events_1m:"), ("platform", PLATFORM_SERIES)):
        frame = rollups.series(pool, rollups.SeriesQuery(start=start - history, end=end, interval="1m",
                                                         group_by=("event_type", "outcome"), population=population))
        for (event_type, outcome), group in frame.group_by("event_type", "outcome"):
            # The series starts at its first bucket, not at the start of the read: a series that has just
            # appeared (the platform's own setup events on a fresh install) is in its cold start, not "after
            # hours of zeros".
            series = (minutes.filter(pl.col("timestamp") >= group["bucket"].min())
                      .join(group.select(pl.col("bucket").alias("timestamp"), pl.col("events").cast(pl.Float64)
                                         .alias("value")), on="timestamp", how="left")
                      .with_columns(pl.col("value").fill_null(0.0)))
            detector = SeasonalSeries(scale_floor=1.0).fit(series.filter(pl.col("timestamp") < start))
            hits = detector.detect(series, entity=f"{prefix}event_type={event_type},outcome={outcome}",
                                   step=timedelta(minutes=1), start=start, min_score=config.min_score)
            if population == "platform" and not hits.is_empty():
                capped = store.SEVERITIES[:store.SEVERITIES.index(_PLATFORM_MAX_SEVERITY) + 1]
                hits = hits.with_columns(pl.when(pl.col("severity").is_in(capped)).then(pl.col("severity"))
                                         .otherwise(pl.lit(_PLATFORM_MAX_SEVERITY)).alias("severity"))
            found.append(hits)
    _store(pool, pl.concat(found), scopes=scopes, now=now, config=config, result=result)
    result.ranges["univariate_series"] = (start, end)


# -- history --------------------------------------------------------------------------------------------

def history_ranges(pool: ConnectionPool, *, end: datetime, now: datetime,
                   config: JobConfig) -> tuple[list[tuple[datetime, datetime]], list[tuple[datetime, datetime]]]:
    """What history to score now: the store's past on a first start, and settled backfills (claimed).

    Returns the ranges to score (merged, bounded to ``config.backfill``) and the claimed backfill
    ranges (to put back should scoring fail).
    """
    floor = _floor(end - config.backfill, timedelta(minutes=1))
    claimed = watermarks.claim_unscored(pool, settled_before=now - config.settle)
    ranges = [(lo, hi + timedelta(microseconds=1)) for lo, hi in claimed]
    names = [*(f"score:{n}" for n in _names(config)), *([SERIES_JOB] if config.series else [])]
    if any(watermarks.job_watermark(pool, n) is None for n in names):
        oldest = queries.first_event_time(pool)
        if oldest is not None:
            ranges.append((oldest, end))
    minute = timedelta(minutes=1)
    clipped = sorted((max(_floor(lo, minute), floor), min(_floor(hi, minute) + minute, end)) for lo, hi in ranges)
    merged: list[tuple[datetime, datetime]] = []
    for lo, hi in clipped:
        if lo >= hi:
            continue
        if merged and lo <= merged[-1][1] + config.late:  # a quiet minute between two batches is one range
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged, claimed


def _score_history(pool: ConnectionPool, *, end: datetime, config: JobConfig, scopes: pl.DataFrame,
                   now: datetime, result: ScoreResult) -> bool:
    """Score history prequentially: each ``refit_every`` span with models fitted on what came before it.

    Returns whether any history was scored."""
    ranges, claimed = history_ranges(pool, end=end, now=now, config=config)
    if not ranges:
        return False
    try:
        _score_ranges(pool, ranges, end=end, config=config, scopes=scopes, now=now, result=result)
    except BaseException:
        watermarks.unclaim(pool, claimed)
        raise
    return True


IN_SAMPLE_WARMUP = frozenset({"session_chain"})


def _score_ranges(pool: ConnectionPool, ranges: list[tuple[datetime, datetime]], *, end: datetime,
                  config: JobConfig, scopes: pl.DataFrame, now: datetime, result: ScoreResult) -> None:
    oldest = queries.first_event_time(pool) or ranges[0][0]
    total = sum(((hi - lo) for lo, hi in ranges), timedelta(0))
    done = timedelta(0)
    groups = catalog.peer_groups(pool)
    names = _names(config)
    cache = lookback.LookbackCache(refresh=total + config.refit_every)  # this pass only: each span reads what is new
    log.info("scoring history %s: %s in %d range(s), models refitted every %s", ", ".join(
        f"{lo:%Y-%m-%d %H:%M}–{hi:%Y-%m-%d %H:%M}" for lo, hi in ranges), total, len(ranges), config.refit_every)
    before = result.inserted
    for lo, hi in ranges:
        low = lo
        while low < hi:
            step = config.warmup_step if low < oldest + config.warmup else config.refit_every
            high = min(_floor(low, step) + step, hi)
            # Fitted only on the events before the span. With less than the warm-up before it (the first hours
            # of a store), on the store's first warm-up of events around it, the span itself left out, so an
            # attack in it is not part of its own baseline.
            train_to = max(_floor(low, timedelta(minutes=1)), min(oldest + config.warmup, end))
            whole = None
            if train_to > low:
                train_to = min(train_to + (high - low), end)
                whole = people(events.read(pool, train_to - config.history, train_to))
                history = whole.filter((pl.col("timestamp") < low) | (pl.col("timestamp") >= high))
            else:
                history = people(events.read(pool, train_to - config.history, train_to))
            context_from = max(min(low - timedelta(hours=1), train_to), low - config.context)
            reach = min(high + config.late, hi)  # the hour after the span (in the range), as rescoring reads it
            frame = people(events.read(pool, context_from, reach))
            for name in names:
                # session_chain learns each step's hour of day: in a one-day warm-up that hour has no other
                # sample, so with it left out everyone's ordinary sessions of that hour were rare (80-130
                # anomalies on the demo's day when the store's day began at 16:00); it learns the whole day.
                fitted_on = whole if whole is not None and name in IN_SAMPLE_WARMUP else history
                detector = _fit(pool, name, fitted_on, start=train_to - config.history, end=train_to,
                                fitted_at=train_to, config=config, peer_groups=groups)
                given = lookback.frames({name: detector}, frame, pool=pool, low=low, context_from=context_from,
                                        bound=config.max_context, cache=cache, now=now)
                found = detector.detect(given[name], start=low, min_score=config.min_score,
                                        now=end if reach >= end else None)
                if high < hi:  # the next span's windows are its own
                    found = pipeline.until(found, {name: detector}, high)
                _store(pool, found, scopes=scopes, now=now, config=config, result=result)
            if config.series:
                _score_series(pool, start=low, end=high, config=config, scopes=scopes, now=now, result=result)
            done += high - low
            log.info("scoring history %s: %.0f %%", f"{high:%Y-%m-%d %H:%M}", 100 * done / total)
            low = high
    log.info("scored history: %d new anomalies", result.inserted - before)


def reproduce(pool: ConnectionPool, anomaly: store.Anomaly, *, key: bytes,
              late: timedelta = JobConfig.late) -> pl.DataFrame:
    """Rescore an anomaly's peak window with the model version that produced it (for audits and debugging).

    ``key`` is the model sealing key the worker used (``JobConfig.model_key``); there is no default, so a
    caller cannot unseal models by forgetting it. The worker rescored the window for its late allowance
    (``late``, ``JobConfig.late``), so what came in that hour after it counts here too (a success minutes
    after the window resolves the failures before it)."""
    name, version = anomaly.detector, anomaly.detector_version
    detector, stored = load(pool, name, version, key=key)
    lo = anomaly.peak_at
    context_from = max(min(lo - timedelta(hours=1), stored.trained_to or lo), lo - timedelta(days=2))
    frame = people(events.read(pool, context_from, anomaly.window_end + late))
    frame = lookback.frames({name: detector}, frame, pool=pool, low=lo, context_from=context_from,
                            bound=JobConfig.max_context, cache=lookback.LookbackCache(), now=lo)[name]
    scored = detector.score_frame(frame, start=lo)
    return scored.filter((pl.col("entity_type") == anomaly.entity_type)
                         & (pl.col("entity_value") == anomaly.entity_value) & (pl.col("window_start") == lo))
