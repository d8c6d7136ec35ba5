-- Keys that every replica of one installation must share, made once by the
-- first server to start (from the OS's CSPRNG) and read by every other.
-- `page_token`: the HMAC key that seals list page tokens to their filter.
-- Replacing a row invalidates the tokens it sealed, nothing else.
CREATE TABLE installation_secrets (
    name       TEXT PRIMARY KEY,
    secret     BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
