//! The stored (and audited) JSON form of [`Restrictions`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
        };
        assert_eq!(Restrictions::from_json(&r.to_json()), Ok(r));
        assert_eq!(
            Restrictions::from_json(&Restrictions::default().to_json()),
            Ok(Restrictions::default())
        );
    }
}
