use std::{fmt, str::FromStr};

/// Secret keys (`sk_`) stay on servers; publishable keys (`pk_`) may ship to browsers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    Secret,
    Publishable,
}

/// Live keys touch real data; test keys never do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Environment {
    Live,
    Test,
}

impl KeyType {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Publishable => "publishable",
        }
    }

    pub(crate) const fn tag(self) -> &'static str {
        match self {
            Self::Secret => "sk",
            Self::Publishable => "pk",
        }
    }
}

impl Environment {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }
}

/// Raised when a stored value names no known type or environment.
#[derive(Debug, thiserror::Error)]
#[error("unknown value `{0}`")]
pub struct UnknownVariant(String);

impl UnknownVariant {
    pub(crate) fn new(s: &str) -> Self {
        Self(s.chars().take(64).collect())
    }
}

impl FromStr for KeyType {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "secret" => Ok(Self::Secret),
            "publishable" => Ok(Self::Publishable),
            other => Err(UnknownVariant(other.to_owned())),
        }
    }
}

impl FromStr for Environment {
    type Err = UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "live" => Ok(Self::Live),
            "test" => Ok(Self::Test),
            other => Err(UnknownVariant(other.to_owned())),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
