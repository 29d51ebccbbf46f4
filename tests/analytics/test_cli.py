"""The offline commands: analyze, analyze-series and eval (no database), with malformed input."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson
import polars as pl

from tests.analytics.conftest import T0, burst, event

ROOT = Path(__file__).resolve().parents[2]


def _write_events(path: Path, history: pl.DataFrame, extra: list[dict]) -> None:
    """A day of normal history from the generator, then a day with a brute force in it."""
    with open(path, "wb") as handle:
        for row in history.iter_rows(named=True):
            row["timestamp"] = row["timestamp"].isoformat()
            row["metadata"] = orjson.loads(row["metadata"]) if row["metadata"] else {}
            handle.write(orjson.dumps(row) + b"\n")
        for item in extra:
            handle.write(orjson.dumps(item) + b"\n")


def test_analyze_writes_one_json_line_per_anomaly_with_every_field(run, tmp_path, history):
    start = history["timestamp"].min()
    two_days = history.filter(pl.col("timestamp") < start + timedelta(days=2))
    attack_at = (start + timedelta(days=2, hours=10)).replace(minute=0, second=0, microsecond=0)
    events = tmp_path / "events.ndjson"
    _write_events(events, two_days, burst(attack_at, "u00001", 50, seconds=120) + [
        event(attack_at + timedelta(hours=1), "u00002", "file_download", metadata={"bytes": 1000})])
    result = run("analyze", str(events), "--out", str(tmp_path / "anomalies.jsonl"), "--warmup", "2")
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in (tmp_path / "anomalies.jsonl").read_bytes().splitlines()]
    assert lines, result.output
    assert {"u00001", "185.220.1.2"} <= {a["entity_value"] for a in lines}
    for anomaly in lines:
        assert set(anomaly) == {"detector", "detector_version", "entity_type", "entity_value", "window_start",
                                "window_end", "score", "severity", "explanation", "sample_event_ids",
                                "first_seen", "last_seen", "first_window_end", "peak_score", "windows"}
        assert 0.6 <= anomaly["score"] <= 1 and anomaly["explanation"]["summary"]
        # Scored after the warm-up: the file's first two days were only learned from.
        assert anomaly["window_start"] >= (start + timedelta(days=2)).replace(hour=0).isoformat()[:10]
    burst_ = next(a for a in lines if a["entity_value"] == "u00001" and a["detector"] == "failed_login_burst")
    assert burst_["windows"] >= 1 and burst_["last_seen"] >= burst_["first_seen"]  # one incident, not its windows
    assert "anomalies in" in result.output and "warm-up 2.0 days" in result.output


def test_analyze_refits_at_the_cadence_asked_for_and_refuses_what_is_not_one(run, tmp_path, history):
    """--refit-every 6h scores a file as a worker with the default `analytics_refit_seconds` would have."""
    start = history["timestamp"].min()
    events = tmp_path / "events.ndjson"
    _write_events(events, history.filter(pl.col("timestamp") < start + timedelta(days=3)), [])
    result = run("analyze", str(events), "--out", str(tmp_path / "a.jsonl"), "--warmup", "2", "--refit-every", "6h")
    assert result.exit_code == 0, result.output
    # Scored from the start of day 3 (after the 2-day warm-up) to the file's last event, one fit per 6 hours.
    fits = -(-(history.filter(pl.col("timestamp") < start + timedelta(days=3))["timestamp"].max()
               - (start + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)) // timedelta(hours=6))
    assert f"refitted every 6 h ({fits} fits)" in result.output, result.output
    for bad, message in (("5x", "is not a cadence; use e.g. 6h"), ("10m", "outside 1h to 365d"),
                         ("400d", "outside 1h to 365d")):
        refused = run("analyze", str(events), "--out", str(tmp_path / "b.jsonl"), "--refit-every", bad)
        assert refused.exit_code == 2 and message in refused.output, refused.output
    both = run("analyze", str(events), "--out", str(tmp_path / "b.jsonl"), "--refit-every", "6h",
               "--baseline-until", start.isoformat())
    assert both.exit_code == 2 and "Give one of them" in both.output
    assert not (tmp_path / "b.jsonl").exists()
    assert run("eval", "--refit-every", "6h").exit_code == 2  # without --plain the models are fitted once


def test_analyze_stops_at_a_malformed_line_with_its_number_or_skips_it(run, tmp_path):
    good = [orjson.dumps(e) for e in burst(T0, "alice", 30)]
    lines = good[:3] + [b'{"timestamp": "not a time", "event_type": "user_login", "user_id": "a"}', b"[1, 2]",
                        b"{broken"] + good[3:]
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    stopped = run("analyze", str(path), "--out", str(tmp_path / "a.jsonl"))
    assert stopped.exit_code == 1
    assert "line 4: `timestamp` is not ISO 8601" in stopped.output and "--on-error skip" in stopped.output
    assert not (tmp_path / "a.jsonl").exists()
    skipped = run("analyze", str(path), "--out", str(tmp_path / "a.jsonl"), "--on-error", "skip")
    assert skipped.exit_code == 0, skipped.output
    assert "skipped 3 malformed line(s)" in skipped.output
    for number in (4, 5, 6):
        assert f"line {number}:" in skipped.output
    found = [orjson.loads(x) for x in (tmp_path / "a.jsonl").read_bytes().splitlines()]
    assert "alice" in {a["entity_value"] for a in found}  # the good lines were all used


def test_analyze_refuses_an_empty_file_and_a_bad_time(run, tmp_path):
    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"\n")
    result = run("analyze", str(empty), "--out", str(tmp_path / "x.jsonl"))
    assert result.exit_code == 1 and "holds no events" in result.output
    one = tmp_path / "one.ndjson"
    one.write_bytes(orjson.dumps(event(T0, "a")) + b"\n")
    result = run("analyze", str(one), "--out", str(tmp_path / "x.jsonl"), "--baseline-until", "yesterday")
    assert result.exit_code == 2 and "ISO 8601" in result.output


def test_analyze_series_scores_causally_and_reports_bad_lines(run, tmp_path):
    path = tmp_path / "series.csv"
    rows = ["timestamp,value"] + [f"{(T0 + timedelta(minutes=i)).isoformat()},{10 + (i % 3)}" for i in range(100)]
    rows[81] = f"{(T0 + timedelta(minutes=80)).isoformat()},500"
    rows.insert(50, "garbage-line")
    rows.insert(60, f"{T0.isoformat()},NaN")
    path.write_text("\n".join(rows) + "\n")
    stopped = run("analyze-series", str(path), "--out", str(tmp_path / "s.csv"))
    assert stopped.exit_code == 1 and "line 51: expected 2 fields" in stopped.output
    result = run("analyze-series", str(path), "--out", str(tmp_path / "s.csv"), "--on-error", "skip")
    assert result.exit_code == 0, result.output
    assert "line 51:" in result.output and "line 61: the value is not a finite number" in result.output
    scores = pl.read_csv(tmp_path / "s.csv")
    assert scores.columns == ["timestamp", "value", "anomaly_score"]
    assert scores.height == 100
    assert scores["anomaly_score"].is_between(0, 1).all()
    assert scores["anomaly_score"].arg_max() == 80 and scores["anomaly_score"][80] >= 0.9
    assert scores["anomaly_score"][:10].max() == 0  # too few points before them to judge


def test_analyze_series_wants_the_header(run, tmp_path):
    path = tmp_path / "series.csv"
    path.write_text("time,val\n2024-01-01T00:00:00Z,1\n")
    result = run("analyze-series", str(path), "--out", str(tmp_path / "s.csv"))
    assert result.exit_code == 1 and "line 1: the header must be exactly `timestamp,value`" in result.output


def _home(history: pl.DataFrame) -> dict:
    """A user with plenty of history from one public address and one client."""
    humans = history.filter(pl.col("user_id").str.starts_with("u") & (pl.col("outcome") == "success")
                            & ~pl.col("source_ip").str.starts_with("10."))
    counts = humans.group_by("user_id").agg(pl.len(), pl.col("source_ip").n_unique().alias("ips"))
    user = counts.filter(pl.col("ips") == 1).sort("len", "user_id")["user_id"][-1]
    return humans.filter(pl.col("user_id") == user).row(-1, named=True)


def test_analyze_locates_addresses_a_file_gives_without_countries_as_ingest_would(run, tmp_path, history):
    """A file with addresses only (no country, no network) is judged with the countries ingest would have
    stored; --no-geo leaves them out and says what that costs."""
    start = history["timestamp"].min()
    two_days = history.filter(pl.col("timestamp") < start + timedelta(days=2)).drop("source_country", "source_asn")
    home = _home(two_days)
    at = (start + timedelta(days=2, hours=3)).replace(minute=7, second=0, microsecond=0)
    # A session from a British address on a client the user never had, at night.
    stolen = [event(at + timedelta(minutes=k), home["user_id"], "user_login" if k == 0 else "file_download",
                    ip="81.2.69.142", country=None, asn=None, ua="python-requests/2.31") for k in range(3)]
    events = tmp_path / "events.ndjson"
    _write_events(events, two_days, stolen)

    located = run("analyze", str(events), "--out", str(tmp_path / "geo.jsonl"), "--warmup", "2")
    assert located.exit_code == 0, located.output
    assert "source_country and source_asn (none in the file) filled from source_ip as ingest does" in located.output
    assert "has a country" not in located.output  # no note about countries once they are filled
    found = [orjson.loads(line) for line in (tmp_path / "geo.jsonl").read_bytes().splitlines()]
    context = next(a for a in found if a["detector"] == "new_context" and a["entity_value"] == home["user_id"])
    assert context["explanation"]["observed"]["source_country"] == "GB"

    blind = run("analyze", str(events), "--out", str(tmp_path / "nogeo.jsonl"), "--warmup", "2", "--no-geo")
    assert blind.exit_code == 0, blind.output
    assert "filled from source_ip" not in blind.output
    assert "note: none of the" in blind.output and "has a country" in blind.output
    for line in (tmp_path / "nogeo.jsonl").read_bytes().splitlines():
        assert "source_country" not in orjson.loads(line)["explanation"].get("observed", {})


def test_analyze_names_the_inputs_a_file_lacks_and_how_to_send_them(run, tmp_path, history):
    start = history["timestamp"].min()
    # A day of history from a source whose exports never say how many rows left.
    day = history.filter(pl.col("timestamp") < start + timedelta(days=1)).with_columns(
        pl.when(pl.col("event_type") == "data_export").then(pl.lit('{"dataset": "crm"}'))
        .otherwise(pl.col("metadata")).alias("metadata"))
    exports = day.filter(pl.col("event_type").is_in(["data_export", "export_requested"]))
    without = exports.filter(pl.col("event_type") == "data_export").height
    assert without > 0.01 * exports.height
    events = tmp_path / "events.ndjson"
    _write_events(events, day, [])
    result = run("analyze", str(events), "--out", str(tmp_path / "a.jsonl"))
    assert result.exit_code == 0, result.output
    assert f"note: export_volume: {without:,} of {exports.height:,} exports" in result.output
    assert "Send the rows exported as metadata.rows" in result.output
    assert "note: no event has a source_ip" not in result.output  # the file has addresses


def test_a_field_missing_from_a_sliver_of_its_events_is_no_note():
    from analytics import coverage

    at = T0.isoformat()
    rows = [{"timestamp": at, "event_type": "data_export", "user_id": "u1", "outcome": "success",
             "metadata": orjson.dumps({"rows": 10}).decode()} for _ in range(200)]
    frame = pl.DataFrame(rows + [{**rows[0], "metadata": "{}"}])  # 1 of 201 without rows
    assert not [n for n in coverage.gaps(frame) if "metadata.rows" in n]
    frame = pl.DataFrame(rows + [{**rows[0], "metadata": "{}"}] * 3)  # 3 of 203
    assert [n for n in coverage.gaps(frame) if n.startswith("export_volume: 3 of 203 exports")]


def test_a_file_in_its_own_vocabulary_is_told_which_names_the_detectors_read():
    from analytics import coverage

    at = T0.isoformat()
    frame = pl.DataFrame([{"timestamp": at, "event_type": t, "user_id": "u1", "outcome": o, "source_ip": "81.2.69.142",
                           "user_agent": "curl/8"} for t, o in [("login", "FAILED"), ("login", "OK"), ("logout", "OK")]])
    notes = coverage.gaps(frame)
    assert any("no event has outcome success or failure (the file's most common: 'OK', 'FAILED')" in n for n in notes)
    assert any("none of the file's event types is one the detectors read" in n and "'login', 'logout'" in n
               for n in notes)
    exports_only = frame.with_columns(pl.lit("data_export").alias("event_type"), pl.lit("success").alias("outcome"))
    assert [n for n in coverage.gaps(exports_only) if n.startswith("no user_login events")]


def test_analyze_counts_a_repeated_event_once_as_ingest_stores_it(run, tmp_path, history):
    """A shipper that retried, or a file concatenated twice: the same event_id and timestamp is one event (R5),
    so the file gives the anomalies its events give once."""
    start = history["timestamp"].min()
    two_days = history.filter(pl.col("timestamp") < start + timedelta(days=2))
    attack_at = (start + timedelta(days=2, hours=10)).replace(minute=0, second=0, microsecond=0)
    once, twice = tmp_path / "once.ndjson", tmp_path / "twice.ndjson"
    _write_events(once, two_days, burst(attack_at, "u00001", 50, seconds=120))
    twice.write_bytes(once.read_bytes() * 2)
    runs = {}
    for path in (once, twice):
        result = run("analyze", str(path), "--out", str(tmp_path / f"{path.stem}.jsonl"), "--warmup", "2")
        assert result.exit_code == 0, result.output
        runs[path.stem] = result.output
    lines = once.read_bytes().count(b"\n")
    assert "repeated events" not in runs["once"]
    assert f"{lines:,} repeated events (the same event_id and timestamp) counted once" in runs["twice"]
    assert (tmp_path / "once.jsonl").read_bytes() == (tmp_path / "twice.jsonl").read_bytes()
    assert (tmp_path / "once.jsonl").read_bytes()  # the burst is there, once


def test_addresses_that_are_not_addresses_stay_without_a_place():
    """A file's source_ip is any string: garbage, oversized, a CIDR, a zone id. The real lookup says nothing of it,
    and nothing stops; a real public address next to them is located."""
    from analytics import coverage
    from ingest.enrich import geo_lookup

    hostile = ["not-an-ip", "999.1.1.1", "", "x" * 10_000, "1.2.3.4/24", "\x00", "fe80::1%eth0", "10.0.0.1"]
    frame = pl.DataFrame({"source_ip": [*hostile, "81.2.69.142"]})
    filled, columns, located = coverage.fill_locations(frame, geo_lookup(None).lookup)
    assert columns == ("source_country", "source_asn") and located == 1
    assert filled["source_country"].to_list() == [None] * len(hostile) + ["GB"]
