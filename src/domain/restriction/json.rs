//! The stored (and audited) JSON form of [`Restrictions`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{
    KeyId,
    quota::{KeyQuota, LimitName, Limits, NamedLimit},
};

use super::{
    IpAllowlist, Mode, RateLimit, ReferrerAllowlist, ResourceAllowlist, Restrictions, Rule,
};

#[derive(Serialize, Deserialize, Default)]
struct Json {
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<ListJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    referrer: Option<ListJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<ListJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<RateJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quota: Option<QuotaJson>,
}

#[derive(Serialize, Deserialize)]
struct QuotaJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pool: Option<String>,
    #[serde(default)]
    credits: bool,
    #[serde(default)]
    limits: Vec<LimitJson>,
}

/// A named limit, as stored for keys and owners alike.
#[derive(Serialize, Deserialize)]
pub struct LimitJson {
    pub name: String,
    pub requests: u32,
    pub period_ms: u64,
    pub burst: u32,
}

/// Named limits to their stored JSON.
pub fn limits_to_json(limits: &Limits) -> Vec<LimitJson> {
    limits
        .iter()
        .map(|l| LimitJson {
            name: l.name.as_str().to_owned(),
            requests: l.rate.requests(),
            period_ms: l.rate.period().as_millis() as u64,
            burst: l.rate.burst(),
        })
        .collect()
}

/// Named limits from their stored JSON.
pub fn limits_from_json(json: Vec<LimitJson>) -> Result<Limits, String> {
    let limits = json
        .into_iter()
        .map(|l| {
            Ok(NamedLimit {
                name: LimitName::parse(&l.name).map_err(|e| e.to_string())?,
                rate: RateLimit::new(l.requests, Duration::from_millis(l.period_ms), l.burst)
                    .map_err(|e| e.to_string())?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Limits::new(limits).map_err(|e| e.to_string())
}

#[derive(Serialize, Deserialize)]
struct ListJson {
    allow: Vec<String>,
    mode: String,
}

#[derive(Serialize, Deserialize)]
struct RateJson {
    requests: u32,
    period_ms: u64,
    burst: u32,
    mode: String,
}

fn list<T>(rule: &Option<Rule<T>>, entries: impl Fn(&T) -> Vec<String>) -> Option<ListJson> {
    rule.as_ref().map(|r| ListJson {
        allow: entries(&r.allow),
        mode: r.mode.as_str().to_owned(),
    })
}

fn entry_err<E>(e: (usize, E)) -> String {
    format!("entry {}", e.0)
}

impl Restrictions {
    pub fn to_json(&self) -> serde_json::Value {
        let json = Json {
            ip: list(&self.ip, |a| a.entries().collect()),
            referrer: list(&self.referrer, |a| a.entries().collect()),
            resource: list(&self.resource, |a| a.entries().collect()),
            rate_limit: self.rate_limit.as_ref().map(|r| RateJson {
                requests: r.allow.requests(),
                period_ms: r.allow.period().as_millis() as u64,
                burst: r.allow.burst(),
                mode: r.mode.as_str().to_owned(),
            }),
            quota: self.quota.as_ref().map(|q| QuotaJson {
                pool: q.pool.as_ref().map(|p| p.as_str().to_owned()),
                credits: q.credits,
                limits: limits_to_json(&q.limits),
            }),
        };
        serde_json::to_value(json).unwrap_or_default()
    }

    /// Reads restrictions back from the store (see
    /// [`ResourceAllowlist::parse_stored`]).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        let json: Json = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        let mode = |m: &str| Mode::parse(m).ok_or_else(|| format!("unknown mode {m}"));
        let rule = |l: Option<ListJson>| -> Result<Option<(Vec<String>, Mode)>, String> {
            l.map(|l| Ok((l.allow, mode(&l.mode)?))).transpose()
        };
        Ok(Self {
            ip: rule(json.ip)?
                .map(|(a, mode)| {
                    Ok::<_, String>(Rule {
                        allow: IpAllowlist::parse(&a).map_err(entry_err)?,
                        mode,
                    })
                })
                .transpose()?,
            referrer: rule(json.referrer)?
                .map(|(a, mode)| {
                    Ok::<_, String>(Rule {
                        allow: ReferrerAllowlist::parse(&a).map_err(entry_err)?,
                        mode,
                    })
                })
                .transpose()?,
            resource: rule(json.resource)?
                .map(|(a, mode)| {
                    Ok::<_, String>(Rule {
                        allow: ResourceAllowlist::parse_stored(&a).map_err(entry_err)?,
                        mode,
                    })
                })
                .transpose()?,
            rate_limit: json
                .rate_limit
                .map(|r| {
                    let limit =
                        RateLimit::new(r.requests, Duration::from_millis(r.period_ms), r.burst)
                            .map_err(|e| e.to_string())?;
                    Ok::<_, String>(Rule {
                        allow: limit,
                        mode: mode(&r.mode)?,
                    })
                })
                .transpose()?,
            quota: json
                .quota
                .map(|q| {
                    Ok::<_, String>(Box::new(KeyQuota {
                        pool: q
                            .pool
                            .map(|p| p.parse::<KeyId>())
                            .transpose()
                            .map_err(|_| "quota pool is not a key id".to_owned())?,
                        credits: q.credits,
                        limits: limits_from_json(q.limits)?,
                    }))
                })
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let r = Restrictions {
            ip: Some(Rule {
                allow: IpAllowlist::parse(&["10.0.0.0/8", "2001:db8::/32"]).unwrap(),
                mode: Mode::Enforce,
            }),
            referrer: Some(Rule {
                allow: ReferrerAllowlist::parse(&["*.example.com"]).unwrap(),
                mode: Mode::ReportOnly,
            }),
            resource: Some(Rule {
                allow: ResourceAllowlist::parse(&["acct_1/*"]).unwrap(),
                mode: Mode::Enforce,
            }),
            rate_limit: Some(Rule {
                allow: RateLimit::new(10, Duration::from_secs(1), 20).unwrap(),
                mode: Mode::Enforce,
            }),
            quota: Some(Box::new(KeyQuota {
                pool: Some(KeyId::generate()),
                credits: true,
                limits: Limits::new(vec![NamedLimit {
                    name: LimitName::parse("tokens").unwrap(),
                    rate: RateLimit::new(50_000, Duration::from_secs(60), 50_000).unwrap(),
                }])
                .unwrap(),
            })),
        };
        assert_eq!(Restrictions::from_json(&r.to_json()), Ok(r));
        assert_eq!(
            Restrictions::from_json(&Restrictions::default().to_json()),
            Ok(Restrictions::default())
        );
    }
}
