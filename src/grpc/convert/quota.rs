//! Usage limits on the wire: named limits, credit settings and balances,
//! owners, verify costs and limit states.

use std::collections::HashMap;

use super::{duration, metadata, pb, to_timestamp};
use crate::{
    domain::{
        Metadata, OwnerId, StalePolicy,
        quota::{
            self, CreditPolicy, LimitName, Limits, MAX_COST, NamedLimit, Refill, RefillInterval,
        },
        restriction::RateLimit,
    },
    error::{Error, Result},
    keys::{CreditsOf, NewCredits},
    limits::{Holder, Kind, Report},
    store::{Balance, Owner},
};

/// Parses named limits at `field` (`limits[i].requests`, …).
pub fn named_limits(field: &str, raw: Vec<pb::NamedLimit>) -> Result<Limits> {
    if raw.len() > quota::MAX_LIMITS {
        return Err(Error::invalid(field, quota::QuotaError::TooMany));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (
        i,
        pb::NamedLimit {
            name,
            requests,
            period,
            burst,
        },
    ) in raw.into_iter().enumerate()
    {
        let at = |f: &str| format!("{field}[{i}].{f}");
        let name = LimitName::parse(&name).map_err(|e| Error::invalid(at("name"), e))?;
        let period = period.ok_or_else(|| Error::invalid(at("period"), "is required"))?;
        let period = duration(&at("period"), period)?;
        let burst = if burst == 0 { requests } else { burst };
        let rate = RateLimit::new(requests, period, burst).map_err(|e| {
            let f = match e {
                crate::domain::restriction::RateLimitError::Requests => "requests",
                crate::domain::restriction::RateLimitError::Period => "period",
                crate::domain::restriction::RateLimitError::Burst => "burst",
            };
            Error::invalid(at(f), e)
        })?;
        out.push(NamedLimit { name, rate });
    }
    Limits::new(out).map_err(|e| Error::invalid(field, e))
}

pub fn to_named_limits(limits: &Limits) -> Vec<pb::NamedLimit> {
    limits
        .iter()
        .map(|l| pb::NamedLimit {
            name: l.name.as_str().to_owned(),
            requests: l.rate.requests(),
            period: Some(crate::grpc::wkt::Duration {
                seconds: l.rate.period().as_secs() as i64,
                nanos: l.rate.period().subsec_nanos() as i32,
            }),
            burst: l.rate.burst(),
        })
        .collect()
}

pub fn refill(field: &str, r: pb::CreditRefill) -> Result<Refill> {
    use pb::credit_refill::Interval;
    let interval = match r.interval {
        None => return Err(Error::invalid(field, "needs daily, monthly_day or every")),
        Some(Interval::Daily(_)) => RefillInterval::Daily,
        Some(Interval::MonthlyDay(d)) => RefillInterval::Monthly {
            day: u8::try_from(d).unwrap_or(0),
        },
        Some(Interval::Every(d)) => RefillInterval::Every(duration(&format!("{field}.every"), d)?),
    };
    Refill::new(r.amount, interval).map_err(|(f, e)| {
        let f = match f {
            "day" => "monthly_day",
            other => other,
        };
        Error::invalid(format!("{field}.{f}"), e)
    })
}

fn to_refill(r: &Refill) -> pb::CreditRefill {
    use pb::credit_refill::Interval;
    pb::CreditRefill {
        amount: r.amount(),
        interval: Some(match r.interval() {
            RefillInterval::Daily => Interval::Daily(true),
            RefillInterval::Monthly { day } => Interval::MonthlyDay(u32::from(day)),
            RefillInterval::Every(d) => Interval::Every(crate::grpc::wkt::Duration {
                seconds: d.as_secs() as i64,
                nanos: d.subsec_nanos() as i32,
            }),
        }),
    }
}

fn low_at(field: &str, v: Option<i64>) -> Result<Option<i64>> {
    v.map(|n| quota::check_credits(n).map_err(|e| Error::invalid(field, e)))
        .transpose()
}

pub fn credit_settings(field: &str, c: pb::CreditSettings) -> Result<NewCredits> {
    let pb::CreditSettings {
        remaining,
        refill: raw_refill,
        low_at: raw_low,
    } = c;
    Ok(NewCredits {
        remaining: quota::check_credits(remaining)
            .map_err(|e| Error::invalid(format!("{field}.remaining"), e))?,
        policy: CreditPolicy {
            refill: raw_refill
                .map(|r| refill(&format!("{field}.refill"), r))
                .transpose()?,
            low_at: low_at(&format!("{field}.low_at"), raw_low)?,
        },
    })
}

pub fn to_credits(b: &Balance) -> pb::Credits {
    pb::Credits {
        remaining: b.remaining,
        held: b.held,
        refill: b.policy.refill.as_ref().map(to_refill),
        low_at: b.policy.low_at,
        last_refill_time: Some(to_timestamp(b.last_refill_at)),
        next_refill_time: b
            .policy
            .refill
            .map(|r| to_timestamp(r.next_after(b.last_refill_at))),
        forfeited: b.forfeited,
    }
}

/// Whose balance a request names: a key's or an owner's.
pub fn credits_of(key_id: Option<&str>, owner: Option<&str>) -> Result<CreditsOf> {
    match (key_id, owner) {
        (Some(k), None) => Ok(CreditsOf::Key(super::key_id("key_id", k)?)),
        (None, Some(o)) => Ok(CreditsOf::Owner(super::owner_id("owner_id", o)?)),
        _ => Err(Error::invalid("key_id", "set key_id or owner_id")),
    }
}

/// The change an UpdateCredits asks for.
pub fn credit_change(
    c: Option<pb::update_credits_request::Change>,
) -> Result<Option<crate::store::CreditChange>> {
    use crate::store::CreditChange;
    use pb::update_credits_request::Change;
    let check = |f: &str, n: i64| quota::check_credits(n).map_err(|e| Error::invalid(f, e));
    Ok(match c {
        None => None,
        Some(Change::Set(n)) => Some(CreditChange::Set(check("set", n)?)),
        Some(Change::Increment(n)) => Some(CreditChange::Increment(check("increment", n)?)),
        Some(Change::Decrement(n)) => Some(CreditChange::Decrement(check("decrement", n)?)),
    })
}

/// A new policy from an UpdateCredits, over the current one.
pub fn credit_policy(
    current: CreditPolicy,
    raw_refill: Option<pb::CreditRefill>,
    clear_refill: bool,
    raw_low: Option<i64>,
) -> Result<Option<CreditPolicy>> {
    if raw_refill.is_some() && clear_refill {
        return Err(Error::invalid(
            "clear_refill",
            "set refill or clear_refill, not both",
        ));
    }
    if raw_refill.is_none() && !clear_refill && raw_low.is_none() {
        return Ok(None);
    }
    let mut p = current;
    if let Some(r) = raw_refill {
        p.refill = Some(refill("refill", r)?);
    }
    if clear_refill {
        p.refill = None;
    }
    if raw_low.is_some() {
        p.low_at = low_at("low_at", raw_low)?;
    }
    Ok(Some(p))
}

pub fn to_owner(o: &Owner, policy: Option<&StalePolicy>) -> pb::Owner {
    pb::Owner {
        stale_policy: policy.map(|p| super::to_owner_policy(&o.id, p)),
        owner_id: o.id.as_str().to_owned(),
        metadata: o
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        limits: to_named_limits(&o.limits),
        has_credits: o.credits,
        create_time: Some(to_timestamp(o.created_at)),
        update_time: Some(to_timestamp(o.updated_at)),
        version: o.version,
    }
}

/// An owner's fields from an UpdateOwner, as named by its mask.
pub struct OwnerPatch {
    pub metadata: Option<Metadata>,
    pub limits: Option<Limits>,
    pub credits: Option<NewCredits>,
    /// `Some(None)` removes the policy.
    pub stale_policy: Option<Option<StalePolicy>>,
}

pub fn owner_patch(req: pb::UpdateOwnerRequest) -> Result<(OwnerId, OwnerPatch, String)> {
    let pb::UpdateOwnerRequest {
        owner_id: raw_id,
        metadata: raw_metadata,
        limits,
        credits,
        update_mask,
        reason,
        stale_policy,
    } = req;
    let id = super::owner_id("owner_id", &raw_id)?;
    let paths = super::update_paths(
        update_mask,
        &["metadata", "limits", "credits", "stale_policy"],
    )?;
    let named = |p: &str| paths.iter().any(|x| x == p);
    let patch = OwnerPatch {
        metadata: named("metadata")
            .then(|| metadata("metadata", raw_metadata))
            .transpose()?,
        limits: named("limits")
            .then(|| named_limits("limits", limits))
            .transpose()?,
        credits: if named("credits") {
            let c = credits.ok_or_else(|| Error::invalid("credits", "is required"))?;
            Some(credit_settings("credits", c)?)
        } else {
            None
        },
        stale_policy: if named("stale_policy") {
            match stale_policy {
                None => Some(None),
                Some(mut p) => {
                    if p.owner_id.is_empty() {
                        p.owner_id = id.as_str().to_owned();
                    } else if p.owner_id != id.as_str() {
                        return Err(Error::invalid(
                            "stale_policy.owner_id",
                            "must be empty or the owner's id",
                        ));
                    }
                    Some(Some(super::owner_policy(p)?.1))
                }
            }
        } else {
            None
        },
    };
    Ok((id, patch, reason))
}

/// A verify request's cost.
pub fn cost(field: &str, n: u32) -> Result<u32> {
    quota::check_cost(n).map_err(|e| Error::invalid(field, e))
}

/// A verify request's per-limit costs: `None` for none (nothing checked,
/// nothing allocated).
pub fn limit_costs(m: &HashMap<String, u32>) -> Result<Option<&HashMap<String, u32>>> {
    if m.is_empty() {
        return Ok(None);
    }
    if m.len() > 2 * quota::MAX_LIMITS {
        return Err(Error::invalid("limit_costs", "names too many limits"));
    }
    for (name, n) in m {
        if *n > MAX_COST {
            return Err(Error::invalid(
                format!("limit_costs[{}]", name.chars().take(32).collect::<String>()),
                quota::QuotaError::Cost,
            ));
        }
    }
    Ok(Some(m))
}

pub fn limit_states(reports: &[Report]) -> Vec<pb::LimitState> {
    reports
        .iter()
        .map(|r| {
            let (name, credits, limit) = match &r.pool.kind {
                Kind::Credits => ("credits".to_owned(), true, 0),
                Kind::Tokens { name, rate } => (name.as_str().to_owned(), false, rate.requests()),
            };
            pb::LimitState {
                name,
                holder: match r.holder {
                    Holder::Key => "key",
                    Holder::Owner => "owner",
                }
                .to_owned(),
                credits,
                limit,
                remaining: r.remaining.max(0),
                reset_time: r.reset_at.map(to_timestamp),
            }
        })
        .collect()
}
