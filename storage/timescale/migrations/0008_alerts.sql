-- Alerting state (alerts/): alerts and their history, silences, the notification log per group,
-- the outbox of notifications and every delivery attempt. Rules themselves are YAML files.
-- Everything the lifecycle needs (cooldowns, pending timers, acknowledgements, what each receiver
-- was told) lives here, so it survives restarts and holds for any number of entities.

-- One row per fingerprint (rule id + group-by values); it moves pending -> firing -> resolved and
-- back to pending when the condition returns.
CREATE TABLE alerts (
    fingerprint        text        PRIMARY KEY,
    rule_id            text        NOT NULL,
    title              text        NOT NULL,
    severity           text        NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    state              text        NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    labels             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    group_values       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    started_at         timestamptz NOT NULL,          -- when this episode became pending
    firing_at          timestamptz,                   -- when this episode started firing
    updated_at         timestamptz NOT NULL,
    resolved_at        timestamptz,
    inactive_since     timestamptz,                   -- condition false since (the cooldown clock)
    value              bigint      NOT NULL DEFAULT 0, -- the last observed count
    count              bigint      NOT NULL DEFAULT 0, -- the highest count seen in this episode
    detail             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    flapping           boolean     NOT NULL DEFAULT false,
    acknowledged_by    text,
    acknowledged_at    timestamptz,
    acknowledged_until timestamptz,                   -- NULL with acknowledged_by set: until resolved
    ack_comment        text,
    runbook_url        text
);
CREATE INDEX alerts_state_idx ON alerts (state, updated_at DESC);
CREATE INDEX alerts_rule_idx ON alerts (rule_id, state);

-- Every state change of every alert (append-only).
CREATE TABLE alert_history (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    fingerprint text        NOT NULL,
    rule_id     text        NOT NULL,
    at          timestamptz NOT NULL,
    from_state  text,
    to_state    text        NOT NULL,
    value       bigint      NOT NULL DEFAULT 0,
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX alert_history_fp_idx ON alert_history (fingerprint, at DESC);
CREATE INDEX alert_history_at_idx ON alert_history (at DESC);

CREATE TABLE alert_silences (
    silence_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    matchers   jsonb       NOT NULL CHECK (jsonb_typeof(matchers) = 'object' AND matchers <> '{}'::jsonb),
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL CHECK (ends_at > starts_at),
    created_by text        NOT NULL,
    comment    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expired_by text,
    expired_at timestamptz
);
CREATE INDEX alert_silences_active_idx ON alert_silences (ends_at) WHERE expired_at IS NULL;

-- The notification log (Alertmanager's nflog): per receiver and group, which fingerprints the
-- receiver was last told are firing, and when. The dedup stage compares against it.
CREATE TABLE alert_groups (
    receiver     text        NOT NULL,
    group_key    text        NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_sent_at timestamptz,
    firing       jsonb       NOT NULL DEFAULT '[]'::jsonb,  -- fingerprints notified as firing
    acked        jsonb       NOT NULL DEFAULT '[]'::jsonb,  -- fingerprints notified as acknowledged
    PRIMARY KEY (receiver, group_key)
);

-- The outbox: written in the same transaction as the notification log, delivered at least once
-- by the dispatcher, in order per (receiver, group_key).
CREATE TABLE alert_notifications (
    notification_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    receiver        text        NOT NULL,
    group_key       text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('firing', 'resolved', 'acknowledged')),
    payload         jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    delivered_at    timestamptz,
    last_error      text
);
CREATE INDEX alert_notifications_due_idx ON alert_notifications (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX alert_notifications_group_idx ON alert_notifications (receiver, group_key, notification_id);

CREATE TABLE alert_notification_attempts (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id bigint      NOT NULL,
    at              timestamptz NOT NULL,
    outcome         text        NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed', 'confirmed')),
    status_code     integer,
    error           text,
    retry_after     double precision
);
CREATE INDEX alert_attempts_notification_idx ON alert_notification_attempts (notification_id, at);

-- The evaluator's watermark: the last time it ran, per rule.
CREATE TABLE alert_rule_runs (
    rule_id     text        PRIMARY KEY,
    last_run_at timestamptz NOT NULL,
    last_error  text
);
