"""The anomalies table: its row shape, severities, the one query type, the one reader and the one writer;
plus analyst feedback, job watermarks and fitted models (migrations 0007, 0013).

A stored anomaly is an incident (``anomaly_merge``): the windows of one detector and entity that
overlap or lie within the merge gap are one row that grows, spanning ``window_start`` (first seen)
to ``window_end`` (last seen), with the score, severity and explanation of its peak window
(``peak_at``) and the count of ``windows`` merged in. A scoring job that reruns over the same
windows rewrites nothing (same ``anomaly_id`` and ``detected_at``), so scoring is idempotent.

Every reader of anomalies (the HTTP API, the dashboard, the data API, alert rules) asks through
``AnomalyQuery`` and ``anomalies_frame``, so one question has one answer. A time range selects the
anomalies whose window OVERLAPS [start, end): "what was abnormal in this hour" includes a window
that began before the hour and ran into it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
import polars as pl
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from storage.errors import TooManyRows
from storage.timescale import anomaly_merge as merging
from storage.timescale import self_audit
from storage.timescale.db import copy_frame, where

TS = pl.Datetime("us", "UTC")
SEVERITIES = ("low", "medium", "high", "critical")  # ascending; the anomalies table's CHECK holds the same
ENTITY_TYPES = ("user", "source_ip", "user_ip", "series")


@dataclass(frozen=True)
class Anomaly:
    """One stored anomaly (the row shape; ``FRAME_SCHEMA`` is the same columns as a frame)."""

    anomaly_id: uuid.UUID
    detector: str
    detector_version: str
    entity_type: str
    entity_value: str
    window_start: datetime
    window_end: datetime
    score: float
    severity: str
    explanation: dict[str, Any]
    sample_event_ids: tuple[uuid.UUID, ...]
    detected_at: datetime
    peak_at: datetime  # start of the peak window (score, severity and explanation are its)
    windows: int  # windows merged into this incident

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Anomaly:
        """A frame row (ids and JSON as text) as an Anomaly."""
        explanation = row["explanation"]
        return cls(**{**row, "anomaly_id": uuid.UUID(row["anomaly_id"]),
                         "explanation": orjson.loads(explanation) if isinstance(explanation, str) else explanation,
                         "sample_event_ids": tuple(uuid.UUID(i) for i in row["sample_event_ids"] or ())})


ANOMALY_COLUMNS = tuple(f.name for f in dataclasses.fields(Anomaly))
FRAME_SCHEMA: dict[str, pl.DataType] = {
    "anomaly_id": pl.String(), "detector": pl.String(), "detector_version": pl.String(),
    "entity_type": pl.String(), "entity_value": pl.String(), "window_start": TS, "window_end": TS,
    "score": pl.Float64(), "severity": pl.String(), "explanation": pl.String(),
    "sample_event_ids": pl.List(pl.String()), "detected_at": TS, "peak_at": TS,
    "windows": pl.Int32()}  # in ANOMALY_COLUMNS order


def at_or_above(severity: str) -> tuple[str, ...]:
    """The severities from ``severity`` up (``min_severity`` filters)."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, not {severity!r}")
    return SEVERITIES[SEVERITIES.index(severity):]


@dataclass(frozen=True)
class AnomalyQuery:
    """Which anomalies: every field narrows the result.

    ``start``/``end`` select windows overlapping [start, end) (``window_end > start AND window_start < end``);
    ``ended_after``/``ended_by`` select windows that ended in (ended_after, ended_by] (alert rules, which
    look at each anomaly once, when it ends).
    """

    start: datetime | None = None
    end: datetime | None = None
    detectors: Sequence[str] = ()
    entity_type: str | None = None
    entity_value: str | None = None
    min_score: float | None = None
    severities: Sequence[str] = ()
    detected_after: datetime | None = None
    ended_after: datetime | None = None
    ended_by: datetime | None = None
    anomaly_id: uuid.UUID | None = None
    limit: int | None = None
    before: tuple[datetime, str] | None = None  # keyset (newest order): (window_start, anomaly_id) of the last row
    order: Literal["newest", "oldest", "score"] = "newest"


_ORDERS = {
    "newest": sql.SQL(" ORDER BY window_start DESC, anomaly_id DESC"),
    "oldest": sql.SQL(" ORDER BY window_start, detector, entity_type, entity_value"),
    "score": sql.SQL(" ORDER BY score DESC, window_start DESC"),
}
_SELECT = sql.SQL(
    "SELECT anomaly_id::text, detector, detector_version, entity_type, entity_value, "
    "(extract(epoch FROM window_start) * 1000000)::bigint, (extract(epoch FROM window_end) * 1000000)::bigint, "
    "score, severity, explanation::text, array_to_json(sample_event_ids)::text, "
    "(extract(epoch FROM detected_at) * 1000000)::bigint, "
    "(extract(epoch FROM coalesce(peak_at, window_start)) * 1000000)::bigint, "
    "windows FROM anomalies")
_WIRE = {**FRAME_SCHEMA, "sample_event_ids": pl.String()}


def _where(q: AnomalyQuery):
    unknown = set(q.severities) - set(SEVERITIES)
    if unknown:
        raise ValueError(f"severities must be among {', '.join(SEVERITIES)}, not {sorted(unknown)}")
    w = (where().gt("window_end", q.start).lt("window_start", q.end).any("detector", q.detectors)
         .eq("entity_type", q.entity_type).eq("entity_value", q.entity_value).ge("score", q.min_score)
         .any("severity", q.severities).gt("detected_at", q.detected_after)
         .gt("window_end", q.ended_after).le("window_end", q.ended_by).eq("anomaly_id", q.anomaly_id))
    if q.before is not None:
        w.add("(window_start, anomaly_id) < (%s, %s::uuid)", *q.before)
    return w


def anomalies_frame(pool: ConnectionPool, q: AnomalyQuery, *, max_rows: int | None = None) -> pl.DataFrame:
    """Anomalies matching ``q`` as a frame of ``FRAME_SCHEMA`` (explanation as JSON text), over COPY.

    ``q.limit`` cuts the result (a page); ``max_rows`` raises TooManyRows past it instead (a notebook
    asking for more than fits in memory should narrow the question, not get a silent cut).
    """
    w = _where(q)
    statement = _SELECT + w.sql() + _ORDERS[q.order]
    params = list(w.params)
    caps = [c for c in (q.limit, None if max_rows is None else max_rows + 1) if c is not None]
    if caps:
        cap = min(caps)
        statement += sql.SQL(" LIMIT %s")
        params.append(cap)
    with pool.connection() as conn:
        frame = copy_frame(conn, statement, params, _WIRE)
    if max_rows is not None and frame.height > max_rows:
        raise TooManyRows(f"more than {max_rows:,} anomalies match; narrow the time range or the filters, or pass "
                          "a larger max_rows (None for no limit) if the memory is there")
    return frame.with_columns(pl.col("sample_event_ids").str.json_decode(pl.List(pl.String())))


def list_anomalies(pool: ConnectionPool, q: AnomalyQuery) -> list[Anomaly]:
    """The same rows as ``anomalies_frame``, one ``Anomaly`` each (for code that walks them one by one)."""
    return [Anomaly.from_row(r) for r in anomalies_frame(pool, q).iter_rows(named=True)]


def get_anomaly(pool: ConnectionPool, anomaly_id: uuid.UUID) -> Anomaly | None:
    """One anomaly by id, or None."""
    found = list_anomalies(pool, AnomalyQuery(anomaly_id=anomaly_id, limit=1))
    return found[0] if found else None


def anomaly_count(pool: ConnectionPool, q: AnomalyQuery) -> int:
    """How many anomalies match ``q`` (its limit and order aside)."""
    w = _where(dataclasses.replace(q, limit=None, before=None))
    with pool.connection() as conn:
        return conn.execute(sql.SQL("SELECT count(*) FROM anomalies") + w.sql(), w.params).fetchone()[0]


@dataclass(frozen=True)
class AnomalyHit:
    """Anomalies of one (detector, entity) in a rule's lookback: the strongest score and severity."""

    detector: str
    entity_type: str
    entity_value: str
    score: float
    severity: str
    anomalies: int
    window_end: datetime
    summary: str


def anomaly_hits(pool: ConnectionPool, *, start: datetime, end: datetime, detectors: Sequence[str],
                 min_score: float, severities: Sequence[str], limit: int = 1000) -> list[AnomalyHit]:
    """Anomalies whose window ended in (start, end], at or above a score and severity, per (detector, entity)."""
    frame = anomalies_frame(pool, AnomalyQuery(ended_after=start, ended_by=end, detectors=detectors,
                                               min_score=min_score, severities=severities))
    if frame.is_empty():
        return []
    rank = pl.col("severity").replace_strict(list(SEVERITIES), list(range(len(SEVERITIES))), return_dtype=pl.Int8)
    summary = pl.col("explanation").str.json_path_match("$.summary").fill_null("")
    hits = (frame.group_by("detector", "entity_type", "entity_value")
            .agg(pl.col("score").max(), pl.col("severity").sort_by(rank, descending=True).first(),
                 pl.len().alias("anomalies"), pl.col("window_end").max(),
                 summary.sort_by("score", descending=True).first().alias("summary"))
            .sort("score", descending=True).head(limit))
    return [AnomalyHit(**row) for row in hits.iter_rows(named=True)]


# -- the writer ---------------------------------------------------------------------------------------

MERGE_GAP = timedelta(hours=1)  # windows closer than this (of one detector and entity) are one incident
_MERGE_LOCK = 0x414E_4F4D_4D52  # 'ANOMMR': one merge at a time (the scoring leader, a CLI rescore)

_NEARBY = sql.SQL("""
    SELECT a.anomaly_id, a.detector, a.entity_type, a.entity_value, a.detector_version, a.window_start,
           a.window_end, a.score, a.severity, a.explanation, array_to_json(a.sample_event_ids)::text,
           coalesce(a.peak_at, a.window_start),
           CASE WHEN cardinality(a.window_starts) = 0 THEN ARRAY[a.window_start] ELSE a.window_starts END,
           a.detected_at
    FROM anomalies a
    JOIN unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[]) AS k(d, t, v, lo, hi)
      ON a.detector = k.d AND a.entity_type = k.t AND a.entity_value = k.v
     AND a.window_end >= k.lo AND a.window_start <= k.hi
    FOR UPDATE OF a
""")
_INSERT = sql.SQL("""
    INSERT INTO anomalies (anomaly_id, detector, detector_version, entity_type, entity_value, window_start,
                           window_end, score, severity, explanation, sample_event_ids, detected_at, peak_at,
                           window_starts, windows)
    VALUES (coalesce(%s::uuid, gen_random_uuid()), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::uuid[], %s, %s, %s, %s)
""")
_UPDATE = sql.SQL("""
    UPDATE anomalies SET detector_version = %s, window_end = %s, score = %s, severity = %s, explanation = %s,
                         sample_event_ids = %s::uuid[], peak_at = %s, window_starts = %s, windows = %s
    WHERE detector = %s AND entity_type = %s AND entity_value = %s AND window_start = %s AND anomaly_id = %s
""")
_DELETE = sql.SQL("DELETE FROM anomalies WHERE detector = %s AND entity_type = %s AND entity_value = %s "
                  "AND window_start = %s AND anomaly_id = %s")


@dataclass(frozen=True)
class UpsertResult:
    inserted: int  # new incidents
    updated: int  # stored incidents that grew, moved earlier or absorbed another


def _uuid_or_none(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


def _windows(frame: pl.DataFrame) -> dict[tuple[str, str, str], list[merging.Window]]:
    found: dict[tuple[str, str, str], list[merging.Window]] = {}
    for r in frame.iter_rows(named=True):
        ids = tuple(i for i in (_uuid_or_none(x) for x in (r["sample_event_ids"] or [])) if i)
        explanation = orjson.loads(r["explanation"]) if isinstance(r["explanation"], str) else r["explanation"]
        found.setdefault((r["detector"], r["entity_type"], r["entity_value"]), []).append(merging.Window(
            r["detector_version"], r["window_start"], r["window_end"], min(max(float(r["score"]), 0.0), 1.0),
            r["severity"], explanation or {}, ids))
    return found


def upsert(pool: ConnectionPool, frame: pl.DataFrame, *, detected_at: datetime,
           merge_gap: timedelta = MERGE_GAP) -> UpsertResult:
    """Store anomaly rows (``analytics.detectors.ANOMALY_SCHEMA``) as incidents: the one writer.

    Each window joins the stored incident of its detector and entity that it overlaps or lies within
    ``merge_gap`` of (bridging two merges them), or starts a new one; reruns rewrite nothing.
    """
    if frame.is_empty():
        return UpsertResult(0, 0)
    windows = _windows(frame)
    keys = list(windows)
    lows = [min(w.start for w in windows[k]) - merge_gap for k in keys]
    highs = [max(w.end for w in windows[k]) + merge_gap for k in keys]
    inserted = updated = 0
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MERGE_LOCK,))
        stored: dict[tuple[str, str, str], list[merging.Incident]] = {}
        for row in conn.execute(_NEARBY, ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
                                          lows, highs)).fetchall():
            (anomaly_id, detector, entity_type, entity_value, version, start, end, score, severity, explanation,
             samples, peak_at, starts, first_detected) = row
            stored.setdefault((detector, entity_type, entity_value), []).append(merging.Incident(
                anomaly_id, version, start, end, score, severity, explanation, tuple(orjson.loads(samples)),
                peak_at, tuple(sorted(starts)), first_detected))
        inserts, updates, deletes = [], [], []
        for key in keys:
            plan = merging.merge(stored.get(key, []), windows[key], gap=merge_gap)
            moved = {i.anomaly_id for i in plan.insert if i.anomaly_id is not None}
            inserted += len(plan.insert) - len(moved)
            updated += merging.touched(plan)
            deletes += [(*key, d.start, d.anomaly_id) for d in plan.delete]
            inserts += [(i.anomaly_id, key[0], i.detector_version, key[1], key[2], i.start, i.end, i.score,
                         i.severity, Jsonb(i.explanation), list(i.sample_event_ids), i.detected_at or detected_at,
                         i.peak_at, list(i.window_starts), len(i.window_starts)) for i in plan.insert]
            updates += [(u.detector_version, u.end, u.score, u.severity, Jsonb(u.explanation),
                         list(u.sample_event_ids), u.peak_at, list(u.window_starts), len(u.window_starts),
                         *key, u.start, u.anomaly_id) for u in plan.update]
        with conn.cursor() as cur:
            if deletes:
                cur.executemany(_DELETE, deletes)
            if updates:
                cur.executemany(_UPDATE, updates)
            if inserts:
                cur.executemany(_INSERT, inserts)
    return UpsertResult(inserted, updated)


# -- feedback -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Feedback:
    feedback_id: int
    anomaly_id: uuid.UUID | None
    detector: str | None
    entity_type: str | None
    entity_value: str | None
    verdict: str
    until: datetime | None
    reason: str
    created_by: str
    created_at: datetime


_FEEDBACK_COLUMNS = sql.SQL("feedback_id, anomaly_id, detector, entity_type, entity_value, verdict, until, reason, "
                            "created_by, created_at")


def add_feedback(pool: ConnectionPool, *, anomaly_id: uuid.UUID | None, detector: str | None,
                 entity_type: str | None, entity_value: str | None, verdict: str, until: datetime | None,
                 reason: str, created_by: str, audit: Callable[[Feedback], Any] | None = None) -> Feedback:
    """Record an analyst's verdict and its scope; ``audit(feedback)`` builds its audit record, stored in the
    same transaction."""
    with pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=class_row(Feedback)) as cur:
        feedback = cur.execute(
            sql.SQL("INSERT INTO anomaly_feedback (anomaly_id, detector, entity_type, entity_value, verdict, until, "
                    "reason, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {}").format(
                _FEEDBACK_COLUMNS),
            (anomaly_id, detector, entity_type, entity_value, verdict, until, reason, created_by)).fetchone()
        if audit is not None:
            self_audit.store(conn, audit(feedback))
        return feedback


def list_feedback(pool: ConnectionPool, *, limit: int = 100) -> list[Feedback]:
    with pool.connection() as conn, conn.cursor(row_factory=class_row(Feedback)) as cur:
        return cur.execute(sql.SQL("SELECT {} FROM anomaly_feedback ORDER BY feedback_id DESC LIMIT %s").format(
            _FEEDBACK_COLUMNS), (limit,)).fetchall()


def suppressions(pool: ConnectionPool, *, now: datetime) -> pl.DataFrame:
    """Active false-positive scopes: (detector, entity_type, entity_value, until, created_by); null means any."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT detector, entity_type, entity_value, until, created_by FROM anomaly_feedback "
            "WHERE verdict = 'false_positive' AND (until IS NULL OR until > %s)", (now,)).fetchall()
    return pl.DataFrame(rows, schema={"detector": pl.String, "entity_type": pl.String, "entity_value": pl.String,
                                      "until": TS, "created_by": pl.String}, orient="row")


# -- models (job watermarks: storage.timescale.watermarks) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StoredModel:
    detector: str
    version: str
    fitted_at: datetime
    trained_from: datetime | None
    trained_to: datetime | None
    params: dict[str, Any]
    model: bytes


def save_model(pool: ConnectionPool, *, detector: str, version: str, model: bytes, params: dict[str, Any],
               trained_from: datetime | None, trained_to: datetime | None, fitted_at: datetime) -> bool:
    """Store a fitted model under its version; False when that version was already stored."""
    with pool.connection() as conn:
        row = conn.execute(
            "INSERT INTO detector_models (detector, version, fitted_at, trained_from, trained_to, params, model) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
            (detector, version, fitted_at, trained_from, trained_to, Jsonb(params), model)).fetchone()
    return row is not None


def load_model(pool: ConnectionPool, detector: str, version: str | None = None) -> StoredModel | None:
    """A stored model: the given version, or the newest."""
    query = ("SELECT detector, version, fitted_at, trained_from, trained_to, params, model FROM detector_models "
             "WHERE detector = %s AND (%s::text IS NULL OR version = %s) ORDER BY fitted_at DESC, version DESC LIMIT 1")
    with pool.connection() as conn, conn.cursor(row_factory=class_row(StoredModel)) as cur:
        found = cur.execute(query, (detector, version, version)).fetchone()
    if found is None:
        return None
    return dataclasses.replace(found, trained_from=found.trained_from and found.trained_from.astimezone(UTC),
                               trained_to=found.trained_to and found.trained_to.astimezone(UTC))
