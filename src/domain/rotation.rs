//! A key's own rotation policy, overriding the server's default.

use std::time::Duration;

/// Shortest rotation period a key may ask for.
pub const MIN_ROTATION_PERIOD: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRotation {
    /// Never scheduled, whatever the server's default.
    Never,
    /// Due `every` after the key was made; at the due time either only
    /// notify, or also expire the key after the grace period.
    Every { every: Duration, expire: bool },
}

impl KeyRotation {
    pub fn every(every: Duration, expire: bool) -> Result<Self, String> {
        if every < MIN_ROTATION_PERIOD || every > Duration::from_secs(10 * 366 * 86_400) {
            return Err("rotation period must be between 1 hour and 10 years".into());
        }
        Ok(Self::Every { every, expire })
    }

    pub fn to_json(self) -> serde_json::Value {
        match self {
            Self::Never => serde_json::json!({ "never": true }),
            Self::Every { every, expire } => serde_json::json!({
                "every_ms": every.as_millis() as u64,
                "action": if expire { "expire" } else { "notify" },
            }),
        }
    }

    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        if v["never"] == true {
            return Ok(Self::Never);
        }
        let every = v["every_ms"].as_u64().ok_or("every_ms missing")?;
        let expire = match v["action"].as_str() {
            Some("expire") => true,
            Some("notify") => false,
            _ => return Err("unknown action".into()),
        };
        Self::every(Duration::from_millis(every), expire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_bounds() {
        for r in [
            KeyRotation::Never,
            KeyRotation::every(Duration::from_secs(90 * 86_400), true).unwrap(),
        ] {
            assert_eq!(KeyRotation::from_json(&r.to_json()), Ok(r));
        }
        assert!(KeyRotation::every(Duration::from_secs(60), false).is_err());
    }
}
