"""The project-local PostgreSQL + TimescaleDB cluster: install check and the whole lifecycle."""

from __future__ import annotations

import re
import socket
import tempfile
from pathlib import Path

import psycopg
import pytest

from storage.errors import DatabaseUnavailable
from storage.timescale import cluster
from storage.timescale.cluster import LocalCluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_find_bindir_finds_postgres_with_timescaledb():
    bindir = cluster.find_bindir()
    assert bindir is not None, "install PostgreSQL with TimescaleDB: bash scripts/install-timescaledb.sh"
    assert (bindir / "postgres").exists() and (bindir / "pg_ctl").exists() and (bindir / "initdb").exists()
    version = bindir.parent.name
    assert version in cluster.PG_VERSIONS
    assert Path(f"/usr/share/postgresql/{version}/extension/timescaledb.control").exists()
    assert cluster.ensure_installed(install=False) == bindir


@pytest.fixture
def local_cluster():
    instance = LocalCluster(Path(tempfile.mkdtemp(prefix="auditwatch-cluster-test-")), port=_free_port(), fast=True)
    try:
        yield instance
    finally:
        instance.destroy()
    assert not instance.data_dir.exists()


def test_cluster_lifecycle(local_cluster):
    assert not local_cluster.is_running()
    local_cluster.down()  # stopping a cluster that never started is a no-op

    local_cluster.up()
    assert local_cluster.is_running()
    assert (local_cluster.pgdata / "PG_VERSION").exists()
    pid = (local_cluster.pgdata / "postmaster.pid").read_text().split()[0]
    local_cluster.up()  # idempotent: the same server keeps running
    assert (local_cluster.pgdata / "postmaster.pid").read_text().split()[0] == pid

    with psycopg.connect(local_cluster.url, autocommit=True) as conn:
        assert conn.execute("SELECT current_database(), current_user").fetchone() == ("auditwatch", "auditwatch")
        assert conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
        assert "timescaledb" in conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        assert conn.execute("SHOW fsync").fetchone()[0] == "off"  # fast=True
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == ""  # unix socket only
        conn.execute("CREATE EXTENSION timescaledb")
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('survives a restart')")

    local_cluster.down()
    assert not local_cluster.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(local_cluster.url, connect_timeout=2).close()
    local_cluster.down()  # already stopped: a no-op

    local_cluster.up()
    assert local_cluster.is_running()
    with psycopg.connect(local_cluster.url_for("postgres"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = 'auditwatch'").fetchone()[0] == 1
    with psycopg.connect(local_cluster.url) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("survives a restart",)]
        assert conn.execute("SELECT extname FROM pg_extension WHERE extname = 'timescaledb'").fetchone()


def test_a_broken_cluster_reports_what_failed(local_cluster):
    local_cluster.up()
    local_cluster.down()
    (local_cluster.pgdata / "PG_VERSION").write_text("not-a-version\n")
    with pytest.raises(DatabaseUnavailable, match=re.escape(str(local_cluster.log_file))):
        local_cluster.up()
