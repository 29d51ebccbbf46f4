"""Fixtures shared by the API tests: events to send, apps with changed settings, and a shared app.

Most checks here are cheap requests against one app; the ``shared_*`` fixtures give each test
module one fresh database and app, so a parametrized matrix does not pay for a database per case.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from click.testing import CliRunner

from auditwatch import settings as settings_mod
from auditwatch.app import create_app
from auditwatch.cli.main import main
from auditwatch.services import Services
from storage.auth import Role
from storage.timescale import catalog
from tests.conftest import fresh_database, opened_services


def event(user_id: str = "alice", *, event_type: str = "user_login", at: datetime | None = None,
          **fields: Any) -> dict[str, Any]:
    """One valid event as a client sends it (timestamp now unless ``at``)."""
    return {
        "event_id": str(uuid.uuid4()),
        "timestamp": (at or datetime.now(UTC)).isoformat(),
        "event_type": event_type,
        "user_id": user_id,
        **fields,
    }


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


T = TypeVar("T")


def in_one_minute(attempt: Callable[[str], T], *, needs: float = 0.0) -> T:
    """Run ``attempt(fresh_user_id)`` so that it falls within one clock minute.

    R6 counts each sending key's events per calendar minute; a run that straddles a minute boundary
    is repeated with a fresh user (make the key inside ``attempt`` too), so rate-limit assertions are
    exact, not flaky. ``needs``: the seconds an attempt may take; with fewer left in this minute, it
    starts at the next one.
    """
    for _ in range(3):
        now = datetime.now(UTC)
        left = 60 - now.second - now.microsecond / 1e6
        if left < needs:
            time.sleep(left + 0.05)
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        result = attempt(f"rl-{uuid.uuid4().hex[:12]}")
        if datetime.now(UTC).replace(second=0, microsecond=0) == minute:
            return result
    raise AssertionError("three attempts each straddled a minute boundary")


def error_of(response) -> dict[str, Any]:
    """The JSON error body, checked to be exactly {code, message, field}."""
    assert response.mimetype == "application/json", response.data[:200]
    body = response.get_json()
    assert set(body) == {"code", "message", "field"}, body
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["message"], str) and body["message"]
    assert body["field"] is None or isinstance(body["field"], str)
    return body


@pytest.fixture
def app_with(settings) -> Iterator[Callable[..., Any]]:
    """A test app with changed settings (and its own Services), on the test's database."""
    opened: list[Services] = []

    def make(**changes: Any):
        changed = settings.replace(**changes)
        services = Services.open(changed)
        opened.append(services)
        flask_app = create_app(changed, services=services)
        flask_app.testing = True
        return flask_app

    yield make
    for services in opened:
        services.close()


# -- one database and app per test module -----------------------------------------------------------

@pytest.fixture(scope="module")
def shared_db_url(server_url: str, template_db: str) -> Iterator[str]:
    with fresh_database(server_url, template_db) as url:
        yield url


@pytest.fixture(scope="module")
def shared_settings(shared_db_url: str, tmp_path_factory: pytest.TempPathFactory):
    data_dir: Path = tmp_path_factory.mktemp("data")
    return settings_mod.load(config_file=None, environ={}, overrides={
        "database_url": shared_db_url, "data_dir": str(data_dir), "pool_min": 1, "pool_max": 8,
    })


@pytest.fixture(scope="module")
def shared_services(shared_settings) -> Iterator[Services]:
    with opened_services(shared_settings) as svc:
        yield svc


@pytest.fixture(scope="module")
def shared_app(shared_settings, shared_services):
    flask_app = create_app(shared_settings, services=shared_services)
    flask_app.testing = True
    return flask_app


@pytest.fixture(scope="module")
def shared_client(shared_app):
    return shared_app.test_client()


@pytest.fixture(scope="module")
def role_keys(shared_services) -> dict[Role, dict[str, str]]:
    """An Authorization header for each role, on the shared database."""
    headers = {}
    for role in Role:
        _, secret = catalog.create_key(shared_services.pool, f"shared-{role.value}", role, "tests")
        headers[role] = {"Authorization": f"Bearer {secret}"}
    return headers


@pytest.fixture(scope="module")
def shared_conn(shared_db_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(shared_db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def run(db_url, tmp_path, monkeypatch):
    """Invoke the CLI against the test database, with a clean environment and cwd (no keys configured)."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("AUDITWATCH_"):
            monkeypatch.delenv(name)
    env = {"AUDITWATCH_DATABASE_URL": db_url, "AUDITWATCH_DATA_DIR": str(tmp_path / "data")}

    def invoke(*args: str, input: str | None = None):
        return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)

    invoke.env = env
    return invoke
