# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1 · Explore the audit store
#
# What is in the store: volumes by event type and outcome, the daily and weekly rhythm, and the
# users and addresses that stand out. Everything comes from `storage.dataapi`, the same read
# path the API and the detectors use, as Polars frames.
#
# **Where the data comes from.** `AUDITWATCH_DATABASE_URL` (or the embedded database of
# `make up`). The connection is read-only. If the store is empty, the notebook first loads a
# labelled demo history through the real ingest pipeline (`ingest.seed.seed_demo`).

# %%
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import plotly.express as px
import polars as pl

from ingest.seed import seed_demo
from storage import location
from storage.dataapi import connect
from storage.timescale import db

STORE = location.from_environ()  # AUDITWATCH_DATABASE_URL and AUDITWATCH_DATA_DIR, as the server reads them
DAYS = float(os.environ.get("AUDITWATCH_NOTEBOOK_DAYS", "7"))  # how much recent history to look at

aw = connect(STORE.reads, archive=STORE.archive_root)
span = aw.time_range()
if span.events == 0:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    writable = db.open_pool(STORE.database_url, min_size=1, max_size=4, name="notebook-seed")
    try:
        seeded = seed_demo(writable, start=now - timedelta(days=2), end=now, now=now, users=120, service_accounts=4)
    finally:
        writable.close()
    print(f"the store was empty: loaded {seeded.accepted:,} demo events")
    span = aw.time_range()

END = span.last + timedelta(microseconds=1)
START = max(span.first, END - timedelta(days=DAYS))
print(f"{span.events:,} events from {span.first:%Y-%m-%d %H:%M} to {span.last:%Y-%m-%d %H:%M} UTC; "
      f"looking at {START:%Y-%m-%d %H:%M} → {END:%Y-%m-%d %H:%M}")

# %% [markdown]
# ## Volumes by type and outcome
#
# The hourly rollup (`events_1h`, current to the last event) answers volume questions without
# touching the raw events.

# %%
hourly = aw.rollup(START, END, interval="1h", group_by=("event_type", "outcome"))
totals = (hourly.group_by("event_type", "outcome").agg(pl.col("events").sum())
          .pivot(on="outcome", index="event_type", values="events").fill_null(0))
for column in ("success", "failure", "unknown"):
    if column not in totals.columns:
        totals = totals.with_columns(pl.lit(0, pl.Int64).alias(column))
totals = (totals.with_columns(total=pl.col("success") + pl.col("failure") + pl.col("unknown"))
          .with_columns(failure_rate=(pl.col("failure") / pl.col("total")).round(4))
          .sort("total", descending=True))
totals

# %%
px.area(hourly.group_by("bucket", "event_type").agg(pl.col("events").sum()).sort("bucket"),
        x="bucket", y="events", color="event_type", title="Events per hour by type")

# %%
px.bar(totals.unpivot(index="event_type", on=["success", "failure", "unknown"],
                      variable_name="outcome", value_name="events"),
       x="event_type", y="events", color="outcome", log_y=True, title="Events by type and outcome (log scale)")

# %% [markdown]
# ## Rhythms
#
# People work in hours and weeks; service accounts do not. The hour-of-day × weekday grid shows
# the working day (in UTC), and the same counts per user kind separate the two populations.

# %%
by_user = aw.rollup(START, END, interval="1h", group_by=("user_id",))
people = aw.users().select("user_id", "department", "kind")
by_user = by_user.join(people, on="user_id", how="left").with_columns(pl.col("kind").fill_null("unregistered"))
rhythm = (by_user.with_columns(weekday=pl.col("bucket").dt.strftime("%a"),
                               weekday_n=pl.col("bucket").dt.weekday(), hour=pl.col("bucket").dt.hour())
          .group_by("weekday_n", "weekday", "hour").agg(pl.col("events").sum()).sort("weekday_n", "hour"))
px.density_heatmap(rhythm, x="hour", y="weekday", z="events", histfunc="sum", nbinsx=24,
                   category_orders={"weekday": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]},
                   title="Events by hour of day (UTC) and weekday")

# %%
px.line(by_user.with_columns(hour=pl.col("bucket").dt.hour()).group_by("kind", "hour")
        .agg(pl.col("events").sum()).sort("hour"),
        x="hour", y="events", color="kind", markers=True, title="Hour-of-day profile: people vs service accounts")

# %% [markdown]
# ## Top entities
#
# Who and what produces the events, and where failures come from. A password-spraying source
# shows up as one address failing against many different accounts.

# %%
top_users = (by_user.group_by("user_id", "kind", "department").agg(pl.col("events").sum())
             .sort("events", descending=True).head(10))
top_users

# %%
failed_logins = aw.events(START, END, event_type="user_login", outcome="failure",
                          columns=["timestamp", "user_id", "source_ip", "source_country", "user_agent"])
by_source = (failed_logins.group_by("source_ip", "source_country")
             .agg(failures=pl.len(), accounts=pl.col("user_id").n_unique(),
                  first=pl.col("timestamp").min(), last=pl.col("timestamp").max())
             .sort("accounts", "failures", descending=True))
by_source.head(10)

# %% tags=["failed-logins-by-source"]
print(by_source.head(5).select("source_ip", "failures", "accounts"))

# %%
px.scatter(by_source, x="failures", y="accounts", hover_name="source_ip", color="source_country", log_x=True,
           title="Failed logins per source address: many accounts from one address is spraying")

# %% [markdown]
# ## Bulk data movement
#
# `metadata` arrives as JSON text; Polars reads fields out of it with `json_path_match`. Exports
# at night, by people rather than the backup job, deserve a look.

# %%
exports = (aw.events(START, END, event_type="data_export", columns=["timestamp", "user_id", "metadata"])
           .with_columns(rows=pl.col("metadata").str.json_path_match("$.rows").cast(pl.Int64),
                         dataset=pl.col("metadata").str.json_path_match("$.dataset"),
                         hour=pl.col("timestamp").dt.hour())
           .join(people, on="user_id", how="left"))
px.scatter(exports, x="timestamp", y="rows", color="kind", hover_name="user_id", log_y=True,
           title="Data exports: rows per export over time")

# %% tags=["top-exporters"]
(exports.filter(pl.col("kind") == "human")
 .group_by("user_id", "department").agg(exports=pl.len(), rows=pl.col("rows").sum(),
                                         night_exports=(pl.col("hour") < 6).sum())
 .sort("rows", descending=True).head(10))

# %% [markdown]
# ## The cold tier from other engines
#
# Archived days are plain Parquet in Hive layout (`year=/month=/day=/events-*.parquet` under the
# archive root), so DuckDB, Polars, Trino or Spark read them without Auditwatch. Files being
# written end in `.parquet.tmp` and are not matched. Before anything is archived the root is empty.

# %% tags=["cold-engines"]
archived = sorted(Path(STORE.archive_root).glob("year=*/month=*/day=*/*.parquet")) \
    if "://" not in str(STORE.archive_root) else []
if archived:
    dataset = f"{STORE.archive_root}/**/*.parquet"
    with duckdb.connect() as con:
        per_day = con.execute("SELECT year, month, day, count(*) AS events FROM read_parquet(?, "
                              "hive_partitioning = true) GROUP BY ALL ORDER BY ALL", [dataset]).fetchall()
    print(per_day)
    print(pl.scan_parquet(dataset, hive_partitioning=True).group_by("event_type").agg(pl.len()).collect())
else:
    print(f"no archived days under {STORE.archive_root} yet (`auditwatch archive run` moves old days there)")

# %%
aw.close()
