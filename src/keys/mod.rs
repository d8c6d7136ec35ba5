//! Admin operations on keys: the rules between a parsed request and the store.
//!
//! Each mutation reads the key, builds its next version with plain domain
//! logic, and commits it with its audit event and change-log row in one
//! [`WriteBatch`]; the index is updated right after the commit, so the next
//! Verify on this replica sees the change.

mod actor;
mod create;
mod import;
mod keyspaces;
mod leak;
mod lifecycle;
mod page;
mod policy;
mod propagation;
mod quota;
mod revoke;
mod roles;
mod rotate;
mod scheduled;
mod usage;

use std::{sync::Arc, time::Duration};

use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::{
    domain::{Clock, KeyId, KeyRecord, PageTokens, Timestamp},
    error::{Error, Result},
    index::{FeedHandle, KeyIndex},
    store::{
        AuditEvent, AuditFilter, Change, KeyFilter, NewAuditEvent, NewChange, Store, StoreError,
        WriteBatch, WriteOutcome,
        audit_chain::{self, BrokenLink},
    },
};

/// How long a write that this replica's feed applies waits for it.
const APPLY_WAIT: Duration = Duration::from_secs(2);

pub use actor::Actor;
pub use create::{CreateKey, Created, Expiry, MAX_TTL, NewCredits};
pub use import::{
    Import, ImportEntry, ImportOutcome, ImportSecret, Imported, MAX_EXTERNAL_ID, MAX_HINT,
    MAX_IMPORT_BATCH,
};
pub use keyspaces::{KeyspacePatch, NewKeyspace};
pub use leak::Leak;
pub use lifecycle::{KeyPatch, Rotated};
pub(crate) use page::open as open_page_token;
pub use page::{AuditQuery, KeyQuery, KeyspaceQuery, MAX_PAGE_SIZE, Page, RoleQuery, page_size};
pub use propagation::{MAX_PROPAGATION_TIMEOUT, Propagation, StatusReport};
pub use quota::CreditsOf;
pub use revoke::{MAX_LINEAGE, Revocation};
pub use roles::{NewRole, RolePatch, RoleUpdated};
pub use rotate::{MIN_SELF_GRACE, SELF_ROTATION_INTERVAL};
pub use scheduled::scheduler;
pub use usage::{KeyUsage, MAX_USAGE_RANGE, Overlap};

/// How long a key must go unused to count as stale, unless asked otherwise.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(90 * 24 * 3600);

/// How long before a leak report without a time its key is taken as public.
pub const DEFAULT_LEAK_LOOKBACK: Duration = Duration::from_secs(24 * 3600);

/// The share of the time imports take while Verify calls are answered.
pub const DEFAULT_IMPORT_DUTY: f64 = 0.2;

/// Longest grace period RotateKey accepts.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Clone, Debug)]
pub struct KeysConfig {
    /// Default RotateKey grace period (`--rotation-grace`).
    pub rotation_grace: Duration,
    /// A replica whose heartbeat is older than this is not waited for by
    /// revocation receipts.
    pub replica_live_window: Duration,
    /// "Now" for key times (creation, expiry, staleness).
    pub clock: Clock,
    /// A leak report that does not say when the key became public takes it
    /// as public since this long before the report (`--leak-lookback`).
    pub leak_lookback: Duration,
    /// The share of the time ImportKeys batches may take while this replica
    /// answers Verify calls (`--import-duty`).
    pub import_duty: f64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            rotation_grace: Duration::from_secs(48 * 3600),
            replica_live_window: Duration::from_secs(5),
            clock: Clock::system(),
            leak_lookback: DEFAULT_LEAK_LOOKBACK,
            import_duty: DEFAULT_IMPORT_DUTY,
        }
    }
}

/// The admin side of keysmith. Cheap to clone.
#[derive(Clone)]
pub struct Keys {
    store: Arc<dyn Store>,
    index: Arc<KeyIndex>,
    feed: FeedHandle,
    config: KeysConfig,
    /// Seals and opens the list calls' page tokens.
    page_tokens: PageTokens,
    /// Usage limits: an owner written here applies on this replica at once.
    limiter: Arc<crate::limits::Limiter>,
    /// ImportKeys batches take turns on this replica, `import_turns` at a
    /// time. A client may pipeline batches; they queue here, each decoded
    /// before its turn, and the pause that yields to Verify traffic holds
    /// a turn.
    imports: Arc<tokio::sync::Semaphore>,
    import_turns: u32,
    /// Whether Verify calls are being answered: imports yield to them.
    traffic: Arc<crate::usage::Recorder>,
}

/// ImportKeys batches at once on one replica: one on SQLite, whose one
/// writer would make a second wait out its busy timeout; two on
/// PostgreSQL, so one batch is checked while another commits.
fn import_turns(backend: &str) -> u32 {
    match backend {
        "sqlite" => 1,
        _ => 2,
    }
}

/// How often a mutation re-reads and retries after losing a version race.
const CONFLICT_RETRIES: usize = 5;

impl Keys {
    pub fn new(
        store: Arc<dyn Store>,
        index: Arc<KeyIndex>,
        feed: FeedHandle,
        config: KeysConfig,
        page_tokens: PageTokens,
        limiter: Arc<crate::limits::Limiter>,
        traffic: Arc<crate::usage::Recorder>,
    ) -> Self {
        let import_turns = import_turns(store.backend());
        Self {
            store,
            index,
            feed,
            config,
            page_tokens,
            limiter,
            imports: Arc::new(tokio::sync::Semaphore::new(import_turns as usize)),
            import_turns,
            traffic,
        }
    }

    /// The index, for jobs that scan every key in memory.
    pub fn index(&self) -> &KeyIndex {
        &self.index
    }

    /// The installation's page-token seal, for the other lists.
    pub fn page_tokens(&self) -> &PageTokens {
        &self.page_tokens
    }

    /// Now, by this service's clock.
    pub fn now(&self) -> Timestamp {
        self.config.clock.now()
    }

    pub async fn get(&self, id: &KeyId) -> Result<KeyRecord> {
        self.store
            .get_key(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("key {id}")))
    }

    /// Key `id`, if `actor` may see it; NOT_FOUND otherwise, exactly as if
    /// it did not exist.
    pub async fn get_visible(&self, id: &KeyId, actor: &Actor) -> Result<KeyRecord> {
        visible(actor, self.get(id).await?)
    }

    /// A page of the keys `actor` may see. Its limits are part of the
    /// query, so keys outside them are never read, listed or counted.
    pub async fn list(&self, query: KeyQuery, actor: &Actor) -> Result<Page<KeyRecord>> {
        let after = query.after(&self.page_tokens)?;
        let limit = query.page_size;
        let now = self.config.clock.now();
        let unused_before = query.unused_for.map(|d| {
            let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            Timestamp::from_millis(now.as_millis().saturating_sub(ms))
        });
        let filter = KeyFilter {
            owner_id: query.owner_id.clone(),
            keyspace_id: query.keyspace_id.clone(),
            owners: actor.limits().owners().map(<[_]>::to_vec),
            keyspaces: actor.limits().keyspaces().map(<[_]>::to_vec),
            state: query.state,
            unused_before,
            order: query.order,
            after,
            limit: limit + 1,
            now,
        };
        let keys = self.store.list_keys(&filter).await?;
        Ok(Page::from_overfetch(keys, limit, |k| {
            query.token_after(&self.page_tokens, k)
        }))
    }

    /// A page of the audit events `actor` may see. A limited actor sees
    /// the events about its owners' keys only: events about no owner (the
    /// admin plane, failed authentications) span every owner.
    pub async fn audit_events(&self, query: AuditQuery, actor: &Actor) -> Result<Page<AuditEvent>> {
        let before = query.before(&self.page_tokens)?;
        let limit = query.page_size;
        let limits = actor.limits();
        let filter = AuditFilter {
            key_id: query.key_id.clone(),
            owner_id: query.owner_id.clone(),
            owned_only: !limits.is_unlimited(),
            owners: limits.owners().map(<[_]>::to_vec),
            keyspaces: limits.keyspaces().map(<[_]>::to_vec),
            action: query.action.clone(),
            from: query.from,
            to: query.to,
            before,
            limit: limit + 1,
        };
        let events = self.store.list_audit_events(&filter).await?;
        Ok(Page::from_overfetch(events, limit, |e| {
            query.token_after(&self.page_tokens, e)
        }))
    }

    /// Walks the whole audit hash chain; the number of events on success.
    pub async fn verify_audit_chain(&self) -> Result<std::result::Result<u64, BrokenLink>> {
        Ok(audit_chain::verify_store(self.store.as_ref()).await?)
    }

    /// Waits until this replica's index has applied the change log through
    /// `seq`, woken by the feed's broadcast (`changes`, subscribed before
    /// the write), for at most [`APPLY_WAIT`]: a write the feed applies
    /// (an UpdateRole's key changes) is then seen by the next Verify here,
    /// as a key write's is. A stuck feed does not hold the answer longer:
    /// the write is durable, and the replica's freshness says the rest.
    async fn applied_through(&self, mut changes: broadcast::Receiver<Arc<Change>>, seq: i64) {
        let deadline = tokio::time::Instant::now() + APPLY_WAIT;
        while self.index.applied_seq() < seq {
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) | Err(_) => return,
            }
        }
    }

    /// Commits `batch` and applies `records` to the index after the commit.
    async fn commit(&self, batch: WriteBatch, records: Vec<KeyRecord>) -> Result<WriteOutcome> {
        let outcome = self.store.write(batch).await?;
        // The applied sequence is not advanced here: earlier sequences may
        // be other replicas' writes that this index has not applied yet.
        if matches!(outcome, WriteOutcome::Committed { .. }) {
            for r in records {
                self.index.upsert(&r);
            }
            // Streams and the applied sequence follow through the feed.
            self.feed.wake();
        }
        Ok(outcome)
    }

    /// Reads key `id`, lets `change` build its next version, and commits it.
    /// Retries when another writer changed the key in between. Returns the
    /// key and the change-log sequence of the change (`None` for a no-op).
    async fn mutate<F>(
        &self,
        id: &KeyId,
        actor: &Actor,
        change: F,
    ) -> Result<(KeyRecord, Option<i64>)>
    where
        F: Fn(&KeyRecord, Timestamp) -> Result<Option<Mutation>>,
    {
        for _ in 0..CONFLICT_RETRIES {
            let current = visible(actor, self.get(id).await?)?;
            if let Some(done) = self.mutate_once(current, actor, &change).await? {
                return Ok(done);
            }
        }
        Err(Error::Unavailable("the key is changing too often; retry"))
    }

    /// One attempt of [`Keys::mutate`] on `current`, a record the caller
    /// read and may see: `None` when another writer changed the key (or a
    /// role it holds) since, and the caller should read it again.
    async fn mutate_once<F>(
        &self,
        current: KeyRecord,
        actor: &Actor,
        change: F,
    ) -> Result<Option<(KeyRecord, Option<i64>)>>
    where
        F: Fn(&KeyRecord, Timestamp) -> Result<Option<Mutation>>,
    {
        let now = self.config.clock.now();
        let Some(m) = change(&current, now)? else {
            return Ok(Some((current, None)));
        };
        let mut next = m.next;
        next.version = current.version + 1;
        next.updated_at = now;
        let audit = audit_event(now, actor, m.action, &next, m.reason, m.changes, None);
        let batch = WriteBatch {
            insert: None,
            update: vec![next.clone()],
            audit: vec![audit],
            changes: vec![NewChange::of(m.kind, &next)],
            notice: m.notice.map(|n| (next.id.clone(), n)),
            minted: None,
            balances: vec![],
        };
        match self.commit(batch, vec![next.clone()]).await {
            Ok(WriteOutcome::Committed { last_seq }) => Ok(Some((next, Some(last_seq)))),
            // A scheduled change that already happened: nothing to do.
            Ok(WriteOutcome::AlreadyNoticed) => Ok(Some((current, None))),
            Ok(WriteOutcome::Replayed { .. }) => {
                Err(Error::Internal("an update was replayed".into()))
            }
            Err(Error::Store(StoreError::Conflict)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `key`, if `actor` may see it; NOT_FOUND otherwise, exactly as for a key
/// that does not exist.
fn visible(actor: &Actor, key: KeyRecord) -> Result<KeyRecord> {
    if actor.may_see(key.keyspace_id.as_str(), &key.owner_id) {
        Ok(key)
    } else {
        Err(Error::NotFound(format!("key {}", key.id)))
    }
}

/// One planned change to a key.
struct Mutation {
    next: KeyRecord,
    kind: crate::store::ChangeKind,
    action: &'static str,
    reason: Option<String>,
    changes: serde_json::Value,
    /// For scheduled changes: the notice that makes them happen once.
    notice: Option<String>,
}

fn audit_event(
    at: Timestamp,
    actor: &Actor,
    action: &'static str,
    key: &KeyRecord,
    reason: Option<String>,
    changes: serde_json::Value,
    request_id: Option<String>,
) -> NewAuditEvent {
    NewAuditEvent {
        at,
        actor: actor.name().to_owned(),
        action,
        key_id: Some(key.id.clone()),
        owner_id: Some(key.owner_id.clone()),
        reason,
        changes,
        request_id,
    }
}

/// `{"old": a, "new": b}` for one changed field.
fn diff(old: impl serde::Serialize, new: impl serde::Serialize) -> serde_json::Value {
    json!({ "old": old, "new": new })
}
