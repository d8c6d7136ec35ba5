-- Usage limits held across replicas: owners as resources, credit balances
-- with the blocks replicas lease from them, and the shared buckets of named
-- rate limits. A balance's or a bucket's `subject` is `key:<pool key id>`
-- or `owner:<owner id>`.
CREATE TABLE owners (
    id         TEXT PRIMARY KEY,
    metadata   TEXT NOT NULL,
    -- The owner's named limits, as a JSON list.
    limits     TEXT NOT NULL,
    -- Whether the owner's keys spend the owner's credits.
    credits    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL
);
-- Replicas reload owners changed since their last read.
CREATE INDEX owners_updated ON owners (updated_at);

CREATE TABLE credit_balances (
    subject         TEXT PRIMARY KEY,
    -- Credits not leased to any replica.
    remaining       INTEGER NOT NULL CHECK (remaining >= 0),
    -- The refill: NULL kind for none; 'daily', 'monthly' (refill_day) or
    -- 'every' (refill_every_ms).
    refill_kind     TEXT,
    refill_amount   INTEGER,
    refill_day      INTEGER,
    refill_every_ms INTEGER,
    last_refill_at  INTEGER NOT NULL,
    low_at          INTEGER,
    -- Notices owed: 'low' or 'exhausted', written by the lease that crossed
    -- the line and sent (as audit events and webhooks) by the next sweep.
    notice_due      TEXT,
    -- Which notices were sent since the balance last rose above the line.
    low_sent        INTEGER NOT NULL DEFAULT 0,
    exhausted_sent  INTEGER NOT NULL DEFAULT 0,
    -- Credits of replicas that died holding them: counted as spent.
    forfeited       INTEGER NOT NULL DEFAULT 0,
    updated_at      INTEGER NOT NULL
);

-- What each replica holds of a balance, until `expires_at` unless renewed.
CREATE TABLE credit_leases (
    subject    TEXT NOT NULL,
    replica    TEXT NOT NULL,
    held       INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (subject, replica)
);
CREATE INDEX credit_leases_expiry ON credit_leases (expires_at);

CREATE TABLE rate_buckets (
    subject TEXT NOT NULL,
    name    TEXT NOT NULL,
    -- Millionths of a token, as of `at_ms`.
    tokens  INTEGER NOT NULL,
    at_ms   INTEGER NOT NULL,
    PRIMARY KEY (subject, name)
);

ALTER TABLE key_usage_hourly ADD COLUMN usage_exceeded INTEGER NOT NULL DEFAULT 0;
