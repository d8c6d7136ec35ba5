//! An overlap that watches traffic: a rotated key with
//! `end_grace_when_idle` expires early once its successor is in use and the
//! old key has been silent that long.

use crate::{
    error::Result,
    store::{ChangeKind, LiveKeys},
};

use super::{Scheduler, expired_notice};

pub async fn run(s: &Scheduler) -> Result<usize> {
    let now = s.clock.now();
    let mut ended = 0;
    for key in s.live_keys(LiveKeys::InIdleGrace).await? {
        let (Some(idle), Some(next)) = (key.end_grace_when_idle, &key.rotated_to) else {
            continue;
        };
        if key.is_expired(now) || key.disabled_at.is_some() {
            continue;
        }
        // Last use comes from the store: every replica's flushed usage.
        let Some(successor) = s.store.get_key(next).await? else {
            continue;
        };
        let silent_since = key
            .last_used_at
            .unwrap_or(key.updated_at)
            .max(key.updated_at);
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        if successor.last_used_at.is_none() || now.as_millis() - silent_since.as_millis() < idle_ms
        {
            continue;
        }
        let reason =
            format!("grace ended early: the successor {next} is in use and this key was idle");
        // The notice the expiry job would send for this expiry: the key gets
        // one key.expired, this one, with its reason.
        let notice = expired_notice(now.as_millis());
        ended += usize::from(
            s.keys
                .scheduled_change(
                    &key,
                    notice,
                    "key.expired",
                    ChangeKind::ExpiryShortened,
                    reason,
                    move |k, _| {
                        k.expires_at = Some(now);
                    },
                )
                .await?,
        );
    }
    Ok(ended)
}
