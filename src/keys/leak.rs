//! Leaks: a key found in public gets its keyspace's leak policy (notify,
//! disable or revoke), applied to it and to the successors it rotated
//! itself into since the leak, in one transaction with a `key.leaked`
//! audit event (and so its webhook). The revocation stream carries each
//! ended key as `LEAKED`. Also LookupKey: a key's record from its value.

use serde_json::json;

use super::{Actor, CONFLICT_RETRIES, Keys, MAX_LINEAGE, audit_event, diff};
use crate::{
    domain::{
        KeyId, KeyRecord, Reason, Timestamp, api_key,
        leak::{LeakFinder, LeakPolicy, LeakReport},
    },
    error::{Error, Result},
    store::{AuditFilter, ChangeKind, NewChange, StoreError, WriteBatch, WriteOutcome},
};

/// What a leak report did.
#[derive(Debug)]
pub struct Leak {
    /// The key reported, as it is now.
    pub key: KeyRecord,
    pub policy: LeakPolicy,
    /// Successors the key rotated itself into since the leak, oldest
    /// first, as they are now; the policy applied to them too.
    pub successors: Vec<KeyRecord>,
    /// The change-log sequence of the last change made, if any.
    pub seq: Option<i64>,
}

impl Leak {
    /// `keys`: the key reported, then its successors.
    fn of(keys: Vec<KeyRecord>, policy: LeakPolicy, seq: Option<i64>) -> Result<Self> {
        let mut keys = keys.into_iter();
        let key = keys
            .next()
            .ok_or_else(|| Error::Internal("a leak of no key".into()))?;
        Ok(Self {
            key,
            policy,
            successors: keys.collect(),
            seq,
        })
    }
}

/// The reason recorded on a key a leak ended.
const LEAKED: &str = "leaked";

/// A holder presenting a key that is already ended, or only notified, is
/// audited once in this long: anyone may present a key, as often as the
/// listener's limits let them, and must not grow the audit log with it.
pub const HOLDER_REPEAT_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

impl Keys {
    /// The id of the key whose value is `presented`, from the index alone
    /// (no store read): `None` for a string that is not a key, and for a key
    /// this service does not hold. Costs what a Verify's lookup does.
    pub fn identify(&self, presented: &str) -> Option<KeyId> {
        let parsed = api_key::parse(presented).ok()?;
        self.index.get(&parsed.hash).map(|e| e.key_id())
    }

    /// LookupKey: the record of the key whose value is `presented`, if
    /// `actor` may see it (NOT_FOUND as for no key otherwise). Audited as
    /// `key.looked_up`, so who looked up which key is on record.
    pub async fn lookup(&self, presented: &str, actor: &Actor) -> Result<KeyRecord> {
        let id = self
            .identify(presented)
            .ok_or_else(|| Error::NotFound("key: no such key".into()))?;
        let key = self.get_visible(&id, actor).await?;
        let audit = audit_event(
            self.now(),
            actor,
            "key.looked_up",
            &key,
            None,
            json!({}),
            None,
        );
        let batch = WriteBatch {
            audit: vec![audit],
            ..WriteBatch::default()
        };
        self.store.write(batch).await?;
        Ok(key)
    }

    /// Applies key `id`'s leak policy (`forced`, or its keyspace's for its
    /// type and environment) for `report`: to the key, and to each
    /// successor it rotated itself into since the leak.
    pub async fn report_leak(
        &self,
        id: &KeyId,
        report: &LeakReport,
        forced: Option<LeakPolicy>,
        actor: &Actor,
    ) -> Result<Leak> {
        // A leak in the future would spare every successor: refused.
        if report.leaked_at.is_some_and(|t| t > self.now()) {
            return Err(Error::invalid("leaked_time", "is in the future"));
        }
        for _ in 0..CONFLICT_RETRIES {
            let key = self.get_visible(id, actor).await?;
            let ks = self.get_keyspace(&key.keyspace_id).await?;
            let policy = forced.unwrap_or_else(|| ks.leak.policy(key.key_type, key.environment));
            let now = self.now();
            let since = report.exposed_since(now, self.config.leak_lookback);
            let successors = self.suspect_successors(&key, since).await?;
            let mut batch = WriteBatch::default();
            let mut changes = report.to_json();
            changes["policy"] = json!(policy.as_str());
            changes["successors"] = successors.iter().map(|k| k.id.as_str()).collect();
            batch.audit.push(audit_event(
                now,
                actor,
                "key.leaked",
                &key,
                None,
                changes,
                None,
            ));
            let mut after = Vec::with_capacity(successors.len() + 1);
            for (i, k) in std::iter::once(key).chain(successors).enumerate() {
                let Some((next, action, change)) = ended(&k, policy, now) else {
                    after.push(k);
                    continue;
                };
                let mut change = change;
                if i > 0 {
                    change["successor_of"] = json!(id.as_str());
                }
                batch.audit.push(audit_event(
                    now,
                    actor,
                    action,
                    &next,
                    Some(LEAKED.to_owned()),
                    change,
                    None,
                ));
                batch.changes.push(NewChange::of(ChangeKind::Leaked, &next));
                batch.update.push(next.clone());
                after.push(next);
            }
            let updated = batch.update.clone();
            let changed = !updated.is_empty();
            if !changed
                && report.finder == LeakFinder::Holder
                && self
                    .leaked_since(&after[0], now, HOLDER_REPEAT_WINDOW)
                    .await?
            {
                return Leak::of(after, policy, None);
            }
            let seq = match self.commit(batch, updated).await {
                Ok(WriteOutcome::Committed { last_seq }) => last_seq,
                Ok(_) => return Err(Error::Internal("a leak was not committed".into())),
                Err(Error::Store(StoreError::Conflict)) => continue,
                Err(e) => return Err(e),
            };
            return Leak::of(after, policy, changed.then_some(seq));
        }
        Err(Error::Unavailable("the key is changing too often; retry"))
    }

    /// The successors `key` rotated itself into at or after `since`, and
    /// those they rotated themselves into in turn, oldest first: whoever
    /// held the leaked key may have made them. A successor an admin made
    /// (RotateKey), or one made before the leak, went to the key's owner;
    /// the walk stops there.
    async fn suspect_successors(
        &self,
        key: &KeyRecord,
        since: Timestamp,
    ) -> Result<Vec<KeyRecord>> {
        let mut suspects: Vec<KeyRecord> = Vec::new();
        let mut from = key.clone();
        while let Some(next) = &from.rotated_to {
            if suspects.len() >= MAX_LINEAGE {
                // Never a silent stop: the newest key, the one in use, would
                // be spared.
                return Err(Error::FailedPrecondition(format!(
                    "key {} rotated itself more than {MAX_LINEAGE} times since the leak; report \
                     a later key of the lineage, or revoke it with include_successors",
                    key.id
                )));
            }
            let successor = self.get(next).await?;
            if successor.created_at < since || !self.made_by(&successor, &from).await? {
                break;
            }
            suspects.push(successor.clone());
            from = successor;
        }
        Ok(suspects)
    }

    /// Whether `key` has a `key.leaked` event within `window` before `now`.
    async fn leaked_since(
        &self,
        key: &KeyRecord,
        now: Timestamp,
        window: std::time::Duration,
    ) -> Result<bool> {
        let ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let filter = AuditFilter {
            key_id: Some(key.id.clone()),
            action: Some("key.leaked".into()),
            from: Some(Timestamp::from_millis(now.as_millis().saturating_sub(ms))),
            limit: 1,
            ..AuditFilter::default()
        };
        Ok(!self.store.list_audit_events(&filter).await?.is_empty())
    }

    /// Whether `successor` was made by `from` rotating itself (RotateSelf).
    async fn made_by(&self, successor: &KeyRecord, from: &KeyRecord) -> Result<bool> {
        let filter = AuditFilter {
            key_id: Some(successor.id.clone()),
            action: Some("key.created".into()),
            limit: 1,
            ..AuditFilter::default()
        };
        let events = self.store.list_audit_events(&filter).await?;
        let by = Actor::key(&from.id);
        Ok(events.first().is_some_and(|e| e.actor == by.name()))
    }
}

/// `k` as `policy` leaves it, with the audit action and changes, or `None`
/// when there is nothing to do (notify, or the key already ended so).
fn ended(
    k: &KeyRecord,
    policy: LeakPolicy,
    now: Timestamp,
) -> Option<(KeyRecord, &'static str, serde_json::Value)> {
    let reason = Reason::parse(LEAKED).ok();
    let mut next = k.clone();
    let (action, change) = match policy {
        LeakPolicy::Notify => return None,
        LeakPolicy::Revoke if k.revoked_at.is_none() => {
            next.revoked_at = Some(now);
            next.revoke_reason = reason;
            let d = diff(None::<i64>, now.as_millis());
            ("key.revoked", json!({ "revoked_at": d }))
        }
        LeakPolicy::Disable if k.revoked_at.is_none() && k.disabled_at.is_none() => {
            next.disabled_at = Some(now);
            next.disable_reason = reason;
            let d = diff(None::<i64>, now.as_millis());
            ("key.disabled", json!({ "disabled_at": d }))
        }
        LeakPolicy::Revoke | LeakPolicy::Disable => return None,
    };
    next.version += 1;
    next.updated_at = now;
    Some((next, action, change))
}
