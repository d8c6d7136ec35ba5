use super::{duration, pb};
use crate::{
    domain::{
        Mode, Restrictions, Rule,
        quota::KeyQuota,
        restriction::{IpAllowlist, RateLimit, ReferrerAllowlist, ResourceAllowlist},
    },
    error::{Error, Result},
};

fn mode(field: &str, v: i32) -> Result<Mode> {
    match pb::RestrictionMode::try_from(v) {
        Ok(pb::RestrictionMode::Unspecified | pb::RestrictionMode::Enforce) => Ok(Mode::Enforce),
        Ok(pb::RestrictionMode::ReportOnly) => Ok(Mode::ReportOnly),
        Err(_) => Err(Error::invalid(
            format!("{field}.mode"),
            "unknown restriction mode",
        )),
    }
}

fn to_mode(m: Mode) -> i32 {
    match m {
        Mode::Enforce => pb::RestrictionMode::Enforce,
        Mode::ReportOnly => pb::RestrictionMode::ReportOnly,
    }
    .into()
}

/// Parses one allowlist, naming the bad entry as `{field}.allow[i]`.
fn allowlist<T, E: std::fmt::Display>(
    field: &str,
    allow: &[String],
    m: i32,
    parse: impl Fn(&[String]) -> Result<T, (usize, E)>,
) -> Result<Rule<T>> {
    let allow = parse(allow).map_err(|(i, e)| Error::invalid(format!("{field}.allow[{i}]"), e))?;
    Ok(Rule {
        allow,
        mode: mode(field, m)?,
    })
}

/// Parses restrictions; `field` is where they sit in the request.
pub fn restrictions(field: &str, r: Option<pb::Restrictions>) -> Result<Restrictions> {
    let Some(pb::Restrictions {
        ip,
        referrer,
        resource,
        rate_limit,
        limits,
        credits,
    }) = r
    else {
        return Ok(Restrictions::default());
    };
    let limits = super::quota::named_limits(&format!("{field}.limits"), limits)?;
    let quota = (!limits.is_empty() || credits.is_some()).then(|| {
        Box::new(KeyQuota {
            pool: None,
            credits: credits.is_some(),
            limits,
        })
    });
    let ip = ip
        .map(|pb::IpRestriction { allow, mode }| {
            allowlist(&format!("{field}.ip"), &allow, mode, |a| {
                IpAllowlist::parse(a)
            })
        })
        .transpose()?;
    let referrer = referrer
        .map(|pb::ReferrerRestriction { allow, mode }| {
            allowlist(&format!("{field}.referrer"), &allow, mode, |a| {
                ReferrerAllowlist::parse(a)
            })
        })
        .transpose()?;
    let resource = resource
        .map(|pb::ResourceRestriction { allow, mode }| {
            allowlist(&format!("{field}.resource"), &allow, mode, |a| {
                ResourceAllowlist::parse(a)
            })
        })
        .transpose()?;
    let rate_limit = rate_limit
        .map(
            |pb::RateLimit {
                 requests,
                 period,
                 burst,
                 mode: m,
             }| {
                let field = format!("{field}.rate_limit");
                let period = period
                    .ok_or_else(|| Error::invalid(format!("{field}.period"), "is required"))?;
                let period = duration(&format!("{field}.period"), period)?;
                let limit = RateLimit::new(requests, period, burst)
                    .map_err(|e| Error::invalid(&field, e))?;
                Ok::<_, Error>(Rule {
                    allow: limit,
                    mode: mode(&field, m)?,
                })
            },
        )
        .transpose()?;
    Ok(Restrictions {
        ip,
        referrer,
        resource,
        rate_limit,
        quota,
    })
}

pub fn to_restrictions(r: &Restrictions) -> Option<pb::Restrictions> {
    if r.is_empty() {
        return None;
    }
    Some(pb::Restrictions {
        ip: r.ip.as_ref().map(|x| pb::IpRestriction {
            allow: x.allow.entries().collect(),
            mode: to_mode(x.mode),
        }),
        referrer: r.referrer.as_ref().map(|x| pb::ReferrerRestriction {
            allow: x.allow.entries().collect(),
            mode: to_mode(x.mode),
        }),
        resource: r.resource.as_ref().map(|x| pb::ResourceRestriction {
            allow: x.allow.entries().collect(),
            mode: to_mode(x.mode),
        }),
        rate_limit: r.rate_limit.as_ref().map(|x| pb::RateLimit {
            requests: x.allow.requests(),
            period: Some(crate::grpc::wkt::Duration {
                seconds: x.allow.period().as_secs() as i64,
                nanos: x.allow.period().subsec_nanos() as i32,
            }),
            burst: x.allow.burst(),
            mode: to_mode(x.mode),
        }),
        limits: r
            .quota
            .as_ref()
            .map(|q| super::quota::to_named_limits(&q.limits))
            .unwrap_or_default(),
        // The balance itself is read with GetCredits; an empty settings
        // message says the key spends credits.
        credits: r
            .quota
            .as_ref()
            .filter(|q| q.credits)
            .map(|_| pb::CreditSettings::default()),
    })
}
