# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2 · Tune a detector
#
# Fit the production detectors (`analytics.detectors`) on history from the store, backtest them on
# the days after it against the demo's labelled attacks, sweep a threshold and a parameter, look at
# the precision/recall trade-off and the false anomalies per day, and export the chosen settings.
#
# The helpers are `analytics.tuning` (`backtest`, `evaluate`, `sweep`), so a script or a CI job can
# run the same evaluation. The labels are the demo generator's injected incidents
# (`ingest.seed.demo_labels`): point the notebook at a store filled by `make up` or
# `auditwatch seed-demo` with the same `AUDITWATCH_DEMO_*` parameters.

# %%
import json
import os
from datetime import timedelta
from pathlib import Path

import plotly.express as px
import polars as pl

from analytics import pipeline, tuning
from analytics.calibration import ANOMALY_SCORE
from analytics.detectors import ExportVolume
from ingest.seed import demo_labels
from storage import location
from storage.dataapi import connect

STORE = location.from_environ()  # AUDITWATCH_DATABASE_URL and AUDITWATCH_DATA_DIR, as the server reads them
DEMO = {"seed": int(os.environ.get("AUDITWATCH_DEMO_SEED", "7")),
        "users": int(os.environ.get("AUDITWATCH_DEMO_USERS", "300")),
        "service_accounts": int(os.environ.get("AUDITWATCH_DEMO_SERVICE_ACCOUNTS", "8"))}
TEST_DAYS = float(os.environ.get("AUDITWATCH_NOTEBOOK_TEST_DAYS", "1"))  # the newest days are the backtest
EXPORT_DIR = Path(os.environ.get("AUDITWATCH_NOTEBOOK_EXPORT_DIR", "tuned"))

aw = connect(STORE.reads, archive=STORE.archive_root)
span = aw.time_range()
assert span.events, "the store is empty: run `auditwatch seed-demo` (or notebook 1, which seeds it)"
END = span.last + timedelta(microseconds=1)
TRAIN_END = (END - timedelta(days=TEST_DAYS)).replace(minute=0, second=0, microsecond=0)
events = aw.events(span.first, END)
people = aw.users()
peer_groups = dict(people.select("user_id", pl.coalesce("department", "kind")).iter_rows())
labels = demo_labels(start=TRAIN_END, end=END, **DEMO)
print(f"history {span.first:%Y-%m-%d %H:%M} → {TRAIN_END:%Y-%m-%d %H:%M}, backtest → {END:%Y-%m-%d %H:%M} UTC; "
      f"{events.height:,} events, {len(labels)} labelled incidents in the backtest")
tuning.incidents_frame(labels)

# %% [markdown]
# ## Backtest every detector
#
# Fit on the history, then score *every* window of the backtest days (not only the anomalous
# ones), so thresholds can be compared without scoring again. Scores are calibrated: 0.6 means
# a window this extreme happens once in a million under the learned behaviour, whatever the
# detector.

# %%
detectors = pipeline.build(peer_groups=peer_groups)
scored = tuning.backtest(detectors, events, train_end=TRAIN_END)
THRESHOLDS = [round(0.3 + 0.05 * i, 2) for i in range(14)]
result = tuning.evaluate(scored, labels, thresholds=THRESHOLDS, days=TEST_DAYS)
print(f"{scored.height:,} windows scored by {scored['detector'].n_unique()} detectors")

# %%
labelled = tuning.label(scored, labels)
px.histogram(labelled.filter(pl.col("score") > 0.2), x="score", color="true", facet_col="detector",
             facet_col_wrap=4, nbins=40, log_y=True, title="Scores of the backtest windows, labelled ones in colour")

# %% [markdown]
# ## The precision/recall trade-off

# %%
curve = result.overall.with_columns(pl.col("threshold").cast(pl.String).alias("label"))
px.line(curve, x="recall", y="precision", text="label", markers=True,
        title="Precision against recall (incidents found), one point per score threshold")

# %% tags=["recall-by-scenario"]
default = result.by_scenario.filter(pl.col("threshold") == ANOMALY_SCORE)
print(default.select("scenario", "incidents", "detected", "recall"))

# %%
px.density_heatmap(result.by_scenario, x="threshold", y="scenario", z="recall", histfunc="avg",
                   nbinsx=len(THRESHOLDS), title="Recall per scenario and threshold")

# %%
px.line(result.by_detector, x="threshold", y="false_per_day", color="detector", markers=True, log_y=True,
        title="False anomalies per day by detector")

# %%
px.bar(result.per_day.filter(pl.col("threshold") == ANOMALY_SCORE), x="day", y="false", color="detector",
       title=f"False anomalies per day at the default threshold ({ANOMALY_SCORE})")

# %% [markdown]
# ## Sweep a parameter: the export detector's scale floor
#
# `ExportVolume` compares each user's export volume with their own history, shrunk towards their
# peer group; `min_scale` is the floor on the spread it expects. Too low and a quiet user's first
# ordinary export looks extreme; too high and a real exfiltration hides inside the spread.

# %%
sweep = tuning.sweep(lambda **kw: ExportVolume(peer_groups=peer_groups, **kw), "min_scale",
                     [0.1, 0.25, 0.5, 1.0, 2.0], events, labels, train_end=TRAIN_END,
                     thresholds=[0.5, ANOMALY_SCORE, 0.7, 0.8], name="export_volume")
exfiltration = sweep.by_scenario.filter(pl.col("scenario").str.contains("export"))
table = (sweep.overall.select("value", "threshold", "anomalies", "false_per_day")
         .join(exfiltration.select("value", "threshold", "recall"), on=["value", "threshold"]))
table

# %%
px.line(table.with_columns(pl.col("threshold").cast(pl.String)), x="value", y="recall", color="threshold",
        markers=True,
        title="Export detector: recall of the night exports against min_scale, per threshold")

# %% [markdown]
# ## Export the chosen settings
#
# The rule here: the highest recall, then the fewest false anomalies per day, then the lowest
# threshold (the most margin for the next, quieter exfiltration), then the value nearest the
# default. The file holds the detector's parameters and threshold, for review. (The worker applies
# one threshold to every detector today, `analytics_min_score`; per-detector settings are not
# read from such a file yet.)

# %% tags=["chosen"]
default_scale = ExportVolume().min_scale
best = (table.with_columns(distance=(pl.col("value").cast(pl.Float64) - default_scale).abs())
        .sort(["recall", "false_per_day", "threshold", "distance"], descending=[True, False, False, False])
        .row(0, named=True))
chosen = ExportVolume(min_scale=float(best["value"]))
EXPORT_DIR.mkdir(parents=True, exist_ok=True)
path = EXPORT_DIR / "export_volume.json"
path.write_text(json.dumps(tuning.chosen_settings(chosen, best["threshold"]), indent=2))
print(f"wrote {path}:\n{path.read_text()}")

# %%
aw.close()
