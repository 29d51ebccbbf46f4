"""Events collected as column arrays, each batch tagged with the label it belongs to, then one frame."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl

from analytics.events import SCHEMA
from analytics.labels import CohortEvent, LabelledIncident

STRING_COLUMNS = ("event_type", "user_id", "outcome", "source_ip", "source_country", "source_asn", "user_agent",
                  "resource_id", "metadata")
NO_TAG = -1


class Events:
    """An append-only pile of event batches; ``tag`` ties a batch to an attack or a cohort event."""

    def __init__(self) -> None:
        self._batches: list[dict[str, np.ndarray]] = []

    def add(self, ts_us, *, tag: int = NO_TAG, cohort: int = NO_TAG, **columns) -> None:
        ts = np.atleast_1d(np.asarray(ts_us, dtype=np.int64))
        n = ts.size
        if n == 0:
            return
        batch = {"ts_us": ts, "tag": np.full(n, tag, dtype=np.int32), "cohort": np.full(n, cohort, dtype=np.int32)}
        for name in STRING_COLUMNS:
            value = columns.pop(name, None)
            if isinstance(value, np.ndarray | list | tuple):
                arr = np.asarray(value, dtype=object)
                if arr.size != n:
                    raise ValueError(f"{name}: {arr.size} values for {n} events")
                batch[name] = arr
            else:
                batch[name] = np.full(n, value, dtype=object)
        if columns:
            raise TypeError(f"unknown event columns {sorted(columns)}")
        self._batches.append(batch)

    def frame(self, rng: np.random.Generator) -> pl.DataFrame:
        """One events frame in time order, with random v4 UUIDs, plus the ``tag`` and ``cohort`` columns."""
        cols = {k: np.concatenate([b[k] for b in self._batches]) for k in self._batches[0]}
        n = cols["ts_us"].size
        raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
        hexed = pl.Series("h", np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype="S32").astype("U32"))
        ids = pl.concat_str([hexed.str.slice(0, 8), hexed.str.slice(8, 4), hexed.str.slice(12, 4),
                             hexed.str.slice(16, 4), hexed.str.slice(20, 12)], separator="-")
        data = {"event_id": pl.select(ids).to_series(),
                "timestamp": pl.Series(cols["ts_us"]).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")}
        for name in STRING_COLUMNS:
            data[name] = pl.Series(name, cols[name].tolist(), dtype=pl.String)
        frame = pl.DataFrame(data).select([pl.col(c).cast(t) for c, t in SCHEMA.items()])
        frame = frame.with_columns(pl.Series("tag", cols["tag"]), pl.Series("cohort", cols["cohort"]))
        return frame.sort("timestamp", "event_id")


class Book:
    """The labels being written while the events are made: each attack and cohort event gets a tag."""

    def __init__(self) -> None:
        self.attacks: list[dict] = []
        self.cohorts: list[dict] = []

    def attack(self, scenario: str, entities: set[str], *, actor: str | None = None, note: str = "",
               **params: float) -> int:
        self.attacks.append({"scenario": scenario, "entities": frozenset(entities), "actor": actor, "note": note,
                             "params": tuple(sorted((k, float(v)) for k, v in params.items()))})
        return len(self.attacks) - 1

    def cohort(self, kind: str, entities: set[str], note: str = "", *, start: int | None = None,
               end: int | None = None) -> int:
        """A benign pattern; ``start``/``end`` (µs) are needed only when it adds no events (a holiday)."""
        self.cohorts.append({"kind": kind, "entities": frozenset(entities), "note": note, "start": start, "end": end})
        return len(self.cohorts) - 1

    def finish(self, frame: pl.DataFrame) -> tuple[list[LabelledIncident], list[CohortEvent]]:
        """Labels whose spans and event ids come from the tagged events themselves (in ``frame``'s range)."""
        spans = {}
        for column in ("tag", "cohort"):
            grouped = (frame.filter(pl.col(column) != NO_TAG).group_by(column)
                       .agg(pl.col("timestamp").min().alias("lo"), pl.col("timestamp").max().alias("hi"),
                            pl.col("event_id").sort_by("timestamp").alias("ids")))
            spans[column] = {row[column]: row for row in grouped.iter_rows(named=True)}
        incidents = []
        for k, a in enumerate(self.attacks):
            got = spans["tag"].get(k)
            if got is None:  # drawn so late that all of it fell after the end of the data
                continue
            incidents.append(LabelledIncident(a["scenario"], got["lo"], got["hi"], a["entities"], a["note"],
                                              actor=a["actor"], event_ids=tuple(got["ids"]), params=a["params"]))
        cohorts = []
        for k, c in enumerate(self.cohorts):
            got = spans["cohort"].get(k)
            lo = got["lo"] if got else datetime.fromtimestamp(c["start"] / 1e6, UTC)
            hi = got["hi"] if got else datetime.fromtimestamp(c["end"] / 1e6, UTC)
            if c["start"] is not None:
                lo = min(lo, datetime.fromtimestamp(c["start"] / 1e6, UTC))
            if c["end"] is not None:
                hi = max(hi, datetime.fromtimestamp(c["end"] / 1e6, UTC))
            cohorts.append(CohortEvent(c["kind"], lo, hi, c["entities"], c["note"]))
        return incidents, cohorts
