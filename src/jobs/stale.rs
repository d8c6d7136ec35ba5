//! The unused-key policy: flag (`key.stale`), then optionally disable, then
//! optionally revoke, each stage once per idle period. In a dry run the
//! later stages only report.

use std::{collections::HashMap, time::Duration};

use serde_json::json;

use super::{Scheduler, days};
use crate::{
    domain::{KeyRecord, KeyState, OwnerId, StalePolicy},
    error::Result,
    keys::KeyQuery,
    store::{ChangeKind, KeyOrder},
};

pub async fn run(s: &Scheduler) -> Result<usize> {
    // An owner's thresholds replace the server's for that owner's keys.
    let owners: HashMap<OwnerId, StalePolicy> =
        s.store.owner_policies().await?.into_iter().collect();
    let server = &s.config.stale;
    let shortest = owners
        .values()
        .map(|p| p.flag_after)
        .fold(server.flag_after, Duration::min);
    let now = s.clock.now();
    let mut sent = 0;
    for key in stale_keys(s, shortest).await? {
        let policy = owners.get(&key.owner_id).unwrap_or(server);
        let since = key.unused_since();
        let idle = Duration::from_millis((now.as_millis() - since.as_millis()).max(0) as u64);
        if idle < policy.flag_after {
            continue;
        }
        let stamp = since.as_millis();
        let reason = format!("unused for {} days", days(idle));
        let changes = json!({ "unused_since": stamp, "stage": "flag" });
        sent += usize::from(
            s.keys
                .notify(
                    &key,
                    "key.stale",
                    reason.clone(),
                    changes,
                    format!("stale:{stamp}"),
                )
                .await?,
        );
        if policy.revoke_after.is_some_and(|r| idle >= r) {
            sent += stage(s, policy, &key, "revoke", stamp, &reason).await?;
        } else if policy.disable_after.is_some_and(|d| idle >= d) {
            sent += stage(s, policy, &key, "disable", stamp, &reason).await?;
        }
    }
    Ok(sent)
}

async fn stage(
    s: &Scheduler,
    policy: &StalePolicy,
    key: &KeyRecord,
    stage: &'static str,
    stamp: i64,
    reason: &str,
) -> Result<usize> {
    if policy.dry_run {
        let changes = json!({ "unused_since": stamp, "stage": stage, "dry_run": true });
        let reason = format!("dry run: would {stage}; {reason}");
        let notice = format!("stale_{stage}_dry:{stamp}");
        return Ok(usize::from(
            s.keys
                .notify(key, "key.stale", reason, changes, notice)
                .await?,
        ));
    }
    let notice = format!("stale_{stage}:{stamp}");
    let reason_text = crate::domain::Reason::parse(reason).ok();
    let revoke = stage == "revoke";
    let (action, kind) = match revoke {
        true => ("key.revoked", ChangeKind::Revoked),
        false => ("key.disabled", ChangeKind::Disabled),
    };
    let changed = s
        .keys
        .scheduled_change(
            key,
            notice,
            action,
            kind,
            reason.to_owned(),
            move |k, now| {
                if revoke {
                    k.revoked_at = Some(now);
                    k.revoke_reason = reason_text.clone();
                } else {
                    k.disabled_at = Some(now);
                    k.disable_reason = reason_text.clone();
                }
            },
        )
        .await?;
    Ok(usize::from(changed))
}

/// Active and disabled keys unused for `after`, read from the store (which
/// holds every replica's flushed last use).
async fn stale_keys(s: &Scheduler, after: Duration) -> Result<Vec<KeyRecord>> {
    let actor = crate::keys::scheduler();
    let mut out = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = s
            .keys
            .list(
                KeyQuery {
                    keyspace_id: None,
                    owner_id: None,
                    state: None,
                    unused_for: Some(after),
                    order: KeyOrder::LastUsedAsc,
                    page_size: 1000,
                    page_token,
                },
                &actor,
            )
            .await?;
        let now = s.clock.now();
        let open = |k: &KeyRecord| matches!(k.state(now), KeyState::Active | KeyState::Disabled);
        out.extend(page.items.into_iter().filter(open));
        match page.next_page_token {
            Some(next) => page_token = next,
            None => break,
        }
    }
    Ok(out)
}
