"""What the detectors can see in a file of events, and what a file leaves out that ingest would have filled.

Events that arrive through ingest get their country and network from their address (R8) before they are
stored, so the worker's detectors see them. A file given to ``auditwatch analyze`` may carry addresses only:
``fill_locations`` fills what is missing the same way, with the lookup the caller gives (this package holds no
geo database), so the file is judged as the worker would judge the same events. ``gaps`` names the inputs the
detectors read that the file does not carry, and how to send them, so that a quiet run is not mistaken for a
clean one.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from analytics import features as F
from analytics.events import normalize

Lookup = Callable[[str], tuple[str | None, str | None]]
# A field missing from a sliver of its events (a few odd records among many) is not worth a note on every run.
NOTABLE_SHARE = 0.01
# The event types the detectors read; anything else only feeds the per-user-hour outlier and the rollups.
READ_TYPES = ("user_login", *F.EXPORT_TYPES, *F.DOWNLOAD_TYPES, *F.PRIVILEGED_TYPES)


def fill_locations(frame: pl.DataFrame, lookup: Lookup) -> tuple[pl.DataFrame, tuple[str, ...], int]:
    """``source_country`` and ``source_asn`` filled from ``source_ip`` when the file carries none at all, as
    ingest fills them; the columns filled and how many events got a value. A column the file uses is kept as it
    is, so one file never mixes its own names of networks with the database's. An address the lookup does not
    know (a private one) stays without."""
    if "source_ip" not in frame.columns:
        return frame, (), 0
    empty = tuple(c for c in ("source_country", "source_asn")
                  if c not in frame.columns or frame[c].null_count() == frame.height)
    address = pl.col("source_ip").cast(pl.String)
    addresses = frame.select(address.drop_nulls().unique().sort()).to_series().to_list() if empty else []
    if not addresses:
        return frame, (), 0
    looked_up = [lookup(a) for a in addresses]
    found = {"source_country": {a: c for a, (c, _) in zip(addresses, looked_up, strict=True) if c},
             "source_asn": {a: n for a, (_, n) in zip(addresses, looked_up, strict=True) if n}}
    filled = frame.with_columns(address.replace_strict(found[c], default=None, return_dtype=pl.String).alias(c)
                                for c in empty)
    located = filled.select(pl.any_horizontal(pl.col(c).is_not_null() for c in empty).sum()).item()
    return filled, empty, int(located)


def gaps(frame: pl.DataFrame) -> list[str]:
    """One line per input the detectors read that the file lacks: which detectors go blind or half-blind, and the
    field to send. Nothing when the file carries everything."""
    if frame.is_empty():
        return []
    exports = pl.col("event_type").is_in(F.EXPORT_TYPES)
    downloads = pl.col("event_type").is_in(F.DOWNLOAD_TYPES)
    counts = normalize(frame).select(
        exports.sum().alias("exports"), (exports & F.metadata_number("rows").is_null()).sum().alias("no_rows"),
        downloads.sum().alias("downloads"),
        (downloads & F.metadata_number("bytes").is_null()).sum().alias("no_bytes"),
        pl.col("source_ip").is_not_null().sum().alias("addressed"),
        pl.col("source_country").is_not_null().sum().alias("located"),
        pl.col("user_agent").is_not_null().sum().alias("clients"),
        pl.col("outcome").is_in(["success", "failure"]).sum().alias("outcomes"),
        (pl.col("event_type") == "user_login").sum().alias("logins"),
        pl.col("event_type").is_in(READ_TYPES).sum().alias("read"),
    ).collect().row(0, named=True)

    def common(column: str) -> str:
        top = frame.get_column(column).drop_nulls().value_counts(sort=True).head(3)
        return ", ".join(f"{v!r}" for v in top[column].to_list()) or "none"

    notes = []
    if counts["no_rows"] > NOTABLE_SHARE * counts["exports"]:
        notes.append(f"export_volume: {counts['no_rows']:,} of {counts['exports']:,} exports "
                     f"({', '.join(F.EXPORT_TYPES)}) carry no number in metadata.rows, so each counts as one row "
                     "and only how many there are is judged, not how much left. Send the rows exported as "
                     "metadata.rows.")
    if counts["no_bytes"] > NOTABLE_SHARE * counts["downloads"]:
        notes.append(f"export_volume: {counts['no_bytes']:,} of {counts['downloads']:,} downloads "
                     f"({', '.join(F.DOWNLOAD_TYPES)}) carry no number in metadata.bytes, so their size is not "
                     "judged. Send the bytes downloaded as metadata.bytes.")
    if not counts["addressed"]:
        notes.append("no event has a source_ip: failures are judged per user only (no spraying or stuffing from "
                     "one address), and new_context sees clients only. Send the client's address as source_ip.")
    elif not counts["located"]:
        notes.append(f"none of the {counts['addressed']:,} events with a source_ip has a country (private "
                     "addresses, or no geo database): new_context judges new addresses, not new countries, and "
                     "cannot tell a trip from a stolen session. Send source_country and source_asn, or let "
                     "analyze fill them (without --no-geo).")
    if not counts["clients"]:
        notes.append("no event has a user_agent: new_context cannot tell a known device from a new one, so no "
                     "first country counts as a plausible trip. Send the client as user_agent.")
    if not counts["outcomes"]:
        seen = common("outcome") if "outcome" in frame.columns else "none"
        notes.append(f"no event has outcome success or failure (the file's most common: {seen}): the failed-login "
                     "detectors (failed_login_burst, password_spraying, failure_then_success, slow_failures) see "
                     "nothing. Send outcome as success, failure or unknown.")
    if not counts["read"]:
        notes.append(f"none of the file's event types is one the detectors read ({', '.join(READ_TYPES)}; the "
                     f"file's most common: {common('event_type')}): name them as the catalogue does "
                     "(GET /api/v1/event-types).")
    elif not counts["logins"]:
        notes.append("no user_login events: the failed-login detectors and new_context see nothing. Send sign-ins "
                     "as user_login.")
    return notes
