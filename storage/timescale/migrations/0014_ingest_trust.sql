-- Ingest trust (issue 14 #3, #8, #9).
--
-- Event types only the platform writes are reserved: ingest refuses them, so no key can forge the
-- platform's records of reads, exports, keys, erasures, holds, archiving and retention (verify trusts
-- event_erased and events_expired records). config_change and user_login stay open: applications
-- send their own; the platform's are told apart by their reserved source and principal.
ALTER TABLE event_types ADD COLUMN reserved boolean NOT NULL DEFAULT false;
UPDATE event_types SET reserved = true
 WHERE event_type IN ('query_executed', 'export_requested', 'api_key_created', 'api_key_revoked',
                      'event_erased', 'events_expired', 'events_archived', 'legal_hold');

-- Applications' own reads of their data stores (the demo's traffic), now that query_executed is the
-- platform's record of reads of the audit log only.
INSERT INTO event_types (event_type, description, ocsf_class, builtin) VALUES
    ('data_query', 'An application read records from a data store', 'Datastore Activity [6005]', true)
ON CONFLICT (event_type) DO NOTHING;

-- R6 counts per sending key, not per event user: one key cannot spend another user's budget.
ALTER TABLE ingest_rate RENAME COLUMN user_id TO sender;
TRUNCATE ingest_rate;

-- False-positive feedback suppresses detection for at most 90 days (a day of slack for clocks).
-- Verdicts stored before this migration without an expiry, or with a longer one, are cut to that.
UPDATE anomaly_feedback SET until = created_at + interval '90 days'
 WHERE verdict = 'false_positive' AND (until IS NULL OR until > created_at + interval '90 days');
ALTER TABLE anomaly_feedback ADD CONSTRAINT anomaly_feedback_bounded
    CHECK (verdict <> 'false_positive' OR (until IS NOT NULL AND until <= created_at + interval '91 days'));
