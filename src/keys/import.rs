//! ImportKeys: keys made elsewhere, brought in by hash or raw value. A
//! batch is checked whole before anything is written, commits in one
//! transaction with one `keys.imported` audit event, and is idempotent by
//! hash: a key already here is unchanged, or a conflict, or overwritten
//! when asked.

use std::{
    collections::HashMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;
use zeroize::Zeroizing;

use super::{Actor, CONFLICT_RETRIES, Keys};
use crate::{
    domain::{
        Environment, KeyHash, KeyId, KeyName, KeyRecord, KeyType, Keyspace, KeyspaceId, Metadata,
        OwnerId, Permission, Reason, Restrictions, RoleName, Scope, Timestamp, check_type_policy,
        legacy::hash_whole,
    },
    error::{Error, Result},
    store::{ChangeKind, ImportBatch, NewChange, StoreError},
};

/// Most keys one ImportKeys call may carry.
pub const MAX_IMPORT_BATCH: usize = 1000;
/// Longest external id.
pub const MAX_EXTERNAL_ID: usize = 128;
/// Longest hint.
pub const MAX_HINT: usize = 64;
/// How far ahead of this server's clock a creation or last-use time may be:
/// another machine's clock, not the future.
const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// How an imported key is given.
pub enum ImportSecret {
    /// SHA-256 of the full raw key (for a keysmith key: of all but its
    /// checksum).
    Hash(KeyHash),
    /// The raw key, which must have one of the keyspace's legacy formats.
    /// Hashed at once; wiped on drop.
    Raw(Zeroizing<String>),
}

impl fmt::Debug for ImportSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hash(h) => f.debug_tuple("Hash").field(h).finish(),
            Self::Raw(_) => f.write_str("Raw([redacted])"),
        }
    }
}

/// One key to import, parsed.
#[derive(Debug)]
pub struct ImportEntry {
    pub secret: ImportSecret,
    pub id: Option<KeyId>,
    pub owner_id: OwnerId,
    pub name: KeyName,
    pub key_type: KeyType,
    pub environment: Option<Environment>,
    pub scopes: Vec<Scope>,
    pub roles: Vec<RoleName>,
    pub metadata: Metadata,
    pub restrictions: Restrictions,
    pub expires_at: Option<Timestamp>,
    pub created_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub external_id: Option<String>,
    pub hint: Option<String>,
    pub revoked_at: Option<Timestamp>,
    pub disabled_at: Option<Timestamp>,
}

/// A parsed ImportKeys request.
#[derive(Debug)]
pub struct Import {
    pub keyspace: KeyspaceId,
    pub entries: Vec<ImportEntry>,
    pub overwrite: bool,
    pub dry_run: bool,
}

/// What became of one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    Created,
    Unchanged,
    /// Here already with other data: these fields differ.
    Conflict(Vec<&'static str>),
    Overwritten,
}

/// What became of each entry, in order.
#[derive(Debug, Default)]
pub struct Imported {
    pub results: Vec<(KeyId, ImportOutcome)>,
}

impl Imported {
    pub fn count(&self, f: impl Fn(&ImportOutcome) -> bool) -> usize {
        self.results.iter().filter(|(_, o)| f(o)).count()
    }
}

/// An entry checked and hashed: the record it would make.
struct Planned {
    record: KeyRecord,
    /// Whether the entry named its id (an export's): a new one is unique.
    given_id: bool,
}

fn at(i: usize, field: &str) -> String {
    format!("keys[{i}].{field}")
}

/// Restrictions as an import compares and writes them: without usage
/// limits and credits, which an import never carries and never removes.
fn without_quota(r: &Restrictions) -> Restrictions {
    Restrictions {
        quota: None,
        ..r.clone()
    }
}

/// The fields in which `stored` and `new` differ, as an import compares
/// them (never times of use, versions or what the store made).
fn differences(stored: &KeyRecord, new: &KeyRecord) -> Vec<&'static str> {
    let mut d = Vec::new();
    let mut check = |same: bool, field| {
        if !same {
            d.push(field);
        }
    };
    check(stored.keyspace_id == new.keyspace_id, "keyspace");
    check(stored.owner_id == new.owner_id, "owner_id");
    check(stored.name == new.name, "name");
    check(stored.key_type == new.key_type, "type");
    check(stored.environment == new.environment, "environment");
    check(stored.scopes == new.scopes, "scopes");
    check(stored.roles == new.roles, "roles");
    check(stored.metadata == new.metadata, "metadata");
    check(
        without_quota(&stored.restrictions) == new.restrictions,
        "restrictions",
    );
    check(stored.expires_at == new.expires_at, "expire_time");
    check(
        stored.revoked_at.is_some() == new.revoked_at.is_some(),
        "revoke_time",
    );
    check(
        stored.disabled_at.is_some() == new.disabled_at.is_some(),
        "disable_time",
    );
    check(
        new.external_id.is_none() || stored.external_id == new.external_id,
        "external_id",
    );
    d
}

/// Fields an overwrite cannot change: they say which key it is.
const FINAL_FIELDS: [&str; 4] = ["keyspace", "owner_id", "type", "environment"];

/// Whether an overwrite can change `field` of `stored`: never what says
/// which key it is, and never back from revoked or disabled.
fn overwritable(stored: &KeyRecord, field: &str) -> bool {
    let undone = match field {
        "revoke_time" => stored.revoked_at.is_some(),
        "disable_time" => stored.disabled_at.is_some(),
        _ => false,
    };
    !FINAL_FIELDS.contains(&field) && !undone
}

/// `stored` with what `new` says, where an overwrite may change it; a
/// revocation or disablement is only ever added, and the stored usage
/// limits and credits stay.
fn overwritten(stored: &KeyRecord, new: &KeyRecord, now: Timestamp) -> (KeyRecord, ChangeKind) {
    let mut next = stored.clone();
    next.name = new.name.clone();
    next.scopes = new.scopes.clone();
    next.roles = new.roles.clone();
    next.role_scopes = new.role_scopes.clone();
    next.metadata = new.metadata.clone();
    next.restrictions = Restrictions {
        quota: stored.restrictions.quota.clone(),
        ..new.restrictions.clone()
    };
    next.expires_at = new.expires_at;
    next.lineage_expires_at = new.expires_at;
    if new.external_id.is_some() {
        next.external_id = new.external_id.clone();
    }
    let mut kind = ChangeKind::Updated;
    if stored.disabled_at.is_none() && new.disabled_at.is_some() {
        (next.disabled_at, next.disable_reason) = (new.disabled_at, new.disable_reason.clone());
        kind = ChangeKind::Disabled;
    }
    if stored.revoked_at.is_none() && new.revoked_at.is_some() {
        (next.revoked_at, next.revoke_reason) = (new.revoked_at, new.revoke_reason.clone());
        kind = ChangeKind::Revoked;
    }
    // Anything taken away reaches streams as a restrictive change.
    if kind == ChangeKind::Updated
        && (stored.scopes.iter().any(|s| !new.scopes.contains(s))
            || stored.restrictions != next.restrictions
            || new
                .expires_at
                .is_some_and(|e| stored.expires_at.is_none_or(|s| e < s)))
    {
        kind = ChangeKind::RestrictionsChanged;
    }
    next.version = stored.version + 1;
    next.updated_at = now;
    (next, kind)
}

/// A replica that answered a Verify call this recently is serving traffic.
const TRAFFIC_WINDOW: Duration = Duration::from_secs(1);

/// The longest an import waits after a batch.
const MAX_REST: Duration = Duration::from_secs(5);

/// How long the next import batch waits after one that took `took`, so
/// that while Verify traffic is `busy` imports take `duty` of the time.
fn rest(took: Duration, duty: f64, busy: bool) -> Duration {
    if !busy || duty >= 1.0 {
        return Duration::ZERO;
    }
    took.mul_f64((1.0 - duty) / duty.max(0.01)).min(MAX_REST)
}

impl Keys {
    /// Imports one batch for `actor`: checked whole, then committed whole
    /// (or, with `dry_run`, only classified).
    pub async fn import(&self, req: Import, actor: &Actor) -> Result<Imported> {
        if req.entries.len() > MAX_IMPORT_BATCH {
            return Err(Error::invalid(
                "keys",
                format!("at most {MAX_IMPORT_BATCH} keys a call"),
            ));
        }
        if !actor.limits().admits_keyspace(req.keyspace.as_str()) {
            return Err(Error::NotFound(format!("keyspace {}", req.keyspace)));
        }
        if req
            .entries
            .iter()
            .any(|e| e.revoked_at.is_some() || e.disabled_at.is_some())
        {
            // A key imported revoked or disabled, or overwritten so, is
            // ended: what RevokeKey and DisableKey need.
            actor.require(Permission::KeysRevoke)?;
        }
        // While Verify is answered, batches run one at a time (a batch
        // takes every turn) and rest between them; otherwise side by side.
        let busy = || self.traffic.answered_within(self.now(), TRAFFIC_WINDOW);
        let turns = if busy() { self.import_turns } else { 1 };
        let turn = Arc::clone(&self.imports)
            .acquire_many_owned(turns)
            .await
            .map_err(|_| Error::Unavailable("shutting down"))?;
        let started = Instant::now();
        let done = self.import_batch(req, actor).await;
        // Yield to Verify: the next batch waits, this answer does not.
        match rest(started.elapsed(), self.config.import_duty, busy()) {
            Duration::ZERO => drop(turn),
            rest => {
                tokio::spawn(async move {
                    tokio::time::sleep(rest).await;
                    drop(turn);
                });
            }
        }
        done
    }

    async fn import_batch(&self, req: Import, actor: &Actor) -> Result<Imported> {
        let mut entries = req.entries;
        for _ in 0..CONFLICT_RETRIES {
            // Planned anew on each try: a role or the catalogue may have
            // changed since the last.
            let ks = self.named_keyspace("keyspace", &req.keyspace).await?;
            let planned = self.plan_import(&ks, &mut entries, actor).await?;
            match self
                .import_once(&planned, req.overwrite, req.dry_run, actor)
                .await
            {
                // Another writer took one of these hashes or ids, or changed
                // a stored key, a role or the catalogue, since they were read.
                Err(Error::Store(StoreError::Conflict | StoreError::Duplicate)) => continue,
                done => return done,
            }
        }
        Err(Error::Unavailable("the keys are changing too often; retry"))
    }

    /// Checks every entry and makes the record it would be; the first bad
    /// entry refuses the batch, by its index. A raw value is replaced by
    /// its hash (and wiped) here, so a retry plans from the hash.
    async fn plan_import(
        &self,
        ks: &Keyspace,
        entries: &mut [ImportEntry],
        actor: &Actor,
    ) -> Result<Vec<Planned>> {
        let now = self.now();
        let latest = Timestamp::from_millis(now.as_millis().saturating_add(CLOCK_SKEW_MS));
        let longest = ks
            .defaults
            .max_lifetime
            .map_or(super::MAX_TTL, |m| m.min(super::MAX_TTL));
        let latest_expiry = now.saturating_add(longest);
        let mut seen_hash: HashMap<KeyHash, usize> = HashMap::with_capacity(entries.len());
        let mut seen_id: HashMap<KeyId, usize> = HashMap::new();
        let mut planned = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter_mut().enumerate() {
            if !actor.limits().admits_owner(e.owner_id.as_str()) {
                return Err(Error::PermissionDenied(
                    "owner_id: this token may not act for an owner in the batch",
                ));
            }
            let (hash, field) = match &e.secret {
                ImportSecret::Hash(h) => (*h, "hash"),
                ImportSecret::Raw(raw) => {
                    let Some(f) = ks.legacy.iter().find(|f| f.matches(raw)) else {
                        return Err(Error::invalid(
                            at(i, "raw"),
                            format!("has none of the legacy formats of keyspace {}", ks.id),
                        ));
                    };
                    if e.hint.is_none() {
                        e.hint = Some(format!("{}…", f.prefix));
                    }
                    (hash_whole(raw), "raw")
                }
            };
            e.secret = ImportSecret::Hash(hash);
            if let Some(j) = seen_hash.insert(hash, i) {
                return Err(Error::invalid(at(i, field), format!("repeats keys[{j}]")));
            }
            if let Some(id) = &e.id
                && let Some(j) = seen_id.insert(id.clone(), i)
            {
                return Err(Error::invalid(at(i, "id"), format!("repeats keys[{j}]")));
            }
            for (t, name) in [
                (e.created_at, "create_time"),
                (e.last_used_at, "last_used_time"),
            ] {
                if t.is_some_and(|t| t > latest) {
                    return Err(Error::invalid(at(i, name), "is in the future"));
                }
            }
            match e.expires_at {
                Some(t) if t > latest_expiry => {
                    return Err(Error::invalid(
                        at(i, "expire_time"),
                        format!(
                            "is beyond the longest lifetime, {}s from now",
                            longest.as_secs()
                        ),
                    ));
                }
                None if ks.defaults.max_lifetime.is_some() => {
                    return Err(Error::invalid(
                        at(i, "expire_time"),
                        format!("is required: keyspace {} has a max_lifetime", ks.id),
                    ));
                }
                _ => {}
            }
            if let Some((j, _)) = ks.first_undeclared(&e.scopes) {
                return Err(Error::invalid(
                    at(i, &format!("scopes[{j}]")),
                    format!("is not in the scope catalogue of keyspace {}", ks.id),
                ));
            }
            check_type_policy(e.key_type, &e.scopes, &e.restrictions)
                .map_err(|v| Error::invalid(at(i, v.field), v.reason))?;
            let (roles, role_scopes) = match e.roles.is_empty() {
                true => (vec![], vec![]),
                false => {
                    self.resolve_roles(&at(i, "roles"), &ks.id, &e.roles, |_| true)
                        .await?
                }
            };
            super::roles::roles_fit(&at(i, "roles"), e.key_type, &role_scopes)?;
            let reason = |t: Option<Timestamp>| {
                t.map(|_| Reason::parse("imported").expect("a valid reason"))
            };
            planned.push(Planned {
                given_id: e.id.is_some(),
                record: KeyRecord {
                    id: e.id.clone().unwrap_or_else(KeyId::generate),
                    hash,
                    keyspace_id: ks.id.clone(),
                    owner_id: e.owner_id.clone(),
                    name: e.name.clone(),
                    key_type: e.key_type,
                    environment: e
                        .environment
                        .or(ks.defaults.environment)
                        .unwrap_or(Environment::Live),
                    scopes: e.scopes.clone(),
                    roles,
                    role_scopes,
                    metadata: e.metadata.clone(),
                    hint: e.hint.clone().unwrap_or_else(|| "…".into()),
                    created_at: e.created_at.unwrap_or(now),
                    updated_at: now,
                    expires_at: e.expires_at,
                    lineage_expires_at: e.expires_at,
                    revoke_reason: reason(e.revoked_at),
                    revoked_at: e.revoked_at,
                    disable_reason: reason(e.disabled_at),
                    disabled_at: e.disabled_at,
                    rotated_from: None,
                    rotated_to: None,
                    version: 1,
                    restrictions: e.restrictions.clone(),
                    last_used_at: e.last_used_at,
                    last_client_ip: None,
                    end_grace_when_idle: None,
                    rotation: None,
                    external_id: e.external_id.clone(),
                    imported_at: Some(now),
                },
            });
        }
        Ok(planned)
    }

    async fn import_once(
        &self,
        planned: &[Planned],
        overwrite: bool,
        dry_run: bool,
        actor: &Actor,
    ) -> Result<Imported> {
        let hashes: Vec<KeyHash> = planned.iter().map(|p| p.record.hash).collect();
        let ids: Vec<KeyId> = planned
            .iter()
            .filter(|p| p.given_id)
            .map(|p| p.record.id.clone())
            .collect();
        let stored = self.store.keys_by_hash_or_id(&hashes, &ids).await?;
        let by_hash: HashMap<KeyHash, &KeyRecord> = stored.iter().map(|k| (k.hash, k)).collect();
        let by_id: HashMap<&KeyId, &KeyRecord> = stored.iter().map(|k| (&k.id, k)).collect();
        let now = self.now();
        let mut out = Imported::default();
        let mut batch = ImportBatch::default();
        for (i, p) in planned.iter().enumerate() {
            let new = &p.record;
            let Some(old) = by_hash.get(&new.hash) else {
                if by_id.contains_key(&new.id) {
                    return Err(Error::invalid(at(i, "id"), "is taken"));
                }
                out.results.push((new.id.clone(), ImportOutcome::Created));
                batch.changes.push(NewChange::of(ChangeKind::Created, new));
                batch.insert.push(new.clone());
                continue;
            };
            if !actor.may_see(old.keyspace_id.as_str(), &old.owner_id) {
                // Held by a key this token cannot see: one answer, which
                // names no key and says nothing of its record.
                return Err(Error::invalid(
                    at(i, "hash"),
                    "cannot be imported with this token",
                ));
            }
            let differs = differences(old, new);
            let changes: Vec<_> = differs
                .iter()
                .filter(|d| overwritable(old, d))
                .copied()
                .collect();
            let outcome = if differs.is_empty() {
                ImportOutcome::Unchanged
            } else if overwrite && !differs.iter().any(|d| FINAL_FIELDS.contains(d)) {
                if changes.is_empty() {
                    // Only what an overwrite never undoes differs.
                    ImportOutcome::Unchanged
                } else {
                    let (next, kind) = overwritten(old, new, now);
                    batch.changes.push(NewChange::of(kind, &next));
                    batch.update.push(next);
                    ImportOutcome::Overwritten
                }
            } else {
                ImportOutcome::Conflict(differs)
            };
            out.results.push((old.id.clone(), outcome));
        }
        if dry_run || (batch.insert.is_empty() && batch.update.is_empty()) {
            return Ok(out);
        }
        let count = |f: fn(&ImportOutcome) -> bool| out.count(f);
        batch.audit = Some(actor.event(
            now,
            "keys.imported",
            json!({
                "keyspace_id": planned[0].record.keyspace_id.as_str(),
                "created": count(|o| *o == ImportOutcome::Created),
                "overwritten": count(|o| *o == ImportOutcome::Overwritten),
                "unchanged": count(|o| *o == ImportOutcome::Unchanged),
                "conflicts": count(|o| matches!(o, ImportOutcome::Conflict(_))),
                "first_key_id": out.results[0].0.as_str(),
            }),
        ));
        let written: Vec<KeyRecord> = batch.insert.iter().chain(&batch.update).cloned().collect();
        self.store.import(batch).await?;
        for r in &written {
            self.index.upsert(r);
        }
        self.feed.wake();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_rest_only_while_verify_is_answered() {
        let took = Duration::from_millis(100);
        assert_eq!(rest(took, 0.2, false), Duration::ZERO);
        assert_eq!(rest(took, 1.0, true), Duration::ZERO);
        // A fifth of the time: 100 ms of work, 400 ms of rest.
        assert_eq!(rest(took, 0.2, true), Duration::from_millis(400));
        assert_eq!(rest(took, 0.5, true), took);
        assert_eq!(rest(Duration::from_secs(10), 0.2, true), MAX_REST);
    }
}
