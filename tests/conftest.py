"""Test fixtures: one real TimescaleDB for the session, a fresh database per test.

The server is the project-local cluster machinery itself (in a temporary directory, with
fsync off for speed), unless AUDITWATCH_TEST_DATABASE_URL names an existing server on
which the tests may create and drop databases.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest
import requests
from psycopg import sql
from psycopg_pool import ConnectionPool

from auditwatch import settings as settings_mod
from auditwatch.app import create_app
from auditwatch.services import Services
from storage.auth import Role
from storage.timescale import catalog, db, migrations, roles
from storage.timescale.cluster import LocalCluster

ROOT = Path(__file__).resolve().parents[1]
_counter = itertools.count()


def shared_data() -> Path:
    """The project's shared real data (../shared/data beside the checkout; a fresh clone elsewhere
    finds it through AUDITWATCH_SHARED_DATA or the machine's /work/shared/data)."""
    root = Path(__file__).resolve().parents[1]
    for candidate in (os.environ.get("AUDITWATCH_SHARED_DATA"), root.parent / "shared" / "data",
                      root.parent.parent / "shared" / "data", "/work/shared/data"):
        if candidate and (Path(candidate) / "loghub").is_dir():
            return Path(candidate)
    raise FileNotFoundError("../shared/data is missing; set AUDITWATCH_SHARED_DATA to the shared data directory")


@pytest.fixture(autouse=True)
def _no_bus_client_left_open() -> Iterator[None]:
    """A test that leaves a BusClient open leaves its loop thread reconnecting for the rest of the session; on
    CPython 3.11 that thread's logging raced the main thread's ast.parse (SystemError in unrelated tests)."""
    before = {t.ident for t in threading.enumerate() if t.name == "nats-client"}
    yield
    left = [t for t in threading.enumerate() if t.name == "nats-client" and t.ident not in before and t.is_alive()]
    for thread in left:
        thread.join(5)  # close() stops the loop; the thread ends a moment later
    assert not [t for t in left if t.is_alive()], "a BusClient was left open: close() it (or Services.close())"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _url_with_db(url: str, dbname: str) -> str:
    """The same server, another database, as a postgresql:// URL (the form settings take)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    info.pop("dbname", None)
    user = quote(str(info.pop("user", "")), safe="")
    password = info.pop("password", None)
    auth = f"{user}:{quote(str(password), safe='')}@" if password else (f"{user}@" if user else "")
    query = urlencode({k: str(v) for k, v in info.items()})
    return f"postgresql://{auth}/{quote(dbname, safe='')}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def session_cluster() -> Iterator[LocalCluster | None]:
    """The session's local cluster; None when AUDITWATCH_TEST_DATABASE_URL names an external server."""
    if os.environ.get("AUDITWATCH_TEST_DATABASE_URL"):
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="auditwatch-test-"))
    cluster = LocalCluster(root, port=free_port(), fast=True)
    cluster.up()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def server_url(session_cluster: LocalCluster | None) -> str:
    """A maintenance URL (database ``postgres``) on a server with TimescaleDB."""
    if session_cluster is None:
        return _url_with_db(os.environ["AUDITWATCH_TEST_DATABASE_URL"], "postgres")
    return session_cluster.url_for("postgres")


@pytest.fixture(scope="session")
def template_db(server_url: str) -> str:
    """A migrated database that each test's database is copied from."""
    name = f"aw_template_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(_url_with_db(server_url, name)) as conn:
        migrations.migrate(conn)
    with psycopg.connect(server_url, autocommit=True) as conn:
        # No session (TimescaleDB's background scheduler included) may hold the template open.
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false IS_TEMPLATE true").format(sql.Identifier(name)))
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    return name


def _create_from_template(server_url: str, template: str) -> str:
    name = f"aw_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        for attempt in range(50):
            try:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
                break
            except psycopg.errors.ObjectInUse:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                             (template,))
                time.sleep(0.05 * (attempt + 1))
        else:
            raise RuntimeError(f"could not copy {template}: it stays in use")
    return name


def _drop(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def fresh_database(server_url: str, template: str) -> Iterator[str]:
    """A migrated database copied from the template, dropped afterwards; yields its URL."""
    name = _create_from_template(server_url, template)
    try:
        yield _url_with_db(server_url, name)
    finally:
        _drop(server_url, name)


@contextmanager
def opened_services(settings) -> Iterator[Services]:
    svc = Services.open(settings)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    with fresh_database(server_url, template_db) as url:
        yield url


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A fresh database with nothing in it (for migration tests)."""
    name = f"aw_empty_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _url_with_db(server_url, name)
    finally:
        _drop(server_url, name)


@pytest.fixture
def pool(db_url: str) -> Iterator[ConnectionPool]:
    """A connection pool on this test's fresh database."""
    connections = db.open_pool(db_url, min_size=1, max_size=8, name="tests")
    try:
        yield connections
    finally:
        connections.close()


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def app_role_url(db_url: str, conn: psycopg.Connection) -> Iterator[str]:
    """The test database as roles.sql's least-privilege application role (a name of this test's own: roles are
    cluster-wide); the role is dropped afterwards."""
    name = f"aw_app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url) as owner:
        roles.apply(owner, app_role=name)
    info = psycopg.conninfo.conninfo_to_dict(db_url)
    info["user"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**info)
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def app_pool(app_role_url: str) -> Iterator[ConnectionPool]:
    pool = db.open_pool(app_role_url, min_size=1, max_size=4, name="app")
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def settings(db_url: str, tmp_path: Path):
    """Test settings: defaults, then the test database; the environment is ignored."""
    return settings_mod.load(config_file=None, environ={}, overrides={
        "database_url": db_url, "data_dir": str(tmp_path / "data"), "pool_min": 1, "pool_max": 8,
    })


@pytest.fixture
def services(settings) -> Iterator[Services]:
    with opened_services(settings) as svc:
        yield svc


@pytest.fixture
def app(settings, services):
    flask_app = create_app(settings, services=services)
    flask_app.testing = True
    return flask_app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_key(services):
    """Create a key of a role; returns the Authorization header for it."""

    def make(role: Role | str, name: str | None = None) -> dict[str, str]:
        role = Role(role)
        _, secret = catalog.create_key(services.pool, name or f"{role.value}-{next(_counter)}", role, "tests")
        return {"Authorization": f"Bearer {secret}"}

    return make


@pytest.fixture
def users(services):
    """Register users (R4) and return their ids."""

    def register(*user_ids: str) -> tuple[str, ...]:
        catalog.register_users(services.pool, [{"user_id": u} for u in user_ids], "tests")
        return user_ids

    return register


class LiveServer:
    def __init__(self, url: str, process: subprocess.Popen, log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_server(db_url: str, tmp_path: Path, **env_overrides: str) -> LiveServer:
    """``auditwatch serve`` under gunicorn as a real subprocess on a free port."""
    port = free_port()
    env = {**os.environ, "AUDITWATCH_DATABASE_URL": db_url, "AUDITWATCH_PORT": str(port),
           "AUDITWATCH_DATA_DIR": str(tmp_path / "data"), "AUDITWATCH_WORKERS": "2", **env_overrides}
    env.pop("AUDITWATCH_CONFIG", None)
    log = tmp_path / f"server-{port}.log"
    process = subprocess.Popen([sys.executable, "-m", "auditwatch.cli", "serve"], env=env, cwd=tmp_path,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    # Generous: two servers importing Dash side by side on a loaded 2-core machine took over a minute.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return LiveServer(url, process, log)
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {log.read_text()}")


@pytest.fixture
def live_server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(db_url, tmp_path)
    try:
        yield server
    finally:
        server.stop()
