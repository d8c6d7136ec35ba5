//! Scheduled rotation: `key.rotation_due` notices before the due time, then
//! the policy's action at it.

use serde_json::json;

use super::{DueAction, RotationPolicy, Scheduler, days};
use crate::{error::Result, store::ChangeKind};

pub async fn run(s: &Scheduler, policy: &RotationPolicy) -> Result<usize> {
    let now = s.clock.now();
    let mut sent = 0;
    for key in s.live_keys() {
        if key.rotated_to.is_some() || key.state(now) != crate::domain::KeyState::Active {
            continue;
        }
        // A successor's clock starts at its own creation: the rotation.
        let due = key.created_at.saturating_add(policy.every);
        let due_ms = due.as_millis();
        if now >= due {
            let notice = format!("rotation_action:{due_ms}");
            match policy.action {
                DueAction::Notify => {
                    let reason = "the key is due for rotation".to_owned();
                    let changes = json!({ "due_at": due_ms, "action": "notify" });
                    sent += usize::from(
                        s.keys
                            .notify(&key, "key.rotation_due", reason, changes, notice)
                            .await?,
                    );
                }
                DueAction::Expire => {
                    let end = due.saturating_add(policy.grace);
                    let reason = format!(
                        "due for rotation; expires at the end of a {}-day grace",
                        days(policy.grace)
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
            }
            continue;
        }
        let remaining = due_ms - now.as_millis();
        let lead = policy
            .notice
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
    }
    Ok(sent)
}
