# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4 · Real logs: an SSH server under attack
#
# `OpenSSH_2k.log` from [loghub](https://github.com/logpai/loghub) (Zhu et al., *Loghub: A Large
# Collection of System Log Datasets for AI-driven Log Analytics*, ISSRE 2023): 2,000 lines of a real
# sshd's auth log on 10 December. The file goes through the syslog parsers the listener uses
# (`ingest.syslog.parse_file`, pure functions, no database), becomes the same events frame the
# detectors read, and then through the production detectors.
#
# The file is looked for in `AUDITWATCH_LOGHUB_DIR`, then `$AUDITWATCH_SHARED_DATA/loghub`, then
# `shared/data/loghub` beside the checkout (`../shared/data/loghub` from the repository root).

# %%
import os
from datetime import UTC, datetime
from pathlib import Path

import plotly.express as px
import polars as pl

from analytics import pipeline
from analytics.events import from_records
from ingest.syslog import parse_file

ROOT = Path.cwd().resolve().parent  # the notebooks run from notebooks/
candidates = [Path(os.environ[name]) / sub for name, sub in (("AUDITWATCH_LOGHUB_DIR", ""),
                                                            ("AUDITWATCH_SHARED_DATA", "loghub"))
              if os.environ.get(name)]
candidates += [ROOT.parent / "shared" / "data" / "loghub", ROOT.parent.parent / "shared" / "data" / "loghub"]
LOG = next((c / "OpenSSH_2k.log" for c in candidates if (c / "OpenSSH_2k.log").exists()), None)
assert LOG is not None, f"OpenSSH_2k.log is not in {[str(c) for c in candidates]}; set AUDITWATCH_LOGHUB_DIR"
# RFC 3164 dates carry no year: the parser takes the latest 10 December not after the receive time.
RECEIVED = datetime(2025, 1, 1, tzinfo=UTC)
records = list(parse_file(LOG, now=RECEIVED, zone="UTC"))
events = from_records(records).with_columns(
    pl.col("metadata").str.json_path_match("$.invalid_user").alias("invalid_user"))
print(f"{len(records):,} lines → {events.height:,} events, {events['timestamp'].min():%Y-%m-%d %H:%M} to "
      f"{events['timestamp'].max():%H:%M} UTC")

# %% [markdown]
# ## What the parsers recognised
#
# sshd's login facts become `user_login` (failed and accepted), `ssh_invalid_user`,
# `ssh_connection_closed` and `ssh_break_in_attempt`; PAM's become `auth_failure`. Anything else is
# kept as a plain `syslog_message`, nothing is dropped.

# %%
events.group_by("event_type", "outcome").agg(events=pl.len()).sort("events", descending=True)

# %%
per_minute = (events.filter(pl.col("event_type") != "syslog_message")
              .group_by(pl.col("timestamp").dt.truncate("5m").alias("minute"), "event_type").agg(events=pl.len())
              .sort("minute"))
px.bar(per_minute, x="minute", y="events", color="event_type", title="Auth events per 5 minutes")

# %% [markdown]
# ## Who is attacking
#
# Failed logins by source address: how many attempts, how many account names, how many of them
# do not exist on the host (`invalid user`) — the signature of a dictionary attack.

# %%
failed = events.filter((pl.col("event_type") == "user_login") & (pl.col("outcome") == "failure"))
attackers = (failed.group_by("source_ip")
             .agg(failures=pl.len(), accounts=pl.col("user_id").n_unique(),
                  invalid=(pl.col("invalid_user") == "true").sum(), first=pl.col("timestamp").min(),
                  last=pl.col("timestamp").max())
             .with_columns(per_minute=(pl.col("failures") / ((pl.col("last") - pl.col("first")).dt.total_seconds()
                                                           / 60).clip(lower_bound=1)).round(1))
             .sort("failures", descending=True))

# %% tags=["attackers"]
print(attackers.head(8).select("source_ip", "failures", "accounts", "invalid", "per_minute"))

# %%
px.scatter(failed.join(attackers.head(6).select("source_ip"), on="source_ip"), x="timestamp", y="source_ip",
           color="user_id", title="Failed logins of the six busiest sources, by account tried")

# %%
(failed.filter(pl.col("invalid_user") == "true").group_by("user_id").agg(attempts=pl.len(),
                                                                          sources=pl.col("source_ip").n_unique())
 .sort("attempts", descending=True).head(15))

# %% [markdown]
# ## The one login that worked
#
# Did the address that got in fail first? A success after failures from the same place is what
# credential stuffing looks like; a clean first-try success from an address no attacker used is not.

# %%
accepted = events.filter((pl.col("event_type") == "user_login") & (pl.col("outcome") == "success"))
accepted.select("timestamp", "user_id", "source_ip", "metadata")

# %% tags=["accepted"]
for row in accepted.iter_rows(named=True):
    before = failed.filter((pl.col("source_ip") == row["source_ip"]) & (pl.col("timestamp") < row["timestamp"]))
    print(f"{row['user_id']} from {row['source_ip']} at {row['timestamp']:%H:%M:%S}: "
          f"{before.height} earlier failures from that address")

# %% [markdown]
# ## The production detectors on the file
#
# `analytics.pipeline.analyze` fits on the file's own history when it spans days; this file spans
# hours, so the detectors start from their population priors and score all of it — exactly what
# `auditwatch analytics` does with a file.

# %% tags=["flagged"]
anomalies = pipeline.analyze(events.drop("invalid_user"))
summary = (anomalies.group_by("detector", "entity_type", "entity_value")
           .agg(windows=pl.len(), max_score=pl.col("score").max(), first=pl.col("window_start").min())
           .sort("max_score", "windows", descending=True))
with pl.Config(tbl_rows=-1):
    print(summary.select("detector", "entity_type", "entity_value", "windows", "max_score"))

# %%
px.bar(summary.head(15), x="entity_value", y="windows", color="detector", hover_data=["max_score"],
       title="Anomalous windows per entity and detector")
