"""The scoring and refit jobs on a real TimescaleDB: watermarks, idempotence, late events, feedback, versions."""

from __future__ import annotations

import uuid
from datetime import timedelta

import orjson
import polars as pl
import pytest

from analytics import jobs
from analytics.events import from_records, read
from auditwatch.settings import load
from auditwatch.worker import JOBS, LEADER_JOBS, build_scheduler
from storage.timescale import anomalies as store
from storage.timescale import watermarks
from storage.timescale.writer import EventWriter
from tests.analytics.conftest import burst, event, records

CONFIG = jobs.JobConfig(history=timedelta(days=3), first_run=timedelta(hours=2), series=True)


@pytest.fixture
def loaded(pool, tiny_dataset):
    """The tiny dataset's history stored, and the moment right after it."""
    EventWriter(pool).write(records(tiny_dataset.events))
    return tiny_dataset.end


def _write(pool, *events: dict) -> None:
    EventWriter(pool).write(records(from_records(events)))


def test_events_read_back_with_copy_are_the_frame_analytics_reads(pool, loaded, tiny_dataset):
    back = read(pool, tiny_dataset.start, loaded)
    assert back.height == tiny_dataset.events.height
    original = tiny_dataset.events.sort("event_id")
    back = back.sort("event_id").select(original.columns)
    assert back.drop("metadata").equals(original.drop("metadata"))
    assert [orjson.loads(m) for m in back["metadata"].head(50)] == [orjson.loads(m) for m in
                                                                    original["metadata"].head(50)]


def test_scoring_is_idempotent_and_stores_explained_versioned_anomalies(pool, loaded):
    now = loaded
    versions = jobs.refit_job(pool, now=now - timedelta(hours=2), config=CONFIG)
    assert set(versions) == set(jobs._names(CONFIG))
    _write(pool, *burst(now - timedelta(minutes=50), "u00001", 40, seconds=100))
    first = jobs.score_job(pool, now=now, config=CONFIG)
    assert first.ran and first.inserted > 0
    stored = store.anomalies_frame(pool, store.AnomalyQuery(limit=1000))
    burst_rows = stored.filter(pl.col("detector") == "failed_login_burst")
    assert {"u00001", "185.220.1.2"} <= set(burst_rows["entity_value"])
    # Every stored anomaly names a stored model (the refit's, or one the first run fitted to score the
    # store's history prequentially), so its score can be reproduced.
    for detector, version in stored.filter(pl.col("detector") != "univariate_series").select(
            "detector", "detector_version").unique().rows():
        assert store.load_model(pool, detector, version) is not None
    row = burst_rows.row(0, named=True)
    assert orjson.loads(row["explanation"])["summary"] and row["sample_event_ids"]
    assert watermarks.job_watermark(pool, "score:failed_login_burst") == jobs._floor(now - CONFIG.end_offset,
                                                                             timedelta(minutes=1))
    again = jobs.score_job(pool, now=now, config=CONFIG)
    after = store.anomalies_frame(pool, store.AnomalyQuery(limit=1000))
    assert (again.inserted, again.updated) == (0, 0), _changed(stored, after)
    assert after.sort("anomaly_id")["anomaly_id"].to_list() == stored.sort("anomaly_id")["anomaly_id"].to_list()
    # The stored model reproduces the stored score.
    with pytest.raises(TypeError, match="key"):
        jobs.reproduce(pool, store.get_anomaly(pool, uuid.UUID(row["anomaly_id"])))  # no default key
    reproduced = jobs.reproduce(pool, store.get_anomaly(pool, uuid.UUID(row["anomaly_id"])), key=CONFIG.model_key)
    assert reproduced["score"][0] == pytest.approx(row["score"])


def _changed(before: pl.DataFrame, after: pl.DataFrame) -> list[dict]:
    """The incidents a rerun rewrote, as they were and as they are (what a failure needs to name its cause)."""
    moved = pl.concat([before, after]).unique(keep="none")
    return moved.sort("anomaly_id").select("detector", "entity_value", "window_start", "window_end", "score",
                                           "sample_event_ids").to_dicts()


def test_late_events_within_the_allowance_are_scored_on_the_next_run(pool, loaded):
    now = loaded
    jobs.refit_job(pool, now=now - timedelta(hours=2), config=CONFIG)
    jobs.score_job(pool, now=now, config=CONFIG)
    # Arrives after that run, stamped 40 minutes earlier (behind the watermark, inside the hour allowance).
    _write(pool, *burst(now - timedelta(minutes=40), "u00002", 40, seconds=100, ip="45.155.1.1"))
    later = jobs.score_job(pool, now=now + timedelta(minutes=2), config=CONFIG)
    assert later.inserted > 0
    found = store.anomalies_frame(pool, store.AnomalyQuery(entity_value="45.155.1.1"))
    assert found.height > 0 and found["window_end"].max() >= now - timedelta(minutes=40)


def test_false_positive_feedback_is_honoured_by_later_scoring(pool, loaded):
    now = loaded
    jobs.refit_job(pool, now=now - timedelta(hours=2), config=CONFIG)
    store.add_feedback(pool, anomaly_id=None, detector="failed_login_burst", entity_type="user",
                       entity_value="u00003", verdict="false_positive", until=now + timedelta(days=1),
                       reason="pen test", created_by="tests")
    _write(pool, *burst(now - timedelta(minutes=30), "u00003", 40, seconds=100, ip="193.142.7.7"))
    result = jobs.score_job(pool, now=now, config=CONFIG)
    assert result.suppressed >= 1
    stored = store.anomalies_frame(pool, store.AnomalyQuery(limit=1000))
    mine = stored.filter(pl.col("entity_value") == "u00003")
    assert mine.filter(pl.col("detector") == "failed_login_burst").is_empty()
    # The scope is this entity and this detector only: the source address is still reported.
    assert stored.filter(pl.col("entity_value") == "193.142.7.7", pl.col("detector") == "failed_login_burst").height
    # Expired feedback no longer suppresses.
    assert jobs.suppress(stored, store.suppressions(pool, now=now + timedelta(days=2)))[1] == 0


def test_the_first_run_fits_models_when_none_are_stored(pool, loaded):
    result = jobs.score_job(pool, now=loaded, config=CONFIG)
    assert result.ran and set(result.versions) >= {"failed_login_burst", "new_context"}
    assert store.load_model(pool, "new_context").version == result.versions["new_context"]


def test_a_follower_does_not_score(pool, loaded):
    class Follower:
        def is_leader(self) -> bool:
            return False

    assert jobs.score_job(pool, now=loaded, config=CONFIG, leader=Follower()).ran is False
    assert jobs.refit_job(pool, now=loaded, config=CONFIG, leader=Follower()) is None
    assert watermarks.job_watermark(pool, "score:failed_login_burst") is None


def test_the_worker_schedules_the_analytics_jobs_with_the_leader(pool, db_url, tmp_path):
    settings = load(config_file=None, environ={}, overrides={"database_url": db_url, "data_dir": str(tmp_path),
                                                             "analytics_score_seconds": 5})

    class Always:
        def is_leader(self) -> bool:
            return True

    scheduler = build_scheduler(pool, settings, Always())
    ids = {job.id: job for job in scheduler.get_jobs()}
    assert set(ids) == {j[0] for j in JOBS}
    for job_id in LEADER_JOBS:
        assert ids[job_id].kwargs["leader"] is not None and "config" in ids[job_id].kwargs
    assert ids["score_anomalies"].trigger.interval == timedelta(seconds=5)
    # Without a leader the leader-only jobs are not scheduled at all; without settings, only what needs none.
    assert {j.id for j in build_scheduler(pool, settings).get_jobs()} == {j[0] for j in JOBS} - set(LEADER_JOBS)
    assert {j.id for j in build_scheduler(pool).get_jobs()} == {"refresh_rollups"}


def test_anomalies_list_as_polars_frames_with_filters(pool, loaded):
    jobs.refit_job(pool, now=loaded - timedelta(hours=2), config=CONFIG)
    _write(pool, *burst(loaded - timedelta(minutes=20), "u00004", 40, seconds=60, ip="45.155.4.4"),
           event(loaded - timedelta(minutes=5), "u00004", "data_export", metadata={"rows": 5_000_000}))
    jobs.score_job(pool, now=loaded, config=CONFIG)
    everything = store.anomalies_frame(pool, store.AnomalyQuery(limit=1000))
    assert everything.schema == store.FRAME_SCHEMA
    only = store.anomalies_frame(pool, store.AnomalyQuery(detectors=["password_spraying", "failed_login_burst"],
                                                         entity_type="source_ip", min_score=0.9))
    assert only.height > 0 and set(only["entity_type"]) == {"source_ip"} and only["score"].min() >= 0.9
    page = store.anomalies_frame(pool, store.AnomalyQuery(limit=2))
    rest = store.anomalies_frame(pool, store.AnomalyQuery(limit=1000, before=(page["window_start"][-1],
                                                                               page["anomaly_id"][-1])))
    assert page.height + rest.height == everything.height


def test_a_model_row_not_sealed_with_the_key_is_refused_not_unpickled(pool, loaded):
    keyed = jobs.JobConfig(history=CONFIG.history, first_run=CONFIG.first_run, series=False,
                           detectors=("failed_login_burst",), model_key=b"k" * 32)
    version = jobs.refit_job(pool, now=loaded - timedelta(hours=2), config=keyed)["failed_login_burst"]
    detector, stored = jobs.load(pool, "failed_login_burst", version, key=keyed.model_key)
    assert detector.version_ == version

    with pytest.raises(jobs.TamperedModel, match="fails its HMAC seal"):
        jobs.load(pool, "failed_login_burst", version, key=b"another key")
    # An attacker with write access to the table swaps in a pickle of their own (sealed without the key).
    forged = jobs.seal(b"cos\nsystem\n(S'echo pwned'\ntR.", b"")
    with pool.connection() as conn:
        conn.execute("UPDATE detector_models SET model = %s WHERE detector = %s AND version = %s",
                     (forged, "failed_login_burst", version))
    with pytest.raises(jobs.TamperedModel):
        jobs.load(pool, "failed_login_burst", version, key=keyed.model_key)
    # Scoring does not stop: it refits and stores a properly sealed model instead.
    assert jobs.score_job(pool, now=loaded, config=keyed).ran
    newest, _ = jobs.load(pool, "failed_login_burst", key=keyed.model_key)
    assert newest.version_


def test_the_worker_generates_one_model_key_under_the_data_dir(tmp_path):
    from auditwatch.worker import model_key
    settings = load(config_file=None, environ={}, overrides={"data_dir": str(tmp_path)})
    first = model_key(settings)
    assert len(first) == 64 and model_key(settings) == first
    assert (tmp_path / "analytics-model.key").stat().st_mode & 0o777 == 0o600
    assert model_key(settings.replace(analytics_model_key="from-env")) == b"from-env"


def test_workers_starting_at_once_all_read_the_same_whole_model_key(tmp_path):
    """The key used to be created empty and written after: a concurrent start could read b""."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    script = ("import sys; from auditwatch.settings import load; from auditwatch.worker import model_key; "
              "s = load(config_file=None, environ={}, overrides={'data_dir': sys.argv[1]}); "
              "print(model_key(s).decode())")
    for attempt in range(3):
        data = tmp_path / f"d{attempt}"
        procs = [subprocess.Popen([sys.executable, "-c", script, str(data)], stdout=subprocess.PIPE, text=True,
                                  cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
                 for _ in range(6)]
        keys = {p.communicate(timeout=120)[0].strip() for p in procs}
        assert all(p.returncode == 0 for p in procs)
        assert len(keys) == 1 and len(keys.pop()) == 64
    assert not [p for p in tmp_path.rglob(".*.tmp")]  # no temporary file left behind


def test_an_empty_model_key_file_is_refused_with_what_to_do(tmp_path):
    from auditwatch.settings import SettingsError
    from auditwatch.worker import model_key
    (tmp_path / "analytics-model.key").write_text("")
    with pytest.raises(SettingsError, match="delete it"):
        model_key(load(config_file=None, environ={}, overrides={"data_dir": str(tmp_path)}))


def test_a_window_resolved_after_it_ends_is_reproduced_as_the_worker_scored_it(pool, loaded):
    """The worker rescores a window for its late allowance (an hour), so its score counts what came after it:
    failures that their owners followed with a success within minutes are resolved (a typo), even when the
    success lands after the window closes. Reproducing the score must read that hour too, or it counts them."""
    now = loaded
    jobs.refit_job(pool, now=now - timedelta(hours=2), config=CONFIG)
    start = jobs._floor(now - timedelta(minutes=70), timedelta(minutes=10))
    ip = "198.51.100.7"
    failures = [event(start + timedelta(minutes=1, seconds=12 * i), f"u{i:05d}", outcome="failure", ip=ip)
                for i in range(40)]
    # The last 15 were typos: each owner logs in from the same address two to five minutes after the window
    # (the 1 h window [start - 50 min, start + 10 min) closes before them).
    typos = [event(start + timedelta(minutes=12, seconds=10 * (i - 25)), f"u{i:05d}", ip=ip) for i in range(25, 40)]
    _write(pool, *failures, *typos)
    jobs.score_job(pool, now=now, config=CONFIG)
    stored = store.anomalies_frame(pool, store.AnomalyQuery(limit=1000)).filter(
        (pl.col("detector") == "failed_login_burst") & (pl.col("entity_value") == ip))
    assert stored.height == 1, stored
    row = stored.row(0, named=True)
    anomaly = store.get_anomaly(pool, uuid.UUID(row["anomaly_id"]))
    reproduced = jobs.reproduce(pool, anomaly, key=CONFIG.model_key)
    assert reproduced["score"][0] == pytest.approx(row["score"])
    # As many failures as the worker counted (the ones resolved after the window are not): scores saturate at 1.
    assert reproduced["count"].to_list() == [orjson.loads(row["explanation"])["observed"]["count"]]
    assert reproduced["count"].to_list() == [25]
