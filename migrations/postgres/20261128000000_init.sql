-- keysmith schema, PostgreSQL. Times are unix milliseconds (BIGINT) in both
-- backends so that the store's SQL is shared.

CREATE TABLE keys (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    key_hash            BYTEA NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    owner_id            TEXT NOT NULL,
    name                TEXT NOT NULL,
    key_type            TEXT NOT NULL CHECK (key_type IN ('secret', 'publishable')),
    environment         TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    scopes              JSONB NOT NULL,
    metadata            JSONB NOT NULL,
    hint                TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    expires_at          BIGINT,
    revoked_at          BIGINT,
    revoke_reason       TEXT,
    disabled_at         BIGINT,
    disable_reason      TEXT,
    rotated_from        TEXT REFERENCES keys (id),
    rotated_to          TEXT REFERENCES keys (id),
    version             BIGINT NOT NULL,
    request_id          TEXT UNIQUE,
    request_fingerprint BYTEA
);
CREATE INDEX keys_owner_id ON keys (owner_id, id);

-- Append-only record of who did what.
CREATE TABLE audit_events (
    id         BIGSERIAL PRIMARY KEY,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    key_id     TEXT,
    owner_id   TEXT,
    reason     TEXT,
    changes    JSONB NOT NULL,
    request_id TEXT
);
CREATE INDEX audit_events_key_id ON audit_events (key_id, id);
CREATE INDEX audit_events_owner_id ON audit_events (owner_id, id);

-- One row per change to what Verify answers, numbered without gaps in commit
-- order: the sequence comes from change_seq, whose row lock is held until
-- the writing transaction commits.
CREATE TABLE key_changes (
    seq         BIGINT PRIMARY KEY,
    key_id      TEXT NOT NULL,
    key_hash    BYTEA NOT NULL,
    kind        TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    environment TEXT NOT NULL,
    expires_at  BIGINT,
    at          BIGINT NOT NULL
);
CREATE INDEX key_changes_at ON key_changes (at);

CREATE TABLE change_seq (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last BIGINT NOT NULL
);
INSERT INTO change_seq (id, last) VALUES (1, 0);

-- Retention: rows up to this sequence have been deleted, so a cursor below
-- it cannot be resumed.
CREATE TABLE change_log_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_through BIGINT NOT NULL
);
INSERT INTO change_log_state (id, pruned_through) VALUES (1, 0);

-- Each running replica's progress through the change log, for staleness
-- reports and revocation receipts.
CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    applied_seq  BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    started_at   BIGINT NOT NULL
);

CREATE TABLE admin_tokens (
    id         TEXT PRIMARY KEY,
    token_hash BYTEA NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
