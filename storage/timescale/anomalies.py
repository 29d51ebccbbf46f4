"""Anomalies, analyst feedback, job watermarks and fitted models (migration 0007).

Anomalies are upserted on (detector, entity, window): a scoring job that reruns over a window
rewrites the same rows (same ``anomaly_id`` and ``detected_at``), so scoring is idempotent.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

TS = pl.Datetime("us", "UTC")
ANOMALY_COLUMNS = ("anomaly_id", "detector", "detector_version", "entity_type", "entity_value", "window_start",
                   "window_end", "score", "severity", "explanation", "sample_event_ids", "detected_at")
FRAME_SCHEMA = {"anomaly_id": pl.String, "detector": pl.String, "detector_version": pl.String,
                "entity_type": pl.String, "entity_value": pl.String, "window_start": TS, "window_end": TS,
                "score": pl.Float64, "severity": pl.String, "explanation": pl.String,
                "sample_event_ids": pl.List(pl.String), "detected_at": TS}
SEVERITIES = ("low", "medium", "high", "critical")
ENTITY_TYPES = ("user", "source_ip", "user_ip", "series")

_UPSERT = sql.SQL("""
    INSERT INTO anomalies (detector, detector_version, entity_type, entity_value, window_start, window_end,
                           score, severity, explanation, sample_event_ids, detected_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::uuid[], %s)
    ON CONFLICT (detector, entity_type, entity_value, window_start) DO UPDATE SET
        detector_version = EXCLUDED.detector_version, window_end = EXCLUDED.window_end,
        score = EXCLUDED.score, severity = EXCLUDED.severity, explanation = EXCLUDED.explanation,
        sample_event_ids = EXCLUDED.sample_event_ids
    WHERE (anomalies.score, anomalies.severity, anomalies.explanation, anomalies.sample_event_ids)
          IS DISTINCT FROM (EXCLUDED.score, EXCLUDED.severity, EXCLUDED.explanation, EXCLUDED.sample_event_ids)
    RETURNING (xmax = 0) AS inserted
""")


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int


def _uuid_or_none(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


def upsert(pool: ConnectionPool, frame: pl.DataFrame, *, detected_at: datetime) -> UpsertResult:
    """Store anomaly rows (``analytics.detectors.ANOMALY_SCHEMA``); reruns rewrite, never duplicate."""
    if frame.is_empty():
        return UpsertResult(0, 0)
    rows = []
    for r in frame.iter_rows(named=True):
        ids = [i for i in (_uuid_or_none(x) for x in (r["sample_event_ids"] or [])) if i]
        rows.append((r["detector"], r["detector_version"], r["entity_type"], r["entity_value"], r["window_start"],
                     r["window_end"], min(max(float(r["score"]), 0.0), 1.0), r["severity"],
                     Jsonb(orjson.loads(r["explanation"]) if isinstance(r["explanation"], str) else r["explanation"]),
                     ids, detected_at))
    inserted = updated = 0
    with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(_UPSERT, rows, returning=True)
        while True:
            row = cur.fetchone()
            if row is not None:
                inserted += bool(row[0])
                updated += not row[0]
            if not cur.nextset():
                break
    return UpsertResult(inserted, updated)


@dataclass(frozen=True)
class AnomalyQuery:
    """Filters of ``GET /api/v1/anomalies``; every field narrows the result (newest window first)."""

    start: datetime | None = None  # window_start >= start
    end: datetime | None = None  # window_start < end
    detectors: Sequence[str] = ()
    entity_type: str | None = None
    entity_value: str | None = None
    min_score: float | None = None
    severities: Sequence[str] = ()
    detected_after: datetime | None = None
    limit: int = 100
    before: tuple[datetime, str] | None = None  # keyset: (window_start, anomaly_id) of the last row seen


def list_anomalies(pool: ConnectionPool, q: AnomalyQuery) -> pl.DataFrame:
    """Anomalies matching ``q`` as a Polars frame (``FRAME_SCHEMA``), newest window first."""
    clauses: list[sql.Composable] = []
    params: dict[str, Any] = {"limit": q.limit}
    for column, op, name, value in (("window_start", ">=", "start", q.start), ("window_start", "<", "end", q.end),
                                    ("entity_type", "=", "etype", q.entity_type),
                                    ("entity_value", "=", "evalue", q.entity_value),
                                    ("score", ">=", "min_score", q.min_score),
                                    ("detected_at", ">", "detected_after", q.detected_after)):
        if value is not None:
            clauses.append(sql.SQL("{} {} {}").format(sql.Identifier(column), sql.SQL(op), sql.Placeholder(name)))
            params[name] = value
    if q.detectors:
        clauses.append(sql.SQL("detector = ANY(%(detectors)s::text[])"))
        params["detectors"] = list(q.detectors)
    if q.severities:
        clauses.append(sql.SQL("severity = ANY(%(severities)s::text[])"))
        params["severities"] = list(q.severities)
    if q.before is not None:
        clauses.append(sql.SQL("(window_start, anomaly_id) < (%(b_ts)s, %(b_id)s::uuid)"))
        params.update(b_ts=q.before[0], b_id=q.before[1])
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    statement = sql.SQL(
        "SELECT anomaly_id::text, detector, detector_version, entity_type, entity_value, window_start, window_end, "
        "score, severity, explanation::text, sample_event_ids::text[], detected_at FROM anomalies{} "
        "ORDER BY window_start DESC, anomaly_id DESC LIMIT %(limit)s").format(where)
    with pool.connection() as conn:
        rows = conn.execute(statement, params).fetchall()
    return pl.DataFrame(rows, schema=FRAME_SCHEMA, orient="row")


def get_anomaly(pool: ConnectionPool, anomaly_id: uuid.UUID) -> dict[str, Any] | None:
    """One anomaly as a dict, or None."""
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT anomaly_id::text, detector, detector_version, entity_type, entity_value, window_start, "
            "window_end, score, severity, explanation::text, sample_event_ids::text[], detected_at "
            "FROM anomalies WHERE anomaly_id = %s", (anomaly_id,)).fetchone()
    if row is None:
        return None
    return {k: v.astimezone(UTC) if isinstance(v, datetime) else v for k, v in zip(ANOMALY_COLUMNS, row, strict=True)}


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
                 reason: str, created_by: str) -> Feedback:
    """Record an analyst's verdict and its scope."""
    with pool.connection() as conn, conn.cursor(row_factory=class_row(Feedback)) as cur:
        return cur.execute(
            sql.SQL("INSERT INTO anomaly_feedback (anomaly_id, detector, entity_type, entity_value, verdict, until, "
                    "reason, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {}").format(
                _FEEDBACK_COLUMNS),
            (anomaly_id, detector, entity_type, entity_value, verdict, until, reason, created_by)).fetchone()


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


# -- watermarks and models ---------------------------------------------------------------------------

def watermark(pool: ConnectionPool, job: str) -> datetime | None:
    with pool.connection() as conn:
        row = conn.execute("SELECT watermark FROM detector_state WHERE job = %s", (job,)).fetchone()
    return row[0].astimezone(UTC) if row else None


def set_watermark(pool: ConnectionPool, job: str, value: datetime) -> None:
    """Move a job's watermark forward (never back: two runs racing cannot rewind it)."""
    with pool.connection() as conn:
        conn.execute(
            "INSERT INTO detector_state (job, watermark) VALUES (%s, %s) ON CONFLICT (job) DO UPDATE SET "
            "watermark = greatest(detector_state.watermark, EXCLUDED.watermark), updated_at = now()", (job, value))


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
