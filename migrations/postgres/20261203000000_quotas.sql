-- Usage limits held across replicas: owners as resources, credit balances
-- with the blocks replicas lease from them, and the shared buckets of named
-- rate limits. A balance's or a bucket's `subject` is `key:<pool key id>`
-- or `owner:<owner id>`.
CREATE TABLE owners (
    id         TEXT COLLATE "C" PRIMARY KEY,
    metadata   JSONB NOT NULL,
    -- The owner's named limits, as a JSON list.
    limits     JSONB NOT NULL,
    -- Whether the owner's keys spend the owner's credits.
    credits    BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version    BIGINT NOT NULL
);
-- Replicas reload owners changed since their last read.
CREATE INDEX owners_updated ON owners (updated_at);

CREATE TABLE credit_balances (
    subject         TEXT COLLATE "C" PRIMARY KEY,
    -- Credits not leased to any replica.
    remaining       BIGINT NOT NULL CHECK (remaining >= 0),
    -- The refill: NULL kind for none; 'daily', 'monthly' (refill_day) or
    -- 'every' (refill_every_ms).
    refill_kind     TEXT,
    refill_amount   BIGINT,
    refill_day      BIGINT,
    refill_every_ms BIGINT,
    last_refill_at  BIGINT NOT NULL,
    low_at          BIGINT,
    -- Notices owed: 'low' or 'exhausted', written by the lease that crossed
    -- the line and sent (as audit events and webhooks) by the next sweep.
    notice_due      TEXT,
    -- Which notices were sent since the balance last rose above the line.
    low_sent        BOOLEAN NOT NULL DEFAULT FALSE,
    exhausted_sent  BOOLEAN NOT NULL DEFAULT FALSE,
    -- Credits of replicas that died holding them: counted as spent.
    forfeited       BIGINT NOT NULL DEFAULT 0,
    updated_at      BIGINT NOT NULL
);

-- What each replica holds of a balance, until `expires_at` unless renewed.
CREATE TABLE credit_leases (
    subject    TEXT COLLATE "C" NOT NULL,
    replica    TEXT COLLATE "C" NOT NULL,
    held       BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (subject, replica)
);
CREATE INDEX credit_leases_expiry ON credit_leases (expires_at);

CREATE TABLE rate_buckets (
    subject TEXT COLLATE "C" NOT NULL,
    name    TEXT COLLATE "C" NOT NULL,
    -- Millionths of a token, as of `at_ms`.
    tokens  BIGINT NOT NULL,
    at_ms   BIGINT NOT NULL,
    PRIMARY KEY (subject, name)
);

ALTER TABLE key_usage_hourly ADD COLUMN usage_exceeded BIGINT NOT NULL DEFAULT 0;
