//! The admin token set, held in memory. There are a handful of tokens, so
//! authenticating answers from a map keyed by SHA-256 and never waits on
//! the database: a flood of bad tokens cannot reach it through here.
//!
//! Tokens are minted and revoked by other replicas, and by
//! `keysmith admin-token create` from another process, so the set must
//! learn them. `TokenRefresher` (`refresher.rs`) reloads it every `reload_interval`, at
//! once when a revocation's NOTIFY arrives (PostgreSQL), and on a miss.
//! Reloads run one at a time and start at least `min_reload_gap` apart,
//! whatever the number of callers: a miss waits for a reload that started
//! after it asked (its own, or one already under way), never for more than
//! one.
//!
//! Each authenticated call marks its token's last use in memory, on the
//! entry (an atomic, at one-second precision, so the verify path never
//! writes a shared line more than once a second). The refresher writes the
//! marks in one batch per tick: a crash loses at most one interval of them.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{Mutex as AsyncMutex, watch},
    time::Instant,
};

use crate::{
    domain::{
        Timestamp, TokenGrant,
        admin_token::{AdminTokenRecord, TokenId},
    },
    keys::Actor,
    store::{Store, StoreError},
};

/// The precision of a recorded last use.
const USE_PRECISION_MS: i64 = 1000;

/// One token as authentication holds it. Shared by the set and by the
/// streams it authenticated, which end once it is revoked.
#[derive(Debug)]
pub struct TokenEntry {
    pub id: TokenId,
    pub grant: Arc<TokenGrant>,
    /// Unix ms of the last use seen on this replica.
    last_used: AtomicI64,
    /// What the store has: the refresher writes `last_used` past this.
    flushed: AtomicI64,
    /// Set when a reload no longer finds the token.
    revoked: AtomicBool,
}

impl TokenEntry {
    fn new(record: &AdminTokenRecord) -> Self {
        let used = record.last_used_at.map_or(0, Timestamp::as_millis);
        Self {
            id: record.id.clone(),
            grant: Arc::new(record.grant.clone()),
            last_used: AtomicI64::new(used),
            flushed: AtomicI64::new(used),
            revoked: AtomicBool::new(false),
        }
    }

    /// Whether the token still authenticates at `now`: not revoked (as of
    /// the last reload) and not expired.
    pub fn is_live(&self, now: Timestamp) -> bool {
        !self.revoked.load(Ordering::Relaxed) && self.grant.is_live(now)
    }

    /// Marks a use at `now`. Writes the shared atomic at most once per
    /// [`USE_PRECISION_MS`]; otherwise it is only read.
    #[inline]
    pub fn touch(&self, now: Timestamp) {
        let now = now.as_millis();
        if self.last_used.load(Ordering::Relaxed) <= now - USE_PRECISION_MS {
            self.last_used.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// The admin caller this token makes.
    pub fn actor(&self) -> Actor {
        Actor::token(self.id.as_str(), self.grant.clone())
    }

    /// The use not yet written, if any.
    fn unflushed(&self) -> Option<i64> {
        let last = self.last_used.load(Ordering::Relaxed);
        (last > self.flushed.load(Ordering::Relaxed)).then_some(last)
    }
}

type Tokens = HashMap<[u8; 32], Arc<TokenEntry>>;

/// What one reload read.
#[derive(Clone, Default)]
struct Loaded {
    /// When the read began: it sees every token committed before then.
    /// `None` until the first reload.
    started: Option<Instant>,
    tokens: Arc<Tokens>,
}

pub struct TokenSet {
    store: Arc<dyn Store>,
    /// The current set; writers are reloads, which also wake whoever waits
    /// for a reload newer than their miss.
    loaded: watch::Sender<Loaded>,
    /// Held by the reload in flight (single flight). Holds when the last
    /// reload started, for the global rate.
    reloading: AsyncMutex<Option<Instant>>,
    /// Entries a reload dropped with a use not yet written: the next flush
    /// writes it, so a revoked token's last use is not lost.
    retired: Mutex<Vec<Arc<TokenEntry>>>,
    min_reload_gap: Duration,
    /// Reads of the store so far, for tests and metrics.
    reloads: AtomicU64,
}

impl TokenSet {
    pub fn new(store: Arc<dyn Store>, min_reload_gap: Duration) -> Self {
        Self {
            store,
            loaded: watch::Sender::new(Loaded::default()),
            reloading: AsyncMutex::new(None),
            retired: Mutex::new(Vec::new()),
            min_reload_gap,
            reloads: AtomicU64::new(0),
        }
    }

    /// How many times the set was read from the store.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// The token whose SHA-256 is `hash`, from memory. Takes the set's read
    /// lock for the lookup only; allocates nothing.
    pub fn get(&self, hash: &[u8; 32]) -> Option<Arc<TokenEntry>> {
        self.loaded.borrow().tokens.get(hash).cloned()
    }

    /// Adds a token minted on this replica (call it after the mint
    /// commits), so it works at once here, on the verify listener too,
    /// which never reloads on a miss. It waits for a reload in flight: that
    /// reload may have read before the commit, and would otherwise replace
    /// the set without the token (and mark its entry revoked). Any reload
    /// after this one reads the committed row.
    pub async fn insert_local(&self, hash: [u8; 32], record: &AdminTokenRecord) {
        let _no_reload_in_flight = self.reloading.lock().await;
        self.loaded.send_modify(|loaded| {
            let mut tokens = Tokens::clone(&loaded.tokens);
            tokens.insert(hash, Arc::new(TokenEntry::new(record)));
            loaded.tokens = Arc::new(tokens);
        });
    }

    /// Returns once the set reflects a read that started at or after
    /// `asked`, reloading if no such read has happened, at the global rate.
    pub async fn reload_after(&self, asked: Instant) -> Result<(), StoreError> {
        let mut last = self.reloading.lock().await;
        if self.loaded_since(asked) {
            // The reload we queued behind started after we asked.
            return Ok(());
        }
        if let Some(last) = *last {
            tokio::time::sleep_until(last + self.min_reload_gap).await;
        }
        let started = Instant::now();
        *last = Some(started);
        self.reloads.fetch_add(1, Ordering::Relaxed);
        let rows = self.store.active_tokens().await?;
        let old = self.loaded.borrow().tokens.clone();
        let mut tokens = Tokens::with_capacity(rows.len());
        for (hash, record) in &rows {
            let entry = match old.get(hash) {
                // Unchanged: keep the entry, its marks and the streams on it.
                Some(e) if e.id == record.id && *e.grant == record.grant => e.clone(),
                _ => Arc::new(TokenEntry::new(record)),
            };
            tokens.insert(*hash, entry);
        }
        let mut retired = Vec::new();
        for (hash, entry) in old.iter() {
            if !tokens.get(hash).is_some_and(|e| Arc::ptr_eq(e, entry)) {
                entry.revoked.store(true, Ordering::Relaxed);
                if entry.unflushed().is_some() {
                    retired.push(entry.clone());
                }
            }
        }
        self.retired
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(retired);
        self.loaded.send_replace(Loaded {
            started: Some(started),
            tokens: Arc::new(tokens),
        });
        Ok(())
    }

    /// Waits, at most `patience`, for a reload that started at or after
    /// `asked`, without causing one. Whether one came.
    pub async fn wait_for_reload_after(&self, asked: Instant, patience: Duration) -> bool {
        let mut loaded = self.loaded.subscribe();
        let newer = loaded.wait_for(|l| l.started.is_some_and(|s| s >= asked));
        matches!(tokio::time::timeout(patience, newer).await, Ok(Ok(_)))
    }

    fn loaded_since(&self, asked: Instant) -> bool {
        self.loaded.borrow().started.is_some_and(|s| s >= asked)
    }

    /// Writes the last uses marked since the previous flush, in one
    /// transaction. On failure they stay marked for the next one.
    pub async fn flush_uses(&self) -> Result<(), StoreError> {
        let retired =
            std::mem::take(&mut *self.retired.lock().unwrap_or_else(PoisonError::into_inner));
        let current = self.loaded.borrow().tokens.clone();
        let entries: Vec<(Arc<TokenEntry>, i64)> = current
            .values()
            .chain(&retired)
            .filter_map(|e| e.unflushed().map(|at| (e.clone(), at)))
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        let uses: Vec<(TokenId, Timestamp)> = entries
            .iter()
            .map(|(e, at)| (e.id.clone(), Timestamp::from_millis(*at)))
            .collect();
        if let Err(e) = self.store.record_token_uses(&uses).await {
            self.retired
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(retired);
            return Err(e);
        }
        for (e, at) in entries {
            e.flushed.fetch_max(at, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::DbConfig,
        domain::{KeyName, TokenGrant},
        store::NewAuditEvent,
    };

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        let db = DbConfig {
            database_url: None,
            data_dir: dir.path().to_owned(),
        };
        crate::app::open_store(&db, true).await.expect("store")
    }

    fn record(name: &str) -> AdminTokenRecord {
        AdminTokenRecord {
            id: TokenId::generate(),
            name: KeyName::parse(name).expect("name"),
            grant: TokenGrant::FULL,
            created_at: Timestamp::now(),
            created_by: None,
            last_used_at: None,
            revoked_at: None,
            revoke_reason: None,
        }
    }

    fn audit() -> NewAuditEvent {
        NewAuditEvent {
            at: Timestamp::now(),
            actor: "system:test".into(),
            action: "admin_token.created",
            key_id: None,
            owner_id: None,
            reason: None,
            changes: serde_json::json!({}),
            request_id: None,
        }
    }

    /// Misses at the same moment, from any number of callers, share one
    /// read of the store, and each then sees the token minted before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simultaneous_misses_share_one_reload() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store(&dir).await;
        let set = Arc::new(TokenSet::new(store.clone(), Duration::from_millis(100)));
        let info = record("ops");
        store
            .insert_token(&info, &[7; 32], &audit())
            .await
            .expect("insert");
        let asked = Instant::now();
        let misses = (0..100).map(|_| {
            let set = set.clone();
            tokio::spawn(async move { set.reload_after(asked).await })
        });
        for miss in futures::future::join_all(misses).await {
            miss.expect("join").expect("reload");
        }
        assert_eq!(set.reloads(), 1);
        assert_eq!(set.get(&[7; 32]).map(|e| e.id.clone()), Some(info.id));
        assert!(set.get(&[8; 32]).is_none());
    }

    /// Misses one after another reload at most once per gap: the count is
    /// bounded by the time they took, however fast the store answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reloads_are_rate_limited_in_all() {
        let dir = tempfile::tempdir().expect("dir");
        let gap = Duration::from_millis(50);
        let set = Arc::new(TokenSet::new(store(&dir).await, gap));
        let start = Instant::now();
        let callers = (0..4).map(|_| {
            let set = set.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    set.reload_after(Instant::now()).await.expect("reload");
                }
            })
        });
        futures::future::join_all(callers).await;
        let gaps = start.elapsed().as_millis() / gap.as_millis();
        let bound = u64::try_from(gaps).expect("small") + 1;
        assert!(set.reloads() >= 5, "each caller's last miss was served");
        assert!(
            set.reloads() <= bound,
            "{} reloads > {bound}",
            set.reloads()
        );
    }

    /// Uses are marked in memory and written by the flush, once; a token
    /// revoked meanwhile still gets its last use written, and its entry
    /// (held by any stream it authenticated) stops being live.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn last_uses_are_flushed_in_batches_and_survive_a_revocation() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store(&dir).await;
        let set = TokenSet::new(store.clone(), Duration::ZERO);
        let info = record("ops");
        store
            .insert_token(&info, &[7; 32], &audit())
            .await
            .expect("insert");
        set.reload_after(Instant::now()).await.expect("reload");
        let entry = set.get(&[7; 32]).expect("loaded");
        let used = Timestamp::from_millis(1_800_000_000_000);
        entry.touch(used);
        entry.touch(Timestamp::from_millis(used.as_millis() + 10));
        set.flush_uses().await.expect("flush");
        let stored = |store: Arc<dyn Store>| async move {
            store.active_tokens().await.expect("tokens")[0]
                .1
                .last_used_at
        };
        assert_eq!(
            stored(store.clone()).await,
            Some(used),
            "one-second precision"
        );

        let later = Timestamp::from_millis(used.as_millis() + 5000);
        entry.touch(later);
        let reason = crate::domain::Reason::parse("test").expect("reason");
        store
            .revoke_token(&info.id, None, false, &reason, &audit(), &audit())
            .await
            .expect("revoke");
        set.reload_after(Instant::now()).await.expect("reload");
        assert!(set.get(&[7; 32]).is_none());
        assert!(!entry.is_live(Timestamp::now()), "streams on it end");
        set.flush_uses().await.expect("flush");
        let all = store
            .list_tokens(
                &crate::store::TokenFilter {
                    visible_to: None,
                    after: None,
                    limit: 10,
                },
                &audit(),
            )
            .await
            .expect("list");
        assert_eq!(all[0].last_used_at, Some(later));
    }
}
