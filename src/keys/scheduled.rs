//! Key operations the scheduler and self-rotation use.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use serde_json::json;

use super::{Actor, Keys, Mutation, Rotated, audit_event};
use crate::{
    domain::{KeyRecord, KeyState, Timestamp, api_key},
    error::{Error, Result},
    store::{ChangeKind, WriteBatch, WriteOutcome},
};

/// How often one key may rotate itself.
pub const SELF_ROTATION_INTERVAL: Duration = Duration::from_secs(60);

/// Who scheduled changes are by, in audit events.
pub fn scheduler() -> Actor {
    Actor("system:scheduler".into())
}

/// Last self-rotation per key hash, for the rate limit. Small: one entry
/// per key that rotated itself within the interval.
#[derive(Default)]
pub struct SelfRotations(Mutex<Vec<([u8; 32], Instant)>>);

impl SelfRotations {
    fn allow(&self, hash: [u8; 32]) -> bool {
        let mut recent = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        recent.retain(|(_, at)| at.elapsed() < SELF_ROTATION_INTERVAL);
        if recent.iter().any(|(h, _)| *h == hash) {
            return false;
        }
        recent.push((hash, Instant::now()));
        true
    }
}

impl Keys {
    /// Writes a notice event (`key.expiring`, `key.stale`, …) about `key`
    /// once: `false` when `notice` was sent before.
    pub async fn notify(
        &self,
        key: &KeyRecord,
        action: &'static str,
        reason: String,
        changes: serde_json::Value,
        notice: String,
    ) -> Result<bool> {
        let event = audit_event(
            self.now(),
            &scheduler(),
            action,
            key,
            Some(reason),
            changes,
            None,
        );
        let batch = WriteBatch {
            audit: vec![event],
            notice: Some((key.id.clone(), notice)),
            ..WriteBatch::default()
        };
        Ok(matches!(
            self.commit(batch, vec![]).await?,
            WriteOutcome::Committed { .. }
        ))
    }

    /// A scheduled change to `key`: `change` builds the next version, made
    /// once under `notice`.
    pub(crate) async fn scheduled_change(
        &self,
        key: &KeyRecord,
        notice: String,
        action: &'static str,
        kind: ChangeKind,
        reason: String,
        change: impl Fn(&mut KeyRecord, Timestamp) + Send + Sync,
    ) -> Result<bool> {
        let (_, seq) = self
            .mutate(&key.id, &scheduler(), |current, now| {
                // Revocation may follow a disable; nothing follows a revocation
                // or an expiry.
                let state = current.state(now);
                let open = state == KeyState::Active
                    || (state == KeyState::Disabled && kind == ChangeKind::Revoked);
                if !open {
                    return Ok(None);
                }
                let mut next = current.clone();
                change(&mut next, now);
                let ms = |t: Option<Timestamp>| t.map(Timestamp::as_millis);
                Ok(Some(Mutation {
                    changes: json!({
                        "expires_at": super::diff(ms(current.expires_at), ms(next.expires_at)),
                        "disabled_at": super::diff(ms(current.disabled_at), ms(next.disabled_at)),
                        "revoked_at": super::diff(ms(current.revoked_at), ms(next.revoked_at)),
                    }),
                    next,
                    kind,
                    action,
                    reason: Some(reason.clone()),
                    notice: Some(notice.clone()),
                }))
            })
            .await?;
        Ok(seq.is_some())
    }

    /// Rotation by proof of possession: `presented` is the current key.
    pub async fn rotate_self(&self, presented: &str, grace: Option<Duration>) -> Result<Rotated> {
        let parsed = api_key::parse(presented).map_err(|_| Error::Unauthenticated)?;
        let entry = self.index.get(&parsed.hash).ok_or(Error::Unauthenticated)?;
        if entry.state(self.now()) != KeyState::Active {
            return Err(Error::Unauthenticated);
        }
        if !self.self_rotations.allow(*parsed.hash.as_bytes()) {
            return Err(Error::ResourceExhausted(
                "a key may rotate itself at most once a minute".into(),
            ));
        }
        let id = entry.key_id();
        let actor = Actor(format!("key:{id}"));
        self.rotate(&id, grace, None, &actor).await
    }
}
