"""Features as Polars expressions over LazyFrames of events (see ``analytics.events``).

The same functions serve the scheduled job (frames read from TimescaleDB), the CLI over a file and
a notebook. Everything stays lazy until a detector collects it; NumPy only at the detector boundary.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import polars as pl
import ua_parser

PRIVILEGED_TYPES = ("permission_change", "api_key_created", "config_change", "password_change")
EXPORT_TYPES = ("data_export", "export_requested")
DOWNLOAD_TYPES = ("file_download",)
SAMPLE_IDS = 10

WINDOWS = {"1m": timedelta(minutes=1), "10m": timedelta(minutes=10), "1h": timedelta(hours=1), "4h": timedelta(hours=4)}


def every(window: str) -> str:
    """The Polars duration string of a window name."""
    return {"1m": "1m", "10m": "10m", "1h": "1h", "4h": "4h"}[window]


@functools.cache
def duration(period: str) -> timedelta:
    """A Polars duration string (``"10m"``, ``"6h"``, ``"1d"``) as a timedelta (cached: detectors ask on every run)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return pl.select(pl.lit(epoch).dt.offset_by(period)).item() - epoch


def is_failed_login() -> pl.Expr:
    return (pl.col("event_type") == "user_login") & (pl.col("outcome") == "failure")


def is_successful_login() -> pl.Expr:
    return (pl.col("event_type") == "user_login") & (pl.col("outcome") == "success")


def with_user_ip(events: pl.LazyFrame) -> pl.LazyFrame:
    """Adds ``user_ip`` ("user|address"), the entity of a user from one address."""
    return events.with_columns(pl.concat_str([pl.col("user_id"), pl.col("source_ip")], separator="|").alias("user_ip"))


def client_family(user_agents: pl.Series) -> dict[str, str]:
    """User agent → its client: browser or library family, OS family and device, without versions.

    A browser that updates itself (Chrome 126 → 127) is the same client; a new browser, OS or a
    scripting library is not. Parsed once per distinct user agent (there are few).
    """
    out = {}
    for ua in user_agents.drop_nulls().unique().to_list():
        parsed = ua_parser.parse(ua)
        parts = [parsed.user_agent.family if parsed.user_agent else "Other",
                 parsed.os.family if parsed.os else "Other",
                 parsed.device.family if parsed.device else "Other"]
        out[ua] = ua if parts == ["Other", "Other", "Other"] else "/".join(parts)
    return out


def hour_of_week(ts: str | pl.Expr = "timestamp") -> pl.Expr:
    """0..167, Monday 00:00 UTC = 0: the seasonality index."""
    col = pl.col(ts) if isinstance(ts, str) else ts
    return ((col.dt.weekday().cast(pl.Int16) - 1) * 24 + col.dt.hour().cast(pl.Int16)).cast(pl.Int16)


def metadata_number(key: str) -> pl.Expr:
    """A numeric metadata field (null when absent or not a number)."""
    return pl.col("metadata").str.json_path_match(f"$.{key}").cast(pl.Float64, strict=False)


def export_rows() -> pl.Expr:
    """Rows that left in a bulk export (data_export, export_requested); 0 for other events."""
    return pl.when(pl.col("event_type").is_in(EXPORT_TYPES)).then(
        metadata_number("rows").fill_null(1.0)).otherwise(0.0)


def download_bytes() -> pl.Expr:
    """Bytes downloaded as files; 0 for other events."""
    return pl.when(pl.col("event_type").is_in(DOWNLOAD_TYPES)).then(
        metadata_number("bytes").fill_null(0.0)).otherwise(0.0)


def target_user() -> pl.Expr:
    """Whom a privileged action was about: metadata.target_user, else resource_id."""
    return pl.coalesce(pl.col("metadata").str.json_path_match("$.target_user"), pl.col("resource_id"))


def is_privileged() -> pl.Expr:
    """A privileged action; a password change counts only when it is someone else's password."""
    other = target_user().is_not_null() & (target_user() != pl.col("user_id"))
    return pl.col("event_type").is_in(PRIVILEGED_TYPES[:3]) | ((pl.col("event_type") == "password_change") & other)


def window_counts(events: pl.LazyFrame, entity: str, window: str, *, distinct: str | None = None) -> pl.LazyFrame:
    """Per entity and tumbling window: ``count`` of events (or distinct ``distinct`` values) and sample ids."""
    statistic = pl.col(distinct).n_unique() if distinct else pl.len()
    return (
        events.filter(pl.col(entity).is_not_null())
        .with_columns(pl.col("timestamp").dt.truncate(every(window)).alias("window_start"))
        .group_by(entity, "window_start")
        # Samples and users in time order whatever order the events came in (a join before reorders them): a
        # rerun names the same events, so it rewrites no stored incident.
        .agg(statistic.cast(pl.Int64).alias("count"),
             pl.col("event_id").sort_by("timestamp", "event_id").head(SAMPLE_IDS).alias("sample_event_ids"),
             pl.col("user_id").sort_by("timestamp", "event_id").unique(maintain_order=True).head(20).alias("users"))
        .with_columns((pl.col("window_start") + WINDOWS[window]).alias("window_end"),
                      hour_of_week("window_start").alias("how"))
        .rename({entity: "entity_value"})
    )


def with_resolved(failures: pl.LazyFrame, events: pl.LazyFrame, within: timedelta, *, max_run: int = 4,
                  now: datetime | None = None, worked: pl.DataFrame | None = None) -> pl.LazyFrame:
    """Failed logins with ``resolved``: the same user succeeded from the same address within ``within`` after,
    ending a run of at most ``max_run`` failures (a longer run that ends in a success may be a guess that worked).

    A typo, an expired password or a stale token is resolved in seconds by its owner; a guess at
    someone else's account is not. Behind a shared egress (NAT, VPN, proxy) hundreds of people may
    fail once on one day, but each of them then gets in.

    With ``now`` (the live edge), a failure younger than ``within`` from an address that has done
    legitimate work (a success in ``events``, or one of ``worked``'s ``source_ip``) counts as resolved until
    its time is up: its owner may be seconds from getting in, and an anomaly stored now could not be taken
    back when they do. An address that never succeeded (a spray, a brute force from outside) is judged at once.
    """
    successes = (events.filter(is_successful_login() & pl.col("source_ip").is_not_null())
                 .select("user_id", "source_ip", pl.col("timestamp").alias("_ok")).sort("_ok"))
    run = pl.len().over("user_id", "source_ip", "_ok")  # the failures this success ends
    resolved = pl.col("_ok").is_not_null() & (run <= max_run)
    marked = (failures.sort("timestamp")
              .join_asof(successes, left_on="timestamp", right_on="_ok", by=["user_id", "source_ip"],
                         strategy="forward", tolerance=within, check_sortedness=False))
    if now is None:
        return marked.with_columns(resolved.alias("resolved")).drop("_ok")
    here = good_sources(events)
    known = here if worked is None else pl.concat([here, worked.lazy().select("source_ip")]).unique()
    marked = marked.join(known.with_columns(pl.lit(True).alias("_worked")), on="source_ip", how="left")
    held = pl.col("_ok").is_null() & pl.col("_worked").fill_null(False) & (pl.lit(now) - pl.col("timestamp") < within)
    return marked.with_columns((resolved | held).alias("resolved")).drop("_ok", "_worked")


def good_sources(events: pl.LazyFrame) -> pl.LazyFrame:
    """The addresses that did legitimate work in ``events`` (any successful event), one row each."""
    return events.filter((pl.col("outcome") == "success") & pl.col("source_ip").is_not_null()).select(
        "source_ip").unique()


def from_good_sources(events: pl.LazyFrame) -> pl.LazyFrame:
    """The events minus failed logins from addresses that never had a successful event in them.

    What normal failure bursts look like is learned from sources that also do legitimate work; an
    address that only ever failed (last week's spray or brute force, still inside a refit's history)
    would teach the model that attacks are normal.
    """
    good = good_sources(events)
    failed = is_failed_login() & pl.col("source_ip").is_not_null()
    return pl.concat([events.filter(~failed),
                      events.filter(failed).join(good, on="source_ip", how="semi")], how="vertical_relaxed")


def without_resolved_failures(events: pl.LazyFrame, within: timedelta) -> pl.LazyFrame:
    """The events minus the failed logins their owner resolved (see ``with_resolved``)."""
    failures = with_resolved(events.filter(is_failed_login()), events, within)
    return pl.concat([events.filter(~is_failed_login()),
                      failures.filter(~pl.col("resolved")).drop("resolved")], how="vertical_relaxed")


def failures_before_success(events: pl.LazyFrame, key: str, lookback: timedelta) -> pl.LazyFrame:
    """For each successful login: failed logins with the same ``key`` in the ``lookback`` before it."""
    base = events.filter(pl.col(key).is_not_null())
    failures = (base.filter(is_failed_login()).select(key, "timestamp").sort("timestamp")
                .with_columns(pl.int_range(1, pl.len() + 1).over(key).alias("cum")))
    keep = list(dict.fromkeys([key, "timestamp", "event_id", "user_id", "source_ip"]))
    successes = base.filter(is_successful_login()).select(keep).sort("timestamp")
    at = successes.join_asof(failures.rename({"timestamp": "_t"}), left_on="timestamp", right_on="_t",
                             by=key, strategy="backward", check_sortedness=False).rename({"cum": "cum_now"}).drop("_t")
    before = (successes.select(key, "event_id", (pl.col("timestamp") - lookback).alias("_from")).sort("_from")
              .join_asof(failures.rename({"timestamp": "_t"}), left_on="_from", right_on="_t", by=key,
                         strategy="backward", allow_exact_matches=False, check_sortedness=False)
              .select("event_id", pl.col("cum").alias("cum_before")))
    return (at.join(before, on="event_id", how="left")
            .with_columns((pl.col("cum_now").fill_null(0) - pl.col("cum_before").fill_null(0)).alias("failures"))
            .drop("cum_now", "cum_before"))


AFFINITY_KEYS = ("bucket", "dataset", "project", "team", "folder")


def infer_cohorts(events: pl.LazyFrame, *, min_members: int = 5, max_share: float = 0.5,
                  sample: int = 300_000) -> dict[str, str]:
    """User → cohort, from the shared resources people work on (a team's bucket, dataset or project).

    When no peer groups are known, a user's cohort is the resource they use most, weighted by how
    specific it is (idf: a resource everybody uses says nothing); resources used by fewer than
    ``min_members`` people or by more than ``max_share`` of them do not make a cohort, nor does one that
    fewer than ``min_members`` people would have as their first choice (they take their next).
    """
    keyed = events.filter(pl.col("user_id").is_not_null() & pl.col("metadata").is_not_null())
    # An even sample of each user's events (it is a habit), so a new or occasional user keeps all of theirs:
    # a sample of every n-th event overall left them with none, and without a cohort.
    per_user = max(sample // max(keyed.select(pl.col("user_id").n_unique()).collect().item(), 1), 20)
    n = pl.len().over("user_id")
    keyed = keyed.filter(pl.int_range(pl.len()).over("user_id") % (n // per_user + 1) == 0)
    keyed = keyed.select(
        "user_id", pl.coalesce([pl.col("metadata").str.json_path_match(f"$.{k}") for k in AFFINITY_KEYS])
        .alias("resource")).filter(pl.col("resource").is_not_null())
    uses = keyed.group_by("user_id", "resource").agg(pl.len().alias("n")).collect()
    people = max(uses["user_id"].n_unique(), 1)
    reach = uses.group_by("resource").agg(pl.len().alias("members"))
    ranked = (uses.join(reach, on="resource")
              .filter((pl.col("members") >= min_members) & (pl.col("members") <= max_share * people))
              .with_columns((pl.col("n") * (people / pl.col("members")).log()).alias("w"))
              .sort(["user_id", "w", "resource"], descending=[False, True, False]))
    # A resource many use may still be the first choice of only a few (a dataset that a department's
    # members also open): a cohort that small can show no shift and gives a thin baseline, so it is
    # dissolved and its members go to their next choice, until every cohort has ``min_members``.
    while True:
        best = ranked.group_by("user_id", maintain_order=True).first()
        small = best.group_by("resource").agg(pl.len().alias("k")).filter(pl.col("k") < min_members)["resource"]
        if small.is_empty():
            break
        ranked = ranked.filter(~pl.col("resource").is_in(small.implode()))
    return dict(best.select("user_id", pl.concat_str([pl.lit("cohort:"), pl.col("resource")])).iter_rows())


def user_hour_vectors(events: pl.LazyFrame) -> pl.LazyFrame:
    """One row per user and hour: the behaviour vector the multivariate detector reads."""
    # Metadata is parsed only for the events that carry a volume or a target (a JSON path per event is costly).
    parsed = pl.col("event_type").is_in(EXPORT_TYPES + DOWNLOAD_TYPES + PRIVILEGED_TYPES)
    keep = ["user_id", "timestamp", "event_type", "source_ip", "event_id", "outcome"]
    rich = events.filter(parsed).select(*keep, export_rows().alias("_rows"), download_bytes().alias("_bytes"),
                                        is_privileged().alias("_priv"))
    plain = events.filter(~parsed).select(*keep, pl.lit(0.0).alias("_rows"), pl.lit(0.0).alias("_bytes"),
                                          pl.lit(False).alias("_priv"))
    return (
        pl.concat([rich, plain]).sort("timestamp")
        .with_columns(pl.col("timestamp").dt.truncate("1h").alias("window_start"), is_failed_login().alias("_fail"))
        .group_by("user_id", "window_start", maintain_order=True)
        .agg(
            pl.len().alias("events"),
            pl.col("event_type").n_unique().alias("event_types"),
            pl.col("_fail").sum().alias("failed_logins"),
            pl.col("_rows").sum().log1p().alias("log_export_rows"),
            pl.col("_bytes").sum().log1p().alias("log_download_bytes"),
            pl.col("source_ip").n_unique().alias("source_ips"),
            pl.col("_priv").sum().alias("privileged"),
            pl.col("event_id").head(SAMPLE_IDS).alias("sample_event_ids"),
        )
        .with_columns(pl.col("window_start").dt.hour().alias("hour"),
                      (pl.col("window_start") + timedelta(hours=1)).alias("window_end"))
    )


VECTOR_COLUMNS = ("events", "event_types", "failed_logins", "log_export_rows", "log_download_bytes",
                  "source_ips", "privileged")
