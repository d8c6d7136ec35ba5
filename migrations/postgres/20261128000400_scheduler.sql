-- Scheduled jobs: a lease per job, so each run happens on one replica, and
-- the notices already sent, so a crash neither repeats nor loses one.

CREATE TABLE job_leases (
    job         TEXT PRIMARY KEY,
    owner       TEXT,
    lease_until BIGINT NOT NULL
);

CREATE TABLE key_notices (
    key_id TEXT NOT NULL,
    -- What was noticed and for which deadline, e.g. expiring:7d:<expires_at>.
    notice TEXT NOT NULL,
    at     BIGINT NOT NULL,
    PRIMARY KEY (key_id, notice)
);

-- For a rotated key: end its grace period early once it has been idle this
-- long and its successor is in use.
ALTER TABLE keys ADD COLUMN grace_idle_ms BIGINT;

-- A key's own rotation policy; NULL follows the server's default.
ALTER TABLE keys ADD COLUMN rotation_policy JSONB;

-- Unused-key thresholds for one owner, overriding the server's.
CREATE TABLE owner_stale_policies (
    owner_id        TEXT PRIMARY KEY,
    flag_after_ms   BIGINT NOT NULL,
    disable_after_ms BIGINT,
    revoke_after_ms BIGINT,
    dry_run         BOOLEAN NOT NULL,
    updated_at      BIGINT NOT NULL
);
