-- Per-key restrictions, last use, and hourly usage counters.

ALTER TABLE keys ADD COLUMN restrictions JSONB NOT NULL DEFAULT '{}';
ALTER TABLE keys ADD COLUMN last_used_at BIGINT;
ALTER TABLE keys ADD COLUMN last_client_ip TEXT;
CREATE INDEX keys_last_used_at ON keys (last_used_at);

-- One row per key and hour (start of the hour, unix ms). The usage flusher
-- adds to it; counts by verify code.
CREATE TABLE key_usage_hourly (
    key_id               TEXT NOT NULL,
    hour                 BIGINT NOT NULL,
    total                BIGINT NOT NULL DEFAULT 0,
    valid                BIGINT NOT NULL DEFAULT 0,
    revoked              BIGINT NOT NULL DEFAULT 0,
    expired              BIGINT NOT NULL DEFAULT 0,
    disabled             BIGINT NOT NULL DEFAULT 0,
    insufficient_scope   BIGINT NOT NULL DEFAULT 0,
    ip_not_allowed       BIGINT NOT NULL DEFAULT 0,
    referrer_not_allowed BIGINT NOT NULL DEFAULT 0,
    resource_not_allowed BIGINT NOT NULL DEFAULT 0,
    rate_limited         BIGINT NOT NULL DEFAULT 0,
    would_deny           BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, hour)
);

-- Verify calls whose key is malformed or unknown: global, per hour, no
-- per-key state, so a flood of random keys cannot grow anything.
CREATE TABLE unknown_key_attempts (
    hour      BIGINT PRIMARY KEY,
    malformed BIGINT NOT NULL DEFAULT 0,
    not_found BIGINT NOT NULL DEFAULT 0
);
