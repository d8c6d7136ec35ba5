-- keysmith schema, SQLite. Mirrors migrations/postgres; times are unix
-- milliseconds, JSON columns are TEXT.

CREATE TABLE keys (
    id                  TEXT PRIMARY KEY,
    key_hash            BLOB NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    owner_id            TEXT NOT NULL,
    name                TEXT NOT NULL,
    key_type            TEXT NOT NULL CHECK (key_type IN ('secret', 'publishable')),
    environment         TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    scopes              TEXT NOT NULL,
    metadata            TEXT NOT NULL,
    hint                TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    expires_at          INTEGER,
    revoked_at          INTEGER,
    revoke_reason       TEXT,
    disabled_at         INTEGER,
    disable_reason      TEXT,
    rotated_from        TEXT REFERENCES keys (id),
    rotated_to          TEXT REFERENCES keys (id),
    version             INTEGER NOT NULL,
    request_id          TEXT UNIQUE,
    request_fingerprint BLOB
);
CREATE INDEX keys_owner_id ON keys (owner_id, id);

CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    key_id     TEXT,
    owner_id   TEXT,
    reason     TEXT,
    changes    TEXT NOT NULL,
    request_id TEXT
);
CREATE INDEX audit_events_key_id ON audit_events (key_id, id);
CREATE INDEX audit_events_owner_id ON audit_events (owner_id, id);

CREATE TABLE key_changes (
    seq         INTEGER PRIMARY KEY,
    key_id      TEXT NOT NULL,
    key_hash    BLOB NOT NULL,
    kind        TEXT NOT NULL,
    owner_id    TEXT NOT NULL,
    environment TEXT NOT NULL,
    expires_at  INTEGER,
    at          INTEGER NOT NULL
);
CREATE INDEX key_changes_at ON key_changes (at);

CREATE TABLE change_seq (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    last INTEGER NOT NULL
);
INSERT INTO change_seq (id, last) VALUES (1, 0);

-- Retention: rows up to this sequence have been deleted, so a cursor below
-- it cannot be resumed.
CREATE TABLE change_log_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_through INTEGER NOT NULL
);
INSERT INTO change_log_state (id, pruned_through) VALUES (1, 0);

-- Each running replica's progress through the change log, for staleness
-- reports and revocation receipts.
CREATE TABLE replicas (
    id           TEXT PRIMARY KEY,
    applied_seq  INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    started_at   INTEGER NOT NULL
);

CREATE TABLE admin_tokens (
    id         TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
