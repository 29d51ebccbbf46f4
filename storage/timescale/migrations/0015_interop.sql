-- OCSF 1.x identifiers in the event-type catalogue (issue 15): the class, the activity and their
-- type_uid (class_uid * 100 + activity_id), so that an export or a forwarder can write OCSF events and a
-- Sigma rule can name our events by their OCSF class. ocsf_class keeps the caption "Name [class_uid]".
-- A type added at run time without ids exports as the Base Event (class 0) with activity 99, Other.
ALTER TABLE event_types
    ADD COLUMN class_uid   integer,
    ADD COLUMN activity_id integer,
    ADD COLUMN type_uid    bigint GENERATED ALWAYS AS (class_uid::bigint * 100 + activity_id) STORED,
    ADD CONSTRAINT event_types_ocsf_ids CHECK ((class_uid IS NULL) = (activity_id IS NULL)),
    ADD CONSTRAINT event_types_ocsf_activity CHECK (activity_id IS NULL OR activity_id BETWEEN 0 AND 99),
    ADD CONSTRAINT event_types_ocsf_class CHECK (class_uid IS NULL OR class_uid BETWEEN 0 AND 99999);

UPDATE event_types AS t SET class_uid = v.class_uid, activity_id = v.activity_id, ocsf_class = v.ocsf_class
  FROM (VALUES
    ('user_login',            3002,  1, 'Authentication [3002]'),          -- Logon
    ('user_logout',           3002,  2, 'Authentication [3002]'),          -- Logoff
    ('ssh_invalid_user',      3002,  1, 'Authentication [3002]'),          -- a Logon for no such account
    ('auth_failure',          3002,  1, 'Authentication [3002]'),
    ('ssh_connection_closed', 3002, 99, 'Authentication [3002]'),          -- Other: gone before authenticating
    ('password_change',       3001,  3, 'Account Change [3001]'),          -- Password Change
    ('api_key_created',       3001,  1, 'Account Change [3001]'),          -- Create
    ('api_key_revoked',       3001,  5, 'Account Change [3001]'),          -- Disable
    ('sudo',                  3003,  1, 'Authorize Session [3003]'),       -- Assign Privileges
    ('su',                    3003,  1, 'Authorize Session [3003]'),
    ('permission_change',     3005, 99, 'User Access Management [3005]'), -- Other: grants and revokes alike
    ('file_upload',           1001,  1, 'File System Activity [1001]'),    -- Create
    ('file_download',         1001,  2, 'File System Activity [1001]'),    -- Read
    ('ssh_break_in_attempt',  4001, 99, 'Network Activity [4001]'),
    ('system_startup',        5002,  1, 'Device Config State [5002]'),     -- Log
    ('system_shutdown',       5002,  1, 'Device Config State [5002]'),
    ('config_change',         5002,  1, 'Device Config State [5002]'),
    ('data_export',           6005,  1, 'Datastore Activity [6005]'),      -- Read
    ('data_query',            6005,  4, 'Datastore Activity [6005]'),      -- Query
    ('query_executed',        6003,  2, 'API Activity [6003]'),            -- Read
    ('export_requested',      6003,  2, 'API Activity [6003]'),
    ('event_erased',          6003,  4, 'API Activity [6003]'),            -- Delete
    ('events_expired',        6003,  4, 'API Activity [6003]'),
    ('events_archived',       6003,  3, 'API Activity [6003]'),            -- Update
    ('legal_hold',            6003,  3, 'API Activity [6003]'),
    ('syslog_message',           0, 99, 'Base Event [0]')
  ) AS v(event_type, class_uid, activity_id, ocsf_class)
 WHERE t.event_type = v.event_type AND t.builtin;

-- The forwarder (forwarder/): how far each destination has been sent, as a position in the integrity
-- chain. Chain positions are assigned under the head lock at the end of each writer transaction, so
-- the committed positions are always a gapless prefix: a cursor on them never skips a batch that
-- commits late (batch_seq, taken earlier, would). The events themselves are the outbox.
CREATE TABLE forwarder_cursors (
    destination  text        PRIMARY KEY CHECK (destination ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    chain_pos    bigint      NOT NULL DEFAULT 0,
    forwarded    bigint      NOT NULL DEFAULT 0,   -- events sent so far
    failures     integer     NOT NULL DEFAULT 0,   -- consecutive failed attempts (0 after a success)
    last_error   text,
    retry_at     timestamptz,                      -- no attempt before this (backoff)
    updated_at   timestamptz NOT NULL DEFAULT now()
);
