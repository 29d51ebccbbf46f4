-- Data subjects and sensitive fields (issue 17): GDPR erasure requests with four eyes, and the PHI token vault.
--
-- gdpr_erasure_steps is append-only: a request's state is its newest step, each step a new row written with
-- its self-audit record in one transaction (storage/timescale/gdpr.py). UNIQUE (request_id, step) makes each
-- step happen once, whoever races for it: two approvals, or two executions, of one request cannot both commit.
CREATE TABLE gdpr_erasure_steps (
    seq            bigserial   PRIMARY KEY,
    request_id     uuid        NOT NULL,
    step           text        NOT NULL CHECK (step IN ('requested', 'approved', 'executing', 'executed')),
    subject        text        NOT NULL CHECK (length(subject) BETWEEN 1 AND 256),
    lawful_basis   text        NOT NULL CHECK (length(lawful_basis) BETWEEN 1 AND 2000),
    actor          text        NOT NULL,   -- who took the step (the requester, the approver, the executor)
    at             timestamptz NOT NULL,
    note           text,
    certificate    jsonb,                  -- the signed erasure certificate, on the 'executed' step
    UNIQUE (request_id, step)
);
CREATE INDEX gdpr_erasure_steps_by_subject ON gdpr_erasure_steps (subject, at DESC);

-- Tokenised PHI (ingest/phi.py, R11): the token an event stores, and its value encrypted (AES-GCM, the token as
-- associated data) under a key kept outside the database. Readable in clear only through the audited reveal.
CREATE TABLE phi_vault (
    token       text        PRIMARY KEY CHECK (token ~ '^phi_[a-p]{32}$'),
    ciphertext  bytea       NOT NULL,      -- 12-byte nonce || AES-GCM ciphertext and tag
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Both are append-only for every role, owner included: corrections are new rows.
CREATE FUNCTION refuse_change_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused (record a new row instead)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$fn$;
CREATE TRIGGER gdpr_erasure_steps_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON gdpr_erasure_steps
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_append_only();
CREATE TRIGGER phi_vault_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON phi_vault
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change_append_only();

-- The platform's records of these actions (reserved: no producer may forge them).
INSERT INTO event_types (event_type, description, ocsf_class, class_uid, activity_id, builtin, reserved) VALUES
    ('gdpr_access_exported', 'A data subject access export (GDPR Art. 15) was produced', 'API Activity [6003]',
     6003, 2, true, true),
    ('gdpr_erasure_requested', 'A data subject erasure (GDPR Art. 17) was requested', 'API Activity [6003]',
     6003, 1, true, true),
    ('gdpr_erasure_approved', 'A second admin approved a data subject erasure', 'API Activity [6003]',
     6003, 3, true, true),
    ('gdpr_erasure_started', 'An approved data subject erasure began executing', 'API Activity [6003]',
     6003, 4, true, true),
    ('gdpr_erasure_executed', 'A data subject erasure finished; its signed certificate was issued',
     'API Activity [6003]', 6003, 4, true, true),
    ('phi_revealed', 'A tokenised PHI value was revealed', 'API Activity [6003]', 6003, 2, true, true)
ON CONFLICT (event_type) DO NOTHING;
