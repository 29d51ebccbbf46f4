-- The audit event hypertable, its catalogue tables and API keys.
-- No foreign keys from events to users, keys or types: deleting any of those must never
-- touch an event (the legacy schema's ON DELETE CASCADE let deleting a user erase their trail).

CREATE EXTENSION IF NOT EXISTS timescaledb;

CREATE TABLE event_types (
    event_type  text PRIMARY KEY CHECK (event_type ~ '^[a-z][a-z0-9_.]{0,63}$'),
    description text NOT NULL DEFAULT '',
    ocsf_class  text,
    builtin     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT 'migration'
);

INSERT INTO event_types (event_type, description, ocsf_class, builtin) VALUES
    ('user_login',        'A user signed in (or failed to)',             'Authentication [3002]', true),
    ('user_logout',       'A user signed out',                           'Authentication [3002]', true),
    ('password_change',   'A password was changed',                      'Account Change [3001]', true),
    ('permission_change', 'Roles or permissions were granted or revoked', 'User Access Management [3005]', true),
    ('data_export',       'Data left the system in bulk',                'Datastore Activity [6005]', true),
    ('file_upload',       'A file was uploaded',                         'File System Activity [1001]', true),
    ('file_download',     'A file was downloaded',                       'File System Activity [1001]', true),
    ('api_key_created',   'An API key was created',                      'Account Change [3001]', true),
    ('api_key_revoked',   'An API key was revoked',                      'Account Change [3001]', true),
    ('system_startup',    'A system started',                            'Device Config State [5002]', true),
    ('system_shutdown',   'A system stopped',                            'Device Config State [5002]', true),
    ('config_change',     'A configuration setting changed',             'Device Config State [5002]', true),
    ('query_executed',    'The audit log was read',                      'API Activity [6003]', true),
    ('export_requested',  'An export of the audit log was requested',    'API Activity [6003]', true),
    ('event_erased',      'A stored event was erased (lawful erasure)',  'API Activity [6003]', true);

CREATE TABLE users (
    user_id      text PRIMARY KEY CHECK (length(user_id) BETWEEN 1 AND 256),
    display_name text,
    email        text,
    department   text,
    kind         text NOT NULL DEFAULT 'human' CHECK (kind IN ('human', 'service', 'apikey')),
    registered_by text NOT NULL DEFAULT 'admin',
    created_at   timestamptz NOT NULL DEFAULT now(),
    disabled_at  timestamptz
);

CREATE TABLE audit_events (
    event_id       uuid        NOT NULL,
    "timestamp"    timestamptz NOT NULL,
    event_type     text        NOT NULL,
    user_id        text        NOT NULL,
    outcome        text        NOT NULL DEFAULT 'unknown' CHECK (outcome IN ('success', 'failure', 'unknown')),
    source         text,
    source_ip      inet,
    source_country text,
    source_asn     text,
    user_agent     text,
    resource_id    text,
    metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    received_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, "timestamp")
);

SELECT create_hypertable('audit_events', by_range('timestamp', INTERVAL '1 day'), create_default_indexes => false);

CREATE INDEX audit_events_time_idx       ON audit_events ("timestamp" DESC, event_id DESC);
CREATE INDEX audit_events_user_time_idx  ON audit_events (user_id, "timestamp" DESC);
CREATE INDEX audit_events_type_time_idx  ON audit_events (event_type, "timestamp" DESC);
CREATE INDEX audit_events_ip_time_idx    ON audit_events (source_ip, "timestamp" DESC) WHERE source_ip IS NOT NULL;
CREATE INDEX audit_events_metadata_idx   ON audit_events USING gin (metadata jsonb_path_ops);

CREATE TABLE api_keys (
    key_id      uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    role        text NOT NULL CHECK (role IN ('viewer', 'auditor', 'admin', 'system')),
    secret_hash text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    revoked_at  timestamptz,
    revoked_by  text
);

-- R6: per-user, per-minute counters shared by every server process. UNLOGGED: a crash
-- forgets at most the current minute's counts, which is the right trade for a rate limit.
CREATE UNLOGGED TABLE ingest_rate (
    user_id      text        NOT NULL,
    window_start timestamptz NOT NULL,
    events       integer     NOT NULL,
    PRIMARY KEY (user_id, window_start)
);

-- Settings an admin may change at run time (retention among them), each change audited as config_change.
CREATE TABLE settings (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);
