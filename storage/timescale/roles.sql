-- Least-privilege database roles for Auditwatch (issue 14 #2): append-only enforced by the database.
--
-- Run as the OWNER role, the one that runs `auditwatch migrate` and owns every table, after each migrate
-- (re-running is harmless). `auditwatch db up` / `auditwatch up` do it on the embedded database.
-- On an external server:
--     SET auditwatch.app_role = 'auditwatch_app';        -- optional; this is the default name
--     \i storage/timescale/roles.sql
--     ALTER ROLE auditwatch_app PASSWORD '...';          -- or your server's authentication of choice
-- then point the API and writer (AUDITWATCH_DATABASE_URL of `auditwatch serve`) at the app role, and keep
-- the owner's URL for `migrate`, the worker (archiving, retention, checkpoints) and `verify`.
--
-- The app role (API, ingest writer, bus writer):
--   * reads every table;
--   * may INSERT into audit_events, never UPDATE or DELETE it (SQLSTATE 42501);
--   * writes the integrity tables only through SECURITY DEFINER functions: integrity_seal and integrity_link
--     (seal a batch in the write transaction, link sealed batches into the chain after it), integrity_append
--     (both at once)
--     and integrity_erase / integrity_erase_archived (lawful erasure of hot rows / of archived rows, whose
--     sealed event_erased record the database requires at commit);
--   * moves a sender's last-seen time forward only through source_seen (no UPDATE or DELETE of
--     source_last_seen: a silent sender cannot be made to look alive, migration 0022);
--   * cannot record a removal (integrity_record_removal is the owner's) nor create objects in the schema;
--   * changes the platform's own tables (keys, users, settings, alerts, dashboards ...) normally.
-- The owner keeps everything else: migrations, drop_chunks (archiving), retention, checkpoint signing.
DO $roles$
DECLARE
    app text := coalesce(nullif(pg_catalog.current_setting('auditwatch.app_role', true), ''), 'auditwatch_app');
    schema text := pg_catalog.current_schema();
    t record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = app) THEN
        EXECUTE pg_catalog.format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION', app);
    END IF;
    EXECUTE pg_catalog.format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', pg_catalog.current_database(), app);
    EXECUTE pg_catalog.format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', schema);
    EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO %I', schema, app);
    EXECUTE pg_catalog.format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', schema, app);
    EXECUTE pg_catalog.format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', schema, app);
    FOR t IN SELECT c.relname FROM pg_catalog.pg_class c
              WHERE c.relnamespace = schema::regnamespace AND c.relkind IN ('r', 'p')
                AND c.relname NOT IN ('audit_events', 'schema_migrations', 'source_last_seen')
                AND c.relname NOT LIKE 'integrity\_%'
    LOOP
        EXECUTE pg_catalog.format('GRANT INSERT, UPDATE, DELETE ON %I.%I TO %I', schema, t.relname, app);
    END LOOP;
    EXECUTE pg_catalog.format('GRANT INSERT ON %I.audit_events TO %I', schema, app);
    EXECUTE pg_catalog.format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', schema, app);
    EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %I.integrity_append(bigint, text, integer, bytea, '
                              'timestamptz, timestamptz), %I.integrity_erase(uuid, bytea[], uuid, text, timestamptz), '
                              '%I.integrity_erase_archived(uuid, bigint[], timestamptz[], bytea[], uuid, text, '
                              'timestamptz, text), %I.integrity_seal(bigint, integer, bytea, timestamptz, '
                              'timestamptz), %I.integrity_link(boolean), %I.source_seen(text[], timestamptz[]) TO %I',
                              schema, schema, schema, schema, schema, schema, app);
    -- Not even a stray default grant: only the owner records removals.
    EXECUTE pg_catalog.format('REVOKE EXECUTE ON FUNCTION %I.integrity_record_removal(timestamptz, timestamptz, '
                              'text, bigint, text, text, uuid, timestamptz) FROM %I', schema, app);
END
$roles$;
