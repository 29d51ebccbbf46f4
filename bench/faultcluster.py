"""A private TimescaleDB cluster that a test may stop and start without touching the shared test server."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from bench.harness import free_port
from storage.timescale import migrations, roles
from storage.timescale.cluster import DATABASE, LocalCluster


@contextmanager
def private_cluster(*, fast: bool = True) -> Iterator[LocalCluster]:
    """A migrated cluster of its own (database ``auditwatch``, app role made), destroyed afterwards."""
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="auditwatch-faults-")), port=free_port(), fast=fast)
    cluster.up()
    try:
        with psycopg.connect(cluster.url_for(DATABASE)) as conn:
            migrations.migrate(conn)
            roles.apply(conn)
        yield cluster
    finally:
        cluster.destroy()


def restart(cluster: LocalCluster) -> None:
    """Stop the server (fast shutdown: sessions are cut) and start it again."""
    cluster.down()
    cluster.up(install=False)
