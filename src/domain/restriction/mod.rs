//! Per-key restrictions, checked by the verify decision.
//!
//! Each restriction is enforced or report-only. A report-only restriction
//! never denies: Verify passes, and the response and usage stats record the
//! denial it would have made, so an operator can tighten a key safely.

mod ip;
mod json;
pub use json::{LimitJson, limits_from_json, limits_to_json};
pub mod rate;
mod referrer;
mod resource;

pub use ip::{IpAllowlist, IpError};
pub use rate::{RateLimit, RateLimitError, Take, TokenBucket};
pub use referrer::{ReferrerAllowlist, ReferrerError};
pub use resource::{ResourceAllowlist, ResourceError, check_resource};

/// Most entries one allowlist may hold.
pub const MAX_ALLOWLIST: usize = 100;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Enforce,
    ReportOnly,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::ReportOnly => "report_only",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enforce" => Some(Self::Enforce),
            "report_only" => Some(Self::ReportOnly),
            _ => None,
        }
    }
}

/// An allowlist and how it is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule<T> {
    pub allow: T,
    pub mode: Mode,
}

impl<T> Rule<T> {
    pub fn enforced(&self) -> bool {
        self.mode == Mode::Enforce
    }
}

/// Everything that limits where and how often a key works.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restrictions {
    pub ip: Option<Rule<IpAllowlist>>,
    pub referrer: Option<Rule<ReferrerAllowlist>>,
    pub resource: Option<Rule<ResourceAllowlist>>,
    pub rate_limit: Option<Rule<RateLimit>>,
    /// Credits and named limits, held across replicas.
    pub quota: Option<Box<crate::domain::quota::KeyQuota>>,
}

impl Restrictions {
    pub const NONE: Restrictions = Restrictions {
        ip: None,
        referrer: None,
        resource: None,
        rate_limit: None,
        quota: None,
    };

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Whether an enforced IP or referrer allowlist binds the key to its
    /// callers: required of publishable keys, which ship to browsers.
    pub fn binds_caller(&self) -> bool {
        self.ip.as_ref().is_some_and(Rule::enforced)
            || self.referrer.as_ref().is_some_and(Rule::enforced)
    }
}
