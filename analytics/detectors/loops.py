"""Retry loops: a program whose secret was just rotated fails from its own host until fixed, then gets in.

When a secret is rotated (or expires) under a running program, the program retries from the host and
with the client it has always used, at machine cadence (every few seconds to a minute), until someone
deploys the new secret; its next try then succeeds from that same host and client. The first time
this happens there is no habit of it in the history (``habits`` needs days of it), and the run looks
like a brute force that worked: hundreds of failures, then a success.

What tells them apart is where the failures come from, not how many there are. Guessing comes from
somewhere the account has not worked from (a new network or client), touches many accounts, or, for
an insider, comes from an address many accounts share (an office NAT) with a browser. A loop comes
from a (host, client) pair the account has long used successfully and (nearly) alone, with a
program's client, and ends in that pair's own success.

Such a run is down-weighted, not dropped: it counts as its last ``keep`` failure, which its success
resolves as it would a typo. Its hundreds of failures are one piece of evidence (a secret went
stale), not hundreds of guesses; but the account did fail, and that failure still adds to whatever
else happens to it (a guess from elsewhere before a success). Everything else is scored in
full: failures from any other address or client, runs that do not end in the pair's success (or
pause longer than ``max_gap``), runs faster than a program retries (more than ``max_per_minute`` in
a minute), and every pair on an address more than ``max_accounts`` accounts use or with a browser's
client (a user agent naming ``Mozilla/``, which every browser and web view sends; a missing one counts
as a program's, so only the address vouches for it): an insider's takeover from the office, or
someone at a colleague's desk, stays found.

Live, a loop is recognised before its success arrives. Scored at ``now`` (the worker's live edge), a run
from a known pair that is still open (its last failure within ``max_gap`` of ``now``, its first within
``max_pending``) is held as a loop would be, instead of paging on-call for a secret someone is about to
redeploy: a stored incident's peak never lowers, so a page sent before the fix could not be taken back. The
worker rescores its late allowance every run, so when the run ends the same windows are judged on how it
ended: by the pair's success (a loop: nothing to report) or by silence (scored in full, a
``max_gap`` later). A run that ends in success only after ``max_pending`` is scored in full live and so
offline too, so that a file gives the anomalies the worker raised (a program failing for hours is a
problem to report, whatever ends it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import polars as pl

from analytics import features as F

KEYS = ("user_id", "source_ip", "_client")
RUN = (*KEYS, "_ok", "_run")
BROWSER = "Mozilla/"


def _client() -> pl.Expr:
    return pl.col("user_agent").fill_null("")


@dataclass(frozen=True)
class RetryLoops:
    """The (account, host, client) triples whose failure runs, ended by their own success, are a retry loop.

    Learn with ``learn``; ``thin`` cuts each such run in an events frame to its last ``keep`` failures, and at the
    live edge (``now``) each run still open, for at most ``max_pending`` from its first failure.
    """

    pairs: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(
        schema={"user_id": pl.String, "source_ip": pl.String, "_client": pl.String}))
    max_gap: timedelta = timedelta(minutes=30)
    keep: int = 1
    max_per_minute: int = 60
    max_pending: timedelta = timedelta(hours=4)

    @classmethod
    def learn(cls, events: pl.LazyFrame, *, min_days: int = 2, min_successes: int = 5, max_accounts: int = 3,
              max_gap: timedelta = timedelta(minutes=30), keep: int = 1, max_per_minute: int = 60) -> RetryLoops:
        """Pairs an account used successfully ``min_successes`` times on ``min_days`` days, from an address at most
        ``max_accounts`` accounts were seen at, with a client that is not a browser."""
        seen = events.filter(pl.col("user_id").is_not_null() & pl.col("source_ip").is_not_null())
        shared = (seen.group_by("source_ip").agg(pl.col("user_id").n_unique().alias("_accounts"))
                  .filter(pl.col("_accounts") > max_accounts))
        pairs = (seen.filter((pl.col("outcome") == "success") & ~_client().str.contains(BROWSER, literal=True))
                 .group_by("user_id", "source_ip", _client().alias("_client"))
                 .agg(pl.len().alias("_n"), pl.col("timestamp").dt.date().n_unique().alias("_days"))
                 .filter((pl.col("_n") >= min_successes) & (pl.col("_days") >= min_days))
                 .join(shared, on="source_ip", how="anti")
                 .select(KEYS).collect())
        return cls(pairs, max_gap, keep, max_per_minute)

    def thin(self, events: pl.LazyFrame, *, now: datetime | None = None) -> pl.LazyFrame:
        """``events`` with each retry loop from a known pair, ended by its success, cut to its last ``keep``
        failures; every other event as it was (rows in another order). With ``now`` (scoring at the live edge)
        a run still open at ``now`` is cut as a loop too, until it ends or has lasted ``max_pending``."""
        if self.pairs.is_empty():
            return events
        failed = F.is_failed_login()
        pairs = self.pairs.lazy()
        mine = events.with_columns(_client().alias("_client"))
        successes = (mine.filter(F.is_successful_login()).join(pairs, on=KEYS, how="semi")
                     .select(*KEYS, pl.col("timestamp").alias("_ok")).sort("_ok"))
        runs = (mine.filter(failed).join(pairs, on=KEYS, how="semi").sort("timestamp")
                .join_asof(successes, left_on="timestamp", right_on="_ok", by=list(KEYS), strategy="forward",
                           check_sortedness=False)  # the success that ends the failures (null: none yet)
                .sort(*KEYS, "timestamp")
                .with_columns((pl.col("timestamp").diff().over(*KEYS, "_ok") > self.max_gap).fill_null(False)
                              .cum_sum().over(*KEYS, "_ok").alias("_run")))
        busiest = pl.len().over(*RUN, pl.col("timestamp").dt.truncate("1m")).max().over(RUN)
        first, last = pl.col("timestamp").min().over(RUN), pl.col("timestamp").max().over(RUN)
        ended = (pl.col("_ok").is_not_null() & (pl.col("_ok") - last <= self.max_gap)
                 & (pl.col("_ok") - first <= self.max_pending))
        if now is not None:  # still open at the live edge: judged when it ends, by the rescoring of late windows
            ended = ended | (pl.col("_ok").is_null() & (pl.lit(now) - last <= self.max_gap)
                             & (pl.lit(now) - first <= self.max_pending))
        loop = ended & (busiest <= self.max_per_minute)
        last = pl.int_range(pl.len()).over(RUN) >= pl.len().over(RUN) - self.keep
        kept = runs.filter(~loop | last).drop("_ok", "_run")
        rest = mine.filter(failed).join(pairs, on=KEYS, how="anti")
        return pl.concat([events.filter(~failed), pl.concat([rest, kept]).drop("_client")], how="vertical_relaxed")
