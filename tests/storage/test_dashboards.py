"""Saved dashboards: ownership, read-only sharing, optimistic saves, names unique per owner."""

from __future__ import annotations

import uuid

import pytest

from storage.timescale import dashboards
from storage.timescale.dashboards import EVERYONE, DashboardConflict

DOC = {"version": 1, "name": "SOC", "widgets": [{"id": "a", "type": "kpi", "w": 2, "h": 1, "params": {}}]}


def test_create_get_and_list_own_and_shared(pool):
    mine = dashboards.create(pool, owner="apikey:alice", name="SOC", config=DOC)
    assert mine.version == 1 and mine.config == DOC and mine.shared_with == ()
    assert dashboards.get(pool, mine.dashboard_id) == mine
    assert dashboards.get(pool, uuid.uuid4()) is None
    team = dashboards.create(pool, owner="apikey:bob", name="Team", config=DOC, shared_with=("apikey:alice",))
    public = dashboards.create(pool, owner="apikey:carol", name="Public", config=DOC, shared_with=(EVERYONE,))
    dashboards.create(pool, owner="apikey:carol", name="Private", config=DOC)
    seen = dashboards.visible_to(pool, "apikey:alice")
    assert [d.name for d in seen][0] == "SOC"  # own first
    assert {d.name for d in seen} == {"SOC", "Team", "Public"}
    assert {d.name for d in dashboards.visible_to(pool, "apikey:dave")} == {"Public"}
    assert team.readable_by("apikey:alice") and not team.writable_by("apikey:alice")
    assert public.readable_by("anyone") and not mine.readable_by("apikey:bob")


def test_names_are_unique_per_owner_only(pool):
    dashboards.create(pool, owner="apikey:alice", name="SOC", config=DOC)
    dashboards.create(pool, owner="apikey:bob", name="SOC", config=DOC)
    with pytest.raises(DashboardConflict, match="already have a dashboard named 'SOC'"):
        dashboards.create(pool, owner="apikey:alice", name="SOC", config=DOC)


def test_save_bumps_the_version_and_refuses_stale_or_foreign_saves(pool):
    saved = dashboards.create(pool, owner="apikey:alice", name="SOC", config=DOC)
    changed = {**DOC, "widgets": []}
    second = dashboards.save(pool, saved.dashboard_id, owner="apikey:alice", version=1, config=changed,
                             shared_with=(EVERYONE,))
    assert second.version == 2 and second.config == changed and second.shared_with == (EVERYONE,)
    assert second.name == "SOC" and second.updated_at >= saved.updated_at
    with pytest.raises(DashboardConflict, match="saved elsewhere \\(version 2, you had version 1\\)"):
        dashboards.save(pool, saved.dashboard_id, owner="apikey:alice", version=1, name="Stale")
    with pytest.raises(DashboardConflict, match="no dashboard of yours"):
        dashboards.save(pool, saved.dashboard_id, owner="apikey:mallory", version=2, name="Mine now")
    dashboards.create(pool, owner="apikey:alice", name="Other", config=DOC)
    with pytest.raises(DashboardConflict, match="already have a dashboard named 'Other'"):
        dashboards.save(pool, saved.dashboard_id, owner="apikey:alice", version=2, name="Other")
    assert dashboards.get(pool, saved.dashboard_id).version == 2


def test_only_the_owner_deletes(pool):
    saved = dashboards.create(pool, owner="apikey:alice", name="SOC", config=DOC, shared_with=(EVERYONE,))
    assert dashboards.delete(pool, saved.dashboard_id, owner="apikey:bob") is None
    assert dashboards.delete(pool, saved.dashboard_id, owner="apikey:alice").name == "SOC"
    assert dashboards.get(pool, saved.dashboard_id) is None


def test_the_schema_refuses_what_the_api_would_never_store(conn):
    import psycopg

    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO dashboards (owner, name, config) VALUES ('a', '', '{}')")
