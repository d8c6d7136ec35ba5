-- Admin tokens become resources with limited power: permissions from a fixed
-- catalogue (a JSON array of names), optional limits to some keyspaces and
-- owners (JSON arrays; NULL means every one), an expiry, the last use (as
-- flushed in batches, never written per call), and who minted them.
--
-- Tokens minted before this migration could do everything; they keep every
-- permission. The column's default is empty, so a row written by hand, or
-- by an older replica during a rolling upgrade, can do nothing.
ALTER TABLE admin_tokens ADD COLUMN permissions TEXT NOT NULL DEFAULT '[]';
UPDATE admin_tokens SET permissions = '["keys.read", "keys.write", "keys.revoke",
    "keyspaces.read", "keyspaces.manage", "webhooks.read", "webhooks.manage", "audit.read",
    "usage.read", "policies.manage", "replicas.read", "tokens.manage", "verify", "watch"]';
ALTER TABLE admin_tokens ADD COLUMN keyspaces TEXT;
ALTER TABLE admin_tokens ADD COLUMN owners TEXT;
ALTER TABLE admin_tokens ADD COLUMN expires_at INTEGER;
ALTER TABLE admin_tokens ADD COLUMN last_used_at INTEGER;
-- The minting token's id (`adm_…`) or a system actor; NULL before this.
ALTER TABLE admin_tokens ADD COLUMN created_by TEXT;
ALTER TABLE admin_tokens ADD COLUMN revoke_reason TEXT;
-- A limited token lists the tokens it minted.
CREATE INDEX admin_tokens_created_by ON admin_tokens (created_by, id);
