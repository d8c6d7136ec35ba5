-- Leak response: what each keyspace does with a key found in public, and
-- the signed scanner deliveries already received (replays are refused).
ALTER TABLE keyspaces ADD COLUMN leak_response TEXT NOT NULL DEFAULT '{}';

CREATE TABLE scan_receipts (
    -- Hex SHA-256 of the delivery's body, recorded once it was applied.
    digest      TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL
);
CREATE INDEX scan_receipts_received_at ON scan_receipts (received_at);
