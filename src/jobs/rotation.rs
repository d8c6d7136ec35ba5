//! Scheduled rotation: `key.rotation_due` notices before the due time, then
//! the policy's action at it. A key's own policy wins over the server's
//! default.

use serde_json::json;

use super::{Scheduler, days};
use crate::{
    domain::{KeyRotation, KeyState},
    error::Result,
    store::{ChangeKind, LiveKeys},
};

pub async fn run(s: &Scheduler) -> Result<usize> {
    let now = s.clock.now();
    let mut sent = 0;
    // A server-wide default reaches every key; without one, only keys
    // with a policy of their own are due.
    let which = match s.config.default_rotation {
        Some(_) => LiveKeys::All,
        None => LiveKeys::WithRotationPolicy,
    };
    for key in s.live_keys(which).await? {
        if key.rotated_to.is_some() || key.state(now) != KeyState::Active {
            continue;
        }
        let Some(KeyRotation::Every { every, expire }) = key.rotation.or(s.config.default_rotation)
        else {
            continue;
        };
        // A successor's clock starts at its own creation: the rotation;
        // an imported key's, at its import.
        let due = key.arrived_at().saturating_add(every);
        let due_ms = due.as_millis();
        if now < due {
            let remaining = due_ms - now.as_millis();
            let lead = s
                .config
                .rotation_notice
                .iter()
                .filter(|l| remaining <= l.as_millis() as i64)
                .min();
            if let Some(lead) = lead {
                let notice = format!("rotation_due:{}d:{due_ms}", days(*lead));
                let reason = format!("the key is due for rotation within {} days", days(*lead));
                let changes = json!({ "due_at": due_ms, "notice_days": days(*lead) });
                sent += usize::from(
                    s.keys
                        .notify(&key, "key.rotation_due", reason, changes, notice)
                        .await?,
                );
            }
            continue;
        }
        let notice = format!("rotation_action:{due_ms}");
        if !expire {
            let reason = "the key is due for rotation".to_owned();
            let changes = json!({ "due_at": due_ms, "action": "notify" });
            sent += usize::from(
                s.keys
                    .notify(&key, "key.rotation_due", reason, changes, notice)
                    .await?,
            );
            continue;
        }
        let grace = s.config.rotation_grace;
        let end = due.saturating_add(grace);
        let reason = format!(
            "due for rotation; expires after a {}-day grace",
            days(grace)
        );
        let changed = s
            .keys
            .scheduled_change(
                &key,
                notice,
                "key.rotation_due",
                ChangeKind::ExpiryShortened,
                reason,
                |k, _| {
                    k.expires_at = Some(k.expires_at.map_or(end, |e| e.min(end)));
                },
            )
            .await?;
        sent += usize::from(changed);
    }
    Ok(sent)
}
