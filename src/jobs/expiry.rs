//! `key.expiring` at the configured lead times, and `key.expired`.

use serde_json::json;

use super::{Scheduler, days, expired_notice};
use crate::{error::Result, store::LiveKeys};

pub async fn run(s: &Scheduler) -> Result<usize> {
    let now = s.clock.now();
    let mut sent = 0;
    // Expired, or within the longest notice lead of it.
    let lead = s
        .config
        .expiry_notice
        .iter()
        .max()
        .copied()
        .unwrap_or_default();
    for key in s
        .live_keys(LiveKeys::ExpiringBy(now.saturating_add(lead)))
        .await?
    {
        let Some(expires) = key.expires_at else {
            continue;
        };
        let ms = expires.as_millis();
        if now >= expires {
            let notice = expired_notice(ms);
            let reason = "the key reached its expiry".to_owned();
            let changes = json!({ "expires_at": ms });
            sent += usize::from(
                s.keys
                    .notify(&key, "key.expired", reason, changes, notice)
                    .await?,
            );
            continue;
        }
        // Only the tightest lead already crossed: a key created with a day
        // to live gets the one-day notice, not the 14- and 7-day ones too.
        let remaining = expires.as_millis() - now.as_millis();
        let lead = s
            .config
            .expiry_notice
            .iter()
            .filter(|l| remaining <= l.as_millis() as i64)
            .min();
        if let Some(lead) = lead {
            let notice = format!("expiring:{}d:{ms}", days(*lead));
            let reason = format!("the key expires within {} days", days(*lead));
            let changes = json!({ "expires_at": ms, "notice_days": days(*lead) });
            sent += usize::from(
                s.keys
                    .notify(&key, "key.expiring", reason, changes, notice)
                    .await?,
            );
        }
    }
    Ok(sent)
}
