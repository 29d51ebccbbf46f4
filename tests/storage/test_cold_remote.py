"""Object-storage options: file locations never carry the root's query string, and both pyarrow and
Polars get the endpoint, region, addressing style and credentials (checked against a real S3 server)."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
import pytest

from storage.cold.errors import ArchiveError
from storage.cold.remote import ObjectStoreOptions, split_url
from storage.cold.store import ColdStore
from tests.storage.conftest import S3_CREDENTIALS, new_bucket

MINIO = "s3://audit/cold?endpoint=http://minio.internal:9000&region=eu-central-1&path_style=true"


def test_file_uris_drop_the_query_string_and_polars_gets_the_options():
    store = ColdStore(MINIO, options={"access_key_id": "AK", "secret_access_key": "SK"})
    uri = store.uri("year=2024/month=05/day=01/events-1.parquet")
    assert uri == "s3://audit/cold/year=2024/month=05/day=01/events-1.parquet"
    assert store.root == "s3://audit/cold" and "?" not in store.root
    assert store.storage_options == {
        "aws_endpoint_url": "http://minio.internal:9000", "aws_allow_http": "true", "aws_region": "eu-central-1",
        "aws_virtual_hosted_style_request": "false", "aws_access_key_id": "AK", "aws_secret_access_key": "SK"}
    assert store.fs.region == "eu-central-1"
    assert store.options.public() == {"endpoint": "http://minio.internal:9000", "region": "eu-central-1",
                                      "path_style": "true"}


@pytest.mark.parametrize(("url", "endpoint", "path_style"), [
    ("s3://b/p?endpoint_override=ceph.local:7480&scheme=http", "http://ceph.local:7480", True),  # pyarrow's spelling
    ("s3://b/p?endpoint=https://acct.r2.cloudflarestorage.com&region=auto", "https://acct.r2.cloudflarestorage.com",
     True),
    ("s3://b/p?region=us-east-1", None, False),  # AWS itself: virtual-hosted buckets
    ("s3://b/p?endpoint=http://minio:9000&force_virtual_addressing=true", "http://minio:9000", False),
])
def test_custom_endpoints_in_the_spellings_people_use(url, endpoint, path_style):
    _, options = split_url(url)
    assert options.endpoint == endpoint
    assert options.uses_path_style is path_style
    assert ObjectStoreOptions(**vars(options)).polars()["aws_virtual_hosted_style_request"] == str(
        not path_style).lower()


@pytest.mark.parametrize(("url", "message"), [
    ("s3://b/p?secret_key=abc", "AUDITWATCH_ARCHIVE_SECRET_ACCESS_KEY"),
    ("s3://b/p?bogus=1", "unknown archive URL option 'bogus'"),
    ("s3://b/p?path_style=maybe", "not a boolean"),
    ("s3://?region=x", "names no bucket"),
])
def test_bad_archive_urls_say_what_to_do(url, message):
    with pytest.raises(ArchiveError, match=message):
        ColdStore(url)


def test_other_object_stores_keep_pyarrows_url_options_out_of_file_uris(tmp_path):
    store = ColdStore(f"file://{tmp_path}/cold?unused=1")  # pyarrow's from_uri takes (and ignores) it
    assert store.root == f"file://{tmp_path}/cold" and store.uri("a.parquet") == f"{tmp_path}/cold/a.parquet"
    assert store.storage_options is None


def test_half_a_credential_pair_is_refused():
    with pytest.raises(ArchiveError, match="set both"):
        ColdStore("s3://b/p?endpoint=http://127.0.0.1:1", options={"access_key_id": "only"})


def test_write_list_and_scan_on_the_real_server_and_polars_needs_the_options(s3_endpoint):
    bucket = new_bucket(s3_endpoint)
    url = f"s3://{bucket}/x?endpoint={s3_endpoint}&region=us-east-1"
    store = ColdStore(url, options=S3_CREDENTIALS)
    table = pa.table({"a": [1, 2, 3]})
    written = store.write("one.parquet", table.schema, table.to_batches())
    assert written.rows == 3 and store.listing() == {"one.parquet": written.bytes}
    assert store.scan(["one.parquet"]).collect().get_column("a").to_list() == [1, 2, 3]
    # moto accepts any key, so prove the options reach Polars by taking the endpoint away from it.
    lost = ColdStore(f"s3://{bucket}/x?region=us-east-1", options=S3_CREDENTIALS)
    lost.storage_options = {**lost.storage_options, "aws_endpoint_url": "http://127.0.0.1:9"}
    with pytest.raises((OSError, pl.exceptions.ComputeError)):
        lost.scan(["one.parquet"]).collect()


def test_the_settings_reach_the_store(s3_endpoint, tmp_path):
    from auditwatch import settings as settings_mod
    from auditwatch.services import cold_store
    from auditwatch.worker import cold_kwargs
    from storage.timescale import retention

    bucket = new_bucket(s3_endpoint)
    settings = settings_mod.load(config_file=None, environ={
        "AUDITWATCH_DATA_DIR": str(tmp_path),
        "AUDITWATCH_ARCHIVE_URL": f"s3://{bucket}/cold?endpoint={s3_endpoint}&region=us-east-1",
        "AUDITWATCH_ARCHIVE_ACCESS_KEY_ID": S3_CREDENTIALS["access_key_id"],
        "AUDITWATCH_ARCHIVE_SECRET_ACCESS_KEY": S3_CREDENTIALS["secret_access_key"]})
    store = cold_store(settings)
    assert store.storage_options["aws_access_key_id"] == S3_CREDENTIALS["access_key_id"]
    table = pa.table({"a": [7]})
    store.write("t.parquet", table.schema, table.to_batches())
    kwargs = cold_kwargs(settings)
    assert kwargs["archive_options"] == S3_CREDENTIALS
    assert "secret" not in kwargs["archive_root"]
    import inspect
    assert set(inspect.signature(retention.archive_job).parameters) >= {"archive_root", "archive_options"}
    again = ColdStore(kwargs["archive_root"], options=kwargs["archive_options"])
    assert again.listing().keys() == {"t.parquet"}


def test_the_worker_jobs_archive_to_s3_with_the_options_they_are_given(pool, s3_endpoint):
    """The scheduled jobs get the URL and the credentials as keyword arguments (auditwatch.worker.cold_kwargs)."""
    import boto3

    from storage.timescale import archive, retention
    from tests.storage.cold_data import seed

    events = seed(pool, days=(100, 99), per_day=6, recent=0)  # 2024: long past hot retention today
    bucket = new_bucket(s3_endpoint)
    url = f"s3://{bucket}/cold?endpoint={s3_endpoint}&region=us-east-1&path_style=true"
    result = retention.archive_job(pool, url, archive_options=S3_CREDENTIALS)
    assert result is not None and result.rows == len(events) and len(result.archived) == 2
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id=S3_CREDENTIALS["access_key_id"],
                          aws_secret_access_key=S3_CREDENTIALS["secret_access_key"])
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="cold/")["Contents"]
            if not o["Key"].endswith("/")}
    assert keys == {f"cold/{f.path}" for f in archive.list_files(pool, states=("complete",))}
    expired = retention.expire_job(pool, url, archive_options=S3_CREDENTIALS)
    assert expired is not None and expired.deleted == [] and expired.problems == []
