-- Saved dashboards: one row per user-built dashboard, its layout as a versioned JSON document
-- (the same shape as its YAML export). Owners edit; the principals in shared_with (or everyone,
-- with '*') may open it read-only. Changes are audited as config_change events by the caller.
CREATE TABLE dashboards (
    dashboard_id uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    owner        text        NOT NULL CHECK (length(owner) BETWEEN 1 AND 256),
    name         text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    config       jsonb       NOT NULL,
    shared_with  text[]      NOT NULL DEFAULT '{}',
    version      integer     NOT NULL DEFAULT 1,  -- bumped on each save; a stale save is refused
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner, name)
);

CREATE INDEX dashboards_owner_idx  ON dashboards (owner, updated_at DESC);
CREATE INDEX dashboards_shared_idx ON dashboards USING gin (shared_with);
