//! A new credit balance, written in the transaction of the key or owner it
//! belongs to, and the refill columns both that insert and the lease
//! updates write. Apart from `quota_sql.rs` so that the key write can call
//! it without importing the store that calls the key write.

use super::{
    StoreError,
    db::{Tx, sql},
};
use crate::domain::{
    Timestamp,
    quota::{CreditPolicy, RefillInterval},
};

/// A new balance, written with the key or owner it belongs to.
#[derive(Clone, Debug)]
pub struct NewBalance {
    pub subject: String,
    pub remaining: i64,
    pub policy: CreditPolicy,
}

/// The refill columns of a policy: kind, amount, day, every_ms.
pub(super) fn policy_columns(
    p: &CreditPolicy,
) -> (Option<&'static str>, Option<i64>, Option<i64>, Option<i64>) {
    match p.refill {
        None => (None, None, None, None),
        Some(r) => {
            let (kind, day, every) = match r.interval() {
                RefillInterval::Daily => ("daily", None, None),
                RefillInterval::Monthly { day } => ("monthly", Some(i64::from(day)), None),
                RefillInterval::Every(d) => ("every", None, Some(d.as_millis() as i64)),
            };
            (Some(kind), Some(r.amount()), day, every)
        }
    }
}

/// Writes a new balance in `tx`, with the key or owner it belongs to; one
/// that exists (its credits were turned off and on again) starts afresh.
pub(super) async fn insert_balance(
    tx: &mut Tx,
    b: &NewBalance,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (kind, amount, day, every) = policy_columns(&b.policy);
    sql(
        "INSERT INTO credit_balances (subject, remaining, refill_kind, refill_amount, \
         refill_day, refill_every_ms, last_refill_at, low_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7) ON CONFLICT (subject) DO UPDATE SET \
         remaining = excluded.remaining, refill_kind = excluded.refill_kind, \
         refill_amount = excluded.refill_amount, refill_day = excluded.refill_day, \
         refill_every_ms = excluded.refill_every_ms, last_refill_at = excluded.last_refill_at, \
         low_at = excluded.low_at, updated_at = excluded.updated_at",
    )
    .bind(b.subject.as_str())
    .bind(b.remaining)
    .bind(kind)
    .bind(amount)
    .bind(day)
    .bind(every)
    .bind(now.as_millis())
    .bind(b.policy.low_at)
    .execute(tx)
    .await?;
    Ok(())
}
