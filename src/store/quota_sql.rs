//! Usage limits held across replicas: credit balances and the blocks
//! replicas lease from them, the shared buckets of named rate limits, and
//! owners. Plain functions over [`Db`], one body for both backends.
//!
//! Every lease is one short transaction on one row (`FOR UPDATE` on
//! PostgreSQL; SQLite's writer holds the database): read, compute in Rust,
//! write. A block is taken out of `remaining` when it is leased, so credits
//! are spent exactly once whatever a replica does next: it gives back what
//! it did not spend, or, if it dies, its lease expires and what it held is
//! counted as forfeited, never handed out again.

use async_trait::async_trait;
use sqlx::types::Json;

use super::{
    NewAuditEvent, StoreError,
    audit_sql::{append_audit, audit_and_commit, lock_seq},
    balance_sql::{NewBalance, insert_balance, policy_columns},
    db::{Tx, for_update, sql},
    sql::SqlStore,
};
use crate::domain::{
    Metadata, OwnerId, Timestamp,
    quota::{CreditPolicy, Limits, Refill, RefillInterval},
    restriction::{RateLimit, limits_from_json, limits_to_json},
};

/// A balance as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balance {
    /// Credits no replica holds.
    pub remaining: i64,
    /// Credits leased to replicas: spent, or about to be, or given back soon.
    pub held: i64,
    pub policy: CreditPolicy,
    pub last_refill_at: Timestamp,
    pub forfeited: i64,
}

/// What a replica got from a balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditGrant {
    pub granted: i64,
    /// `remaining` after the grant.
    pub left: i64,
    pub next_refill: Option<Timestamp>,
}

/// What a replica got from a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenGrant {
    pub granted: u32,
    /// Whole tokens left in the bucket after the grant.
    pub left: u32,
}

/// An admin change to a balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditChange {
    Set(i64),
    Increment(i64),
    Decrement(i64),
}

/// An owner as a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub id: OwnerId,
    pub metadata: Metadata,
    pub limits: Limits,
    /// Whether its keys spend the owner's credits.
    pub credits: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

/// How an admin change to a balance ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreditOutcome {
    Changed(Balance),
    /// There is no balance to change.
    NotFound,
    /// A decrement below zero: the balance as it is.
    Insufficient(Balance),
}

#[async_trait]
pub trait QuotaStore: Send + Sync {
    /// Leases up to `want` credits of `subject` to `replica` until
    /// `expires`, refilling first when a refill is due. `None` when the
    /// subject has no balance.
    async fn lease_credits(
        &self,
        subject: &str,
        replica: &str,
        want: i64,
        now: Timestamp,
        expires: Timestamp,
    ) -> Result<Option<CreditGrant>, StoreError>;
    /// Settles `replica`'s lease: `spent` of what it held was spent, and
    /// `give_back` returns to the balance. With `renew`, the lease lasts
    /// until then; without, it ends. `false` when the lease was gone (an
    /// admin change ended it, or it expired): the replica must drop what it
    /// holds.
    async fn settle_credits(
        &self,
        subject: &str,
        replica: &str,
        spent: i64,
        give_back: i64,
        renew: Option<Timestamp>,
    ) -> Result<bool, StoreError>;
    /// Ends leases that expired before `now` (their replicas died): what
    /// they held is forfeited. Then sends the low and exhausted notices
    /// owed. Returns the credits forfeited.
    async fn sweep_credits(&self, now: Timestamp) -> Result<i64, StoreError>;
    /// Takes up to `want` tokens from the shared bucket `(subject, name)` of
    /// `rate` at `now_ms`.
    async fn lease_tokens(
        &self,
        subject: &str,
        name: &str,
        rate: RateLimit,
        want: u32,
        now_ms: i64,
    ) -> Result<TokenGrant, StoreError>;
    /// Puts back tokens a replica took and did not use.
    async fn return_tokens(
        &self,
        subject: &str,
        name: &str,
        rate: RateLimit,
        n: u32,
    ) -> Result<(), StoreError>;
    async fn get_balance(&self, subject: &str) -> Result<Option<Balance>, StoreError>;
    /// Applies an admin change (and a new policy, when given) with its
    /// audit event, after a refill that is due. A set ends every lease of
    /// the balance; a decrement takes only credits no replica holds
    /// (`Insufficient` when there are fewer).
    async fn change_credits(
        &self,
        subject: &str,
        change: Option<CreditChange>,
        policy: Option<CreditPolicy>,
        audit: &NewAuditEvent,
        now: Timestamp,
    ) -> Result<CreditOutcome, StoreError>;
    async fn get_owner(&self, id: &OwnerId) -> Result<Option<Owner>, StoreError>;
    /// Owners by id after `after`: those with a row, and those only keys name.
    async fn list_owners(&self, after: Option<&str>, limit: u32) -> Result<Vec<Owner>, StoreError>;
    /// Writes `owner` (its `version` one more than the stored one, 1 for a
    /// new row) and, when given, creates its balance. `false` on a version
    /// conflict.
    async fn put_owner(
        &self,
        owner: &Owner,
        balance: Option<&NewBalance>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    /// Owners written at or after `since`, for the replicas' reload.
    async fn owners_since(&self, since: Timestamp) -> Result<Vec<Owner>, StoreError>;
}

type BalanceRow = (
    i64,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    Option<i64>,
    i64,
);

const BALANCE_COLUMNS: &str = "remaining, refill_kind, refill_amount, refill_day, \
                               refill_every_ms, last_refill_at, low_at, forfeited";

fn policy_from(
    kind: Option<&str>,
    amount: Option<i64>,
    day: Option<i64>,
    every: Option<i64>,
    low_at: Option<i64>,
) -> Result<CreditPolicy, StoreError> {
    let bad = || StoreError::Corrupt("refill of a credit balance".into());
    let interval = match kind {
        None => None,
        Some("daily") => Some(RefillInterval::Daily),
        Some("monthly") => Some(RefillInterval::Monthly {
            day: day.and_then(|d| u8::try_from(d).ok()).ok_or_else(bad)?,
        }),
        Some("every") => Some(RefillInterval::Every(std::time::Duration::from_millis(
            every.and_then(|e| u64::try_from(e).ok()).ok_or_else(bad)?,
        ))),
        Some(_) => return Err(bad()),
    };
    let refill = interval
        .map(|i| Refill::new(amount.ok_or_else(bad)?, i).map_err(|_| bad()))
        .transpose()?;
    Ok(CreditPolicy { refill, low_at })
}

struct Locked {
    remaining: i64,
    policy: CreditPolicy,
    last_refill_at: Timestamp,
    forfeited: i64,
}

async fn lock_balance(tx: &mut Tx, subject: &str) -> Result<Option<Locked>, StoreError> {
    let text = format!(
        "SELECT {BALANCE_COLUMNS} FROM credit_balances WHERE subject = $1{}",
        for_update(tx)
    );
    let row: Option<BalanceRow> = sql(text).bind(subject).fetch_optional(&mut *tx).await?;
    row.map(
        |(remaining, kind, amount, day, every, last, low_at, forfeited)| {
            Ok(Locked {
                remaining,
                policy: policy_from(kind.as_deref(), amount, day, every, low_at)?,
                last_refill_at: Timestamp::from_millis(last),
                forfeited,
            })
        },
    )
    .transpose()
}

/// Applies a refill that is due at `now`: the balance is set to the
/// refill's amount, once however many intervals passed.
fn refilled(b: &mut Locked, now: Timestamp) -> bool {
    match b.policy.refill {
        Some(r) if r.next_after(b.last_refill_at) <= now => {
            b.remaining = r.amount();
            b.last_refill_at = now;
            true
        }
        _ => false,
    }
}

/// The notice a move of the balance from `before` to `after` owes, if any:
/// `exhausted` when it reached 0 and a call wanted more (`short`), `low`
/// when it fell to the policy's line.
fn notice(policy: &CreditPolicy, before: i64, after: i64, short: bool) -> Option<&'static str> {
    let low = policy.low_at.is_some_and(|t| before > t && after <= t);
    match (low, after == 0 && short) {
        (true, true) => Some(BOTH),
        (true, false) => Some("low"),
        (false, true) => Some("exhausted"),
        (false, false) => None,
    }
}

/// Both notices owed.
const BOTH: &str = "low,exhausted";

async fn held(tx: &mut Tx, subject: &str) -> Result<i64, StoreError> {
    let (h,): (Option<i64>,) =
        sql("SELECT CAST(SUM(held) AS BIGINT) FROM credit_leases WHERE subject = $1")
            .bind(subject)
            .fetch_one(&mut *tx)
            .await?;
    Ok(h.unwrap_or(0))
}

/// Writes a balance's new state; a rise above the low line re-arms its notices.
async fn write_balance(
    tx: &mut Tx,
    subject: &str,
    b: &Locked,
    notice_due: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (kind, amount, day, every) = policy_columns(&b.policy);
    let above_low = b.remaining > b.policy.low_at.unwrap_or(0);
    sql(
        "UPDATE credit_balances SET remaining = $2, refill_kind = $3, refill_amount = $4, \
         refill_day = $5, refill_every_ms = $6, last_refill_at = $7, low_at = $8, \
         notice_due = CASE WHEN $9 IS NULL THEN notice_due \
         WHEN notice_due IS NULL OR notice_due = $9 THEN $9 ELSE 'low,exhausted' END, \
         low_sent = CASE WHEN $10 THEN FALSE ELSE low_sent END, \
         exhausted_sent = CASE WHEN $11 THEN FALSE ELSE exhausted_sent END, \
         updated_at = $12 WHERE subject = $1",
    )
    .bind(subject)
    .bind(b.remaining)
    .bind(kind)
    .bind(amount)
    .bind(day)
    .bind(every)
    .bind(b.last_refill_at.as_millis())
    .bind(b.policy.low_at)
    .bind(notice_due)
    .bind(above_low)
    .bind(b.remaining > 0)
    .bind(now.as_millis())
    .execute(tx)
    .await?;
    Ok(())
}

type OwnerRow = (
    String,
    Json<serde_json::Value>,
    Json<serde_json::Value>,
    bool,
    i64,
    i64,
    i64,
);

const OWNER_COLUMNS: &str = "id, metadata, limits, credits, created_at, updated_at, version";

fn owner_from(
    (id, metadata, limits, credits, created, updated, version): OwnerRow,
) -> Result<Owner, StoreError> {
    let bad = |what: &str| StoreError::Corrupt(format!("{what} of owner {id}"));
    Ok(Owner {
        metadata: serde_json::from_value(metadata.0)
            .map(Metadata::from_trusted)
            .map_err(|_| bad("metadata"))?,
        limits: serde_json::from_value(limits.0)
            .map_err(|_| bad("limits"))
            .and_then(|l| limits_from_json(l).map_err(|_| bad("limits")))?,
        id: OwnerId::parse(&id).map_err(|_| bad("id"))?,
        credits,
        created_at: Timestamp::from_millis(created),
        updated_at: Timestamp::from_millis(updated),
        version,
    })
}

/// The capacity of `rate`'s bucket, in millionths of a token.
fn capacity(rate: RateLimit) -> i128 {
    i128::from(rate.burst()) * 1_000_000
}

/// Millionths of a token `rate` earns in `elapsed_ms`: one expression, so
/// a slow rate (one an hour) earns its fraction instead of rounding to 0.
fn accrued(rate: RateLimit, elapsed_ms: i128) -> i128 {
    elapsed_ms.max(0) * i128::from(rate.requests()) * 1_000_000 * 1_000_000
        / (rate.period().as_nanos() as i128).max(1)
}

#[async_trait]
impl QuotaStore for SqlStore {
    async fn lease_credits(
        &self,
        subject: &str,
        replica: &str,
        want: i64,
        now: Timestamp,
        expires: Timestamp,
    ) -> Result<Option<CreditGrant>, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let Some(mut b) = lock_balance(&mut tx, subject).await? else {
            return Ok(None);
        };
        let before = b.remaining;
        let refill = refilled(&mut b, now);
        if refill {
            // A new period: blocks leased in the last one end with it, so
            // what they held is never given back into this one.
            sql("DELETE FROM credit_leases WHERE subject = $1")
                .bind(subject)
                .execute(&mut tx)
                .await?;
        }
        let granted = want.clamp(0, b.remaining);
        b.remaining -= granted;
        let due = notice(
            &b.policy,
            if refill { i64::MAX } else { before },
            b.remaining,
            granted < want,
        );
        write_balance(&mut tx, subject, &b, due, now).await?;
        if granted > 0 {
            sql(
                "INSERT INTO credit_leases (subject, replica, held, expires_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (subject, replica) DO UPDATE SET \
                 held = credit_leases.held + excluded.held, expires_at = excluded.expires_at",
            )
            .bind(subject)
            .bind(replica)
            .bind(granted)
            .bind(expires.as_millis())
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(CreditGrant {
            granted,
            left: b.remaining,
            next_refill: b.policy.refill.map(|r| r.next_after(b.last_refill_at)),
        }))
    }

    async fn settle_credits(
        &self,
        subject: &str,
        replica: &str,
        spent: i64,
        give_back: i64,
        renew: Option<Timestamp>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        // The balance row first, as every writer of a balance takes it:
        // one lock order, no deadlock.
        let text = format!(
            "SELECT subject FROM credit_balances WHERE subject = $1{}",
            for_update(&tx)
        );
        let _: Option<(String,)> = sql(text).bind(subject).fetch_optional(&mut tx).await?;
        let text = format!(
            "SELECT held FROM credit_leases WHERE subject = $1 AND replica = $2{}",
            for_update(&tx)
        );
        let Some((held,)): Option<(i64,)> = sql(text)
            .bind(subject)
            .bind(replica)
            .fetch_optional(&mut tx)
            .await?
        else {
            return Ok(false);
        };
        // Never give back more than the lease holds (an admin change may
        // have ended it and a new one begun).
        let give_back = give_back.clamp(0, (held - spent).max(0));
        let left = held - spent - give_back;
        match renew {
            Some(until) if left > 0 => {
                sql("UPDATE credit_leases SET held = $3, expires_at = $4 WHERE subject = $1 AND replica = $2")
                    .bind(subject)
                    .bind(replica)
                    .bind(left)
                    .bind(until.as_millis())
                    .execute(&mut tx)
                    .await?
            }
            _ => {
                sql("DELETE FROM credit_leases WHERE subject = $1 AND replica = $2")
                    .bind(subject)
                    .bind(replica)
                    .execute(&mut tx)
                    .await?
            }
        };
        if give_back > 0 {
            sql("UPDATE credit_balances SET remaining = remaining + $2, \
                 low_sent = CASE WHEN low_at IS NULL OR remaining + $2 > low_at THEN FALSE ELSE low_sent END, \
                 exhausted_sent = FALSE WHERE subject = $1")
                .bind(subject)
                .bind(give_back)
                .execute(&mut tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn sweep_credits(&self, now: Timestamp) -> Result<i64, StoreError> {
        let subjects: Vec<(String,)> = sql(
            "SELECT DISTINCT subject FROM credit_leases WHERE expires_at < $1 ORDER BY subject",
        )
        .bind(now.as_millis())
        .fetch_all(&self.db)
        .await?;
        let mut forfeited = 0;
        for (subject,) in subjects {
            // One balance at a time, its row locked before its leases.
            let mut tx = self.db.begin_write().await?;
            let text = format!(
                "SELECT subject FROM credit_balances WHERE subject = $1{}",
                for_update(&tx)
            );
            let _: Option<(String,)> = sql(text)
                .bind(subject.as_str())
                .fetch_optional(&mut tx)
                .await?;
            let expired: Vec<(i64,)> = sql(
                "DELETE FROM credit_leases WHERE subject = $1 AND expires_at < $2 RETURNING held",
            )
            .bind(subject.as_str())
            .bind(now.as_millis())
            .fetch_all(&mut tx)
            .await?;
            let held: i64 = expired.iter().map(|(h,)| h).sum();
            sql("UPDATE credit_balances SET forfeited = forfeited + $2 WHERE subject = $1")
                .bind(subject.as_str())
                .bind(held)
                .execute(&mut tx)
                .await?;
            tx.commit().await?;
            forfeited += held;
        }
        self.send_notices(now).await?;
        Ok(forfeited)
    }

    async fn lease_tokens(
        &self,
        subject: &str,
        name: &str,
        rate: RateLimit,
        want: u32,
        now_ms: i64,
    ) -> Result<TokenGrant, StoreError> {
        let cap = capacity(rate);
        let mut tx = self.db.begin_write().await?;
        let text = format!(
            "SELECT tokens, at_ms FROM rate_buckets WHERE subject = $1 AND name = $2{}",
            for_update(&tx)
        );
        let row: Option<(i64, i64)> = sql(text)
            .bind(subject)
            .bind(name)
            .fetch_optional(&mut tx)
            .await?;
        // A clock that went back earns nothing; the bucket never overfills.
        let (tokens, at) = row.map_or((cap, now_ms), |(t, at)| (i128::from(t), at));
        let elapsed = i128::from(now_ms.saturating_sub(at).max(0));
        let have = (tokens + accrued(rate, elapsed)).min(cap);
        let granted = (have / 1_000_000).min(i128::from(want)).max(0);
        let after = have - granted * 1_000_000;
        sql(
            "INSERT INTO rate_buckets (subject, name, tokens, at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (subject, name) DO UPDATE SET tokens = excluded.tokens, \
             at_ms = excluded.at_ms",
        )
        .bind(subject)
        .bind(name)
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(now_ms.max(at))
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(TokenGrant {
            granted: granted as u32,
            left: u32::try_from(after / 1_000_000).unwrap_or(u32::MAX),
        })
    }

    async fn return_tokens(
        &self,
        subject: &str,
        name: &str,
        rate: RateLimit,
        n: u32,
    ) -> Result<(), StoreError> {
        let cap = capacity(rate);
        // Capped at the burst, in SQL the same on both backends.
        sql(
            "UPDATE rate_buckets SET tokens = CASE WHEN tokens + $3 > $4 THEN $4 \
             ELSE tokens + $3 END WHERE subject = $1 AND name = $2",
        )
        .bind(subject)
        .bind(name)
        .bind(i64::from(n) * 1_000_000)
        .bind(i64::try_from(cap).unwrap_or(i64::MAX))
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn get_balance(&self, subject: &str) -> Result<Option<Balance>, StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        let text = format!("SELECT {BALANCE_COLUMNS} FROM credit_balances WHERE subject = $1");
        let row: Option<BalanceRow> = sql(text).bind(subject).fetch_optional(&mut tx).await?;
        let Some((remaining, kind, amount, day, every, last, low_at, forfeited)) = row else {
            return Ok(None);
        };
        let held = held(&mut tx, subject).await?;
        Ok(Some(Balance {
            remaining,
            held,
            policy: policy_from(kind.as_deref(), amount, day, every, low_at)?,
            last_refill_at: Timestamp::from_millis(last),
            forfeited,
        }))
    }

    async fn change_credits(
        &self,
        subject: &str,
        change: Option<CreditChange>,
        policy: Option<CreditPolicy>,
        audit: &NewAuditEvent,
        now: Timestamp,
    ) -> Result<CreditOutcome, StoreError> {
        let mut tx = self.db.begin_write().await?;
        // The balance first, then the change_seq lock, as a lease's notice
        // sweep takes them: one order, no deadlock.
        let Some(mut b) = lock_balance(&mut tx, subject).await? else {
            return Ok(CreditOutcome::NotFound);
        };
        lock_seq(&mut tx, 0).await?;
        if refilled(&mut b, now) {
            sql("DELETE FROM credit_leases WHERE subject = $1")
                .bind(subject)
                .execute(&mut tx)
                .await?;
        }
        let mut held = held(&mut tx, subject).await?;
        if let Some(p) = policy {
            b.policy = p;
        }
        let before = b.remaining;
        match change {
            None => {}
            Some(CreditChange::Increment(n)) => b.remaining = b.remaining.saturating_add(n),
            // Only credits no replica holds can be taken away: what a
            // replica holds may be spent already (it settles every second),
            // so counting it would hand out credits that are gone.
            Some(CreditChange::Decrement(n)) if n > b.remaining => {
                return Ok(CreditOutcome::Insufficient(Balance {
                    remaining: b.remaining,
                    held,
                    policy: b.policy,
                    last_refill_at: b.last_refill_at,
                    forfeited: b.forfeited,
                }));
            }
            Some(CreditChange::Decrement(n)) => b.remaining -= n,
            Some(CreditChange::Set(n)) => {
                // What replicas hold counts as spent from here; their
                // leases end, and each drops what it holds at its next
                // settle (within a second).
                sql("DELETE FROM credit_leases WHERE subject = $1")
                    .bind(subject)
                    .execute(&mut tx)
                    .await?;
                held = 0;
                b.remaining = n;
            }
        }
        if b.remaining > crate::domain::quota::MAX_CREDITS {
            b.remaining = crate::domain::quota::MAX_CREDITS;
        }
        let due = notice(&b.policy, before, b.remaining, before > 0);
        write_balance(&mut tx, subject, &b, due, now).await?;
        append_audit(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        Ok(CreditOutcome::Changed(Balance {
            remaining: b.remaining,
            held,
            policy: b.policy,
            last_refill_at: b.last_refill_at,
            forfeited: b.forfeited,
        }))
    }

    async fn get_owner(&self, id: &OwnerId) -> Result<Option<Owner>, StoreError> {
        let text = format!("SELECT {OWNER_COLUMNS} FROM owners WHERE id = $1");
        let row: Option<OwnerRow> = sql(text).bind(id.as_str()).fetch_optional(&self.db).await?;
        if let Some(row) = row {
            return owner_from(row).map(Some);
        }
        // An owner only keys name exists too, with nothing set.
        let named: Option<(i64,)> =
            sql("SELECT MIN(created_at) FROM keys WHERE owner_id = $1 HAVING COUNT(*) > 0")
                .bind(id.as_str())
                .fetch_optional(&self.db)
                .await?;
        Ok(named.map(|(at,)| bare_owner(id.clone(), Timestamp::from_millis(at))))
    }

    async fn list_owners(&self, after: Option<&str>, limit: u32) -> Result<Vec<Owner>, StoreError> {
        let rows: Vec<(String, Option<i64>)> = sql(
            "SELECT id, MIN(at) FROM (SELECT id, created_at AS at FROM owners \
             UNION ALL SELECT owner_id AS id, created_at AS at FROM keys) o \
             WHERE $1 IS NULL OR id > $1 GROUP BY id ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, at) in rows {
            let id =
                OwnerId::parse(&id).map_err(|_| StoreError::Corrupt(format!("owner id {id}")))?;
            match self.get_owner(&id).await? {
                Some(o) => out.push(o),
                None => out.push(bare_owner(id, Timestamp::from_millis(at.unwrap_or(0)))),
            }
        }
        Ok(out)
    }

    async fn put_owner(
        &self,
        owner: &Owner,
        balance: Option<&NewBalance>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_seq(&mut tx, 0).await?;
        let limits = serde_json::to_value(limits_to_json(&owner.limits)).unwrap_or_default();
        let n = if owner.version == 1 {
            sql(format!(
                "INSERT INTO owners ({OWNER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, 1) \
                 ON CONFLICT (id) DO NOTHING"
            ))
            .bind(owner.id.as_str())
            .bind(serde_json::to_value(owner.metadata.as_map()).unwrap_or_default())
            .bind(limits)
            .bind(owner.credits)
            .bind(owner.created_at.as_millis())
            .bind(owner.updated_at.as_millis())
            .execute(&mut tx)
            .await?
        } else {
            sql(
                "UPDATE owners SET metadata = $2, limits = $3, credits = $4, updated_at = $5, \
                 version = $6 WHERE id = $1 AND version = $7",
            )
            .bind(owner.id.as_str())
            .bind(serde_json::to_value(owner.metadata.as_map()).unwrap_or_default())
            .bind(limits)
            .bind(owner.credits)
            .bind(owner.updated_at.as_millis())
            .bind(owner.version)
            .bind(owner.version - 1)
            .execute(&mut tx)
            .await?
        };
        if n == 0 {
            return Ok(false);
        }
        if let Some(b) = balance {
            insert_balance(&mut tx, b, owner.updated_at).await?;
        }
        audit_and_commit(tx, audit).await?;
        Ok(true)
    }

    async fn owners_since(&self, since: Timestamp) -> Result<Vec<Owner>, StoreError> {
        let text = format!("SELECT {OWNER_COLUMNS} FROM owners WHERE updated_at >= $1");
        let rows: Vec<OwnerRow> = sql(text)
            .bind(since.as_millis())
            .fetch_all(&self.db)
            .await?;
        rows.into_iter().map(owner_from).collect()
    }
}

fn bare_owner(id: OwnerId, at: Timestamp) -> Owner {
    Owner {
        id,
        metadata: Metadata::EMPTY,
        limits: Limits::default(),
        credits: false,
        created_at: at,
        updated_at: at,
        version: 0,
    }
}

impl SqlStore {
    /// Sends each owed notice as an audit event (and so a webhook), in one
    /// transaction per balance: balance row first, then the change_seq lock.
    async fn send_notices(&self, now: Timestamp) -> Result<(), StoreError> {
        let due: Vec<(String,)> =
            sql("SELECT subject FROM credit_balances WHERE notice_due IS NOT NULL")
                .fetch_all(&self.db)
                .await?;
        for (subject,) in due {
            let mut tx = self.db.begin_write().await?;
            let text = format!(
                "SELECT notice_due, remaining, low_sent, exhausted_sent FROM credit_balances \
                 WHERE subject = $1{}",
                for_update(&tx)
            );
            let row: Option<(Option<String>, i64, bool, bool)> = sql(text)
                .bind(subject.as_str())
                .fetch_optional(&mut tx)
                .await?;
            let Some((Some(kinds), remaining, low_sent, exhausted_sent)) = row else {
                continue;
            };
            lock_seq(&mut tx, 0).await?;
            let owed = [
                ("low", low_sent, "key.credits_low", "low_sent"),
                (
                    "exhausted",
                    exhausted_sent,
                    "key.credits_exhausted",
                    "exhausted_sent",
                ),
            ];
            for (kind, sent, action, flag) in owed {
                if sent || !kinds.split(',').any(|k| k == kind) {
                    continue;
                }
                append_audit(&mut tx, &[notice_event(action, &subject, remaining, now)]).await?;
                sql(format!(
                    "UPDATE credit_balances SET {flag} = TRUE WHERE subject = $1"
                ))
                .bind(subject.as_str())
                .execute(&mut tx)
                .await?;
            }
            sql("UPDATE credit_balances SET notice_due = NULL WHERE subject = $1")
                .bind(subject.as_str())
                .execute(&mut tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

fn notice_event(
    action: &'static str,
    subject: &str,
    remaining: i64,
    at: Timestamp,
) -> NewAuditEvent {
    let (key_id, owner_id) = match subject.split_once(':') {
        Some(("key", id)) => (id.parse().ok(), None),
        Some(("owner", id)) => (None, OwnerId::parse(id).ok()),
        _ => (None, None),
    };
    NewAuditEvent {
        at,
        actor: "system".into(),
        action,
        key_id,
        owner_id,
        reason: None,
        changes: serde_json::json!({ "subject": subject, "remaining": remaining }),
        request_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_fire_on_crossing_only() {
        let p = CreditPolicy {
            refill: None,
            low_at: Some(10),
        };
        assert_eq!(notice(&p, 11, 10, false), Some("low"));
        assert_eq!(notice(&p, 10, 9, false), None, "already below the line");
        assert_eq!(
            notice(&p, 11, 0, true),
            Some(BOTH),
            "one lease can owe both"
        );
        assert_eq!(notice(&p, 5, 0, true), Some("exhausted"));
        assert_eq!(
            notice(&p, 11, 0, false),
            Some("low"),
            "all leased, none wanted in vain"
        );
        assert_eq!(notice(&CreditPolicy::default(), 100, 1, false), None);
    }

    #[test]
    fn slow_and_fast_rates_accrue_exactly() {
        use std::time::Duration;
        let fast = RateLimit::new(100, Duration::from_secs(1), 100).unwrap();
        assert_eq!(
            accrued(fast, 1),
            100_000,
            "a tenth of a token a millisecond"
        );
        assert_eq!(capacity(fast), 100_000_000);
        let hourly = RateLimit::new(1, Duration::from_secs(3600), 1).unwrap();
        assert_eq!(
            accrued(hourly, 3_600_000),
            1_000_000,
            "one an hour is one an hour"
        );
        assert_eq!(accrued(hourly, 1_800_000), 500_000);
        let five = RateLimit::new(5, Duration::from_secs(3600), 5).unwrap();
        assert_eq!(
            accrued(five, 3_600_000),
            5_000_000,
            "no rounding per millisecond"
        );
        assert_eq!(accrued(fast, -5), 0, "a clock that went back earns nothing");
    }
}
