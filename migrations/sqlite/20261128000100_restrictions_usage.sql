-- Per-key restrictions, last use, and hourly usage counters.

ALTER TABLE keys ADD COLUMN restrictions TEXT NOT NULL DEFAULT '{}';
ALTER TABLE keys ADD COLUMN last_used_at INTEGER;
ALTER TABLE keys ADD COLUMN last_client_ip TEXT;
CREATE INDEX keys_last_used_at ON keys (last_used_at);

-- One row per key and hour (start of the hour, unix ms). The usage flusher
-- adds to it; counts by verify code.
CREATE TABLE key_usage_hourly (
    key_id               TEXT NOT NULL,
    hour                 INTEGER NOT NULL,
    total                INTEGER NOT NULL DEFAULT 0,
    valid                INTEGER NOT NULL DEFAULT 0,
    revoked              INTEGER NOT NULL DEFAULT 0,
    expired              INTEGER NOT NULL DEFAULT 0,
    disabled             INTEGER NOT NULL DEFAULT 0,
    insufficient_scope   INTEGER NOT NULL DEFAULT 0,
    ip_not_allowed       INTEGER NOT NULL DEFAULT 0,
    referrer_not_allowed INTEGER NOT NULL DEFAULT 0,
    resource_not_allowed INTEGER NOT NULL DEFAULT 0,
    rate_limited         INTEGER NOT NULL DEFAULT 0,
    would_deny           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, hour)
);

-- Verify calls whose key is malformed or unknown: global, per hour, no
-- per-key state, so a flood of random keys cannot grow anything.
CREATE TABLE unknown_key_attempts (
    hour      INTEGER PRIMARY KEY,
    malformed INTEGER NOT NULL DEFAULT 0,
    not_found INTEGER NOT NULL DEFAULT 0
);
