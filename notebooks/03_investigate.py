# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3 · Investigate
#
# From one alert to the story around it: the anomaly behind it and what the detector saw, the
# entity's timeline, its baseline against what happened, the events around it, and how its peers
# compare.
#
# Set `AUDITWATCH_ALERT_FINGERPRINT` to investigate a given alert (or `AUDITWATCH_ANOMALY_ID` for an
# anomaly); by default the notebook takes the newest alert raised on an anomaly of a user or an
# address, and the highest-scoring anomaly when no alert has been raised.

# %% tags=["anomaly"]
import json
import os
from datetime import timedelta

import plotly.express as px
import polars as pl

from analytics.investigation import hourly_baseline, peer_comparison
from storage import location
from storage.dataapi import connect

STORE = location.from_environ()  # AUDITWATCH_DATABASE_URL and AUDITWATCH_DATA_DIR, as the server reads them
aw = connect(STORE.reads, archive=STORE.archive_root)
span = aw.time_range()
END = span.last + timedelta(microseconds=1)
entity = pl.col("group_values").str.json_path_match
alerts = (aw.alerts(since=END - timedelta(days=7))
          .with_columns(entity_type=entity("$.entity_type"), entity_value=entity("$.entity_value"))
          .filter(pl.col("entity_type").is_in(["user", "source_ip"])))
if os.environ.get("AUDITWATCH_ALERT_FINGERPRINT"):
    alerts = alerts.filter(pl.col("fingerprint") == os.environ["AUDITWATCH_ALERT_FINGERPRINT"])
alert = alerts.sort("started_at", descending=True).row(0, named=True) if alerts.height else None

if os.environ.get("AUDITWATCH_ANOMALY_ID"):
    chosen = aw.anomalies().filter(pl.col("anomaly_id") == os.environ["AUDITWATCH_ANOMALY_ID"])
elif alert is not None:
    print(f"alert {alert['title']!r} ({alert['severity']}, {alert['state']}), fired {alert['firing_at']:%Y-%m-%d %H:%M}")
    chosen = (aw.anomalies(alert["started_at"] - timedelta(hours=2), alert["updated_at"] + timedelta(minutes=1),
                           entity_type=alert["entity_type"], entity_value=alert["entity_value"])
              .sort(["score", "window_start"], descending=True).head(1))
else:
    chosen = (aw.anomalies(END - timedelta(days=1), END).filter(pl.col("entity_type").is_in(["user", "source_ip"]))
              .sort(["score", "window_start"], descending=True).head(1))
assert chosen.height == 1, "no anomaly to investigate: run the scoring job (`auditwatch worker`) first"
anomaly = chosen.row(0, named=True)
explanation = json.loads(anomaly["explanation"])
ENTITY, KIND = anomaly["entity_value"], anomaly["entity_type"]
START, STOP = anomaly["window_start"], anomaly["window_end"]
print(f"{anomaly['severity'].upper()} {anomaly['score']:.2f}  {anomaly['detector']} on {KIND} {ENTITY}, "
      f"{START:%Y-%m-%d %H:%M}–{STOP:%H:%M} UTC\n{explanation.get('summary', '')}")

# %% [markdown]
# ## What the detector saw
#
# The explanation is stored with the anomaly: observed against expected, and the features that
# contributed, so nothing has to be re-run to judge it.

# %%
{k: explanation[k] for k in ("observed", "expected", "features", "p_value") if k in explanation}

# %%
entity_filter = {"user_id": ENTITY} if KIND == "user" else {"source_ip": ENTITY}
samples = aw.events(START - timedelta(minutes=5), STOP + timedelta(minutes=5), **entity_filter).filter(
    pl.col("event_id").is_in(anomaly["sample_event_ids"]))
samples.select("timestamp", "event_type", "outcome", "user_id", "source_ip", "source_country", "metadata")

# %% [markdown]
# ## The entity's timeline
#
# A week of hourly activity by event type, with the anomalous window marked.

# %%
LOOKBACK = timedelta(days=7)
timeline = aw.rollup(max(span.first, START - LOOKBACK), min(END, STOP + timedelta(hours=12)), interval="1h",
                     group_by=("event_type", "outcome"), **entity_filter)
figure = px.bar(timeline, x="bucket", y="events", color="event_type", pattern_shape="outcome",
                title=f"Hourly activity of {ENTITY}")
figure.add_vrect(x0=START, x1=STOP, fillcolor="red", opacity=0.25, line_width=0)
figure

# %% [markdown]
# ## Baseline against what happened
#
# The same hour of day on the earlier days is the baseline; the band reaches three standard
# deviations above it. (For the event types of the detector's sample events.)

# %%
types = sorted(samples["event_type"].unique().to_list()) or sorted(
    timeline.filter((pl.col("bucket") >= START - timedelta(hours=1)) & (pl.col("bucket") < STOP))["event_type"]
    .unique().to_list())
hourly = timeline.filter(pl.col("event_type").is_in(types)).group_by("bucket").agg(pl.col("events").sum())
baseline = hourly_baseline(hourly, since=max(span.first, START - LOOKBACK),
                           until=START.replace(minute=0, second=0, microsecond=0))
px.line(baseline.unpivot(index="bucket", on=["events", "expected", "upper"], variable_name="series"),
        x="bucket", y="value", color="series", title=f"{', '.join(types)} per hour: actual against baseline")

# %% tags=["baseline-window"]
print(baseline.filter((pl.col("bucket") >= START.replace(minute=0, second=0, microsecond=0)) &
                      (pl.col("bucket") < STOP)))

# %% [markdown]
# ## Related events
#
# Everything the entity did around the window, and who else used the same addresses that day.

# %%
around = aw.events(START - timedelta(hours=1), STOP + timedelta(hours=1), **entity_filter)
around.group_by("event_type", "outcome", "source_ip").agg(events=pl.len(), first=pl.col("timestamp").min(),
                                                          last=pl.col("timestamp").max()).sort("first")

# %%
addresses = [a for a in around["source_ip"].unique().to_list() if a]
day = START.replace(hour=0, minute=0, second=0, microsecond=0)
shared = pl.concat([aw.events(day, day + timedelta(days=1), source_ip=a, columns=["user_id", "source_ip"])
                    for a in addresses[:20]]) if addresses else pl.DataFrame()
(shared.group_by("source_ip").agg(users=pl.col("user_id").n_unique(), events=pl.len(),
                                  sample=pl.col("user_id").unique().head(5)).sort("users", descending=True)
 if shared.height else "no source addresses in the window")

# %% [markdown]
# ## Peers
#
# The same activity for the entity's department that day: is this user the only one?

# %%
people = aw.users()
if KIND == "user" and ENTITY in people["user_id"].to_list():
    counts = aw.rollup(day, day + timedelta(days=1), interval="1h", group_by=("user_id",), event_type=types)
    peers = peer_comparison(counts, people, entity=ENTITY)
    print(f"{ENTITY} ranks {peers.filter('is_entity')['rank'][0]} of {peers.height} in "
          f"{peers['department'][0]} for {', '.join(types)} on {day:%Y-%m-%d}")
    view = px.bar(peers.head(25), x="user_id", y="events", color="is_entity",
                  title=f"{', '.join(types)} on {day:%Y-%m-%d}: {ENTITY} against the peers")
else:
    view = px.bar(shared.group_by("user_id").agg(events=pl.len()).sort("events", descending=True).head(25)
                  if shared.height else pl.DataFrame({"user_id": [], "events": []}),
                  x="user_id", y="events", title=f"Accounts seen from {ENTITY} on {day:%Y-%m-%d}")
view

# %%
aw.close()
