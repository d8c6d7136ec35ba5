//! `Debug` for the wire messages that carry a secret (a key, an admin
//! token, a webhook signing secret, an imported key's raw value): the
//! secret is written as `[redacted]`, so a `{:?}` in a log line, a panic
//! message or a test failure cannot print one. `build.rs` lists these
//! messages for prost to leave their `Debug` to this file.

use std::fmt;

use super::pb;

const REDACTED: &str = "[redacted]";

impl fmt::Debug for pb::VerifyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyRequest")
            .field("key", &REDACTED)
            .field("required_scopes", &self.required_scopes)
            .field("client_ip", &self.client_ip)
            .field("referrer", &self.referrer)
            .field("resource", &self.resource)
            .field("keyspace", &self.keyspace)
            .field("required_any", &self.required_any)
            .field("cost", &self.cost)
            .field("limit_costs", &self.limit_costs)
            .finish()
    }
}

impl fmt::Debug for pb::LookupKeyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LookupKeyRequest")
            .field("key", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for pb::ReportLeakedKeyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportLeakedKeyRequest")
            .field("key", &REDACTED)
            .field("url", &self.url)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for pb::imported_key::Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hash(hash) => f.debug_tuple("Hash").field(hash).finish(),
            Self::Raw(_) => f.debug_tuple("Raw").field(&REDACTED).finish(),
        }
    }
}

impl fmt::Debug for pb::ImportedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportedKey")
            .field("secret", &self.secret)
            .field("id", &self.id)
            .field("owner_id", &self.owner_id)
            .field("name", &self.name)
            .field("external_id", &self.external_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for pb::CreateKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateKeyResponse")
            .field("key", &self.key)
            .field("secret", &REDACTED)
            .field("replayed", &self.replayed)
            .finish()
    }
}

impl fmt::Debug for pb::RotateKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotateKeyResponse")
            .field("key", &self.key)
            .field("secret", &REDACTED)
            .field("previous", &self.previous)
            .finish()
    }
}

impl fmt::Debug for pb::CreateAdminTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateAdminTokenResponse")
            .field("token", &self.token)
            .field("secret", &REDACTED)
            .finish()
    }
}

impl fmt::Debug for pb::CreateWebhookEndpointResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateWebhookEndpointResponse")
            .field("endpoint", &self.endpoint)
            .field("signing_secret", &REDACTED)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "sk_live_9fQ3xVbWq2LmN8rTzK4pYc1HdE7sGjA0uR5oXiB6nMw";

    /// Every message that carries a secret, with one in it, nested ones
    /// (a VerifyStream request, an import batch) included.
    #[test]
    fn no_message_prints_its_secret() {
        let verify = pb::VerifyRequest {
            key: SECRET.into(),
            required_scopes: vec!["a".into()],
            ..Default::default()
        };
        let printed = [
            format!("{verify:?}"),
            format!(
                "{:?}",
                pb::VerifyStreamRequest {
                    id: 1,
                    request: Some(verify.clone()),
                }
            ),
            format!("{:?}", pb::LookupKeyRequest { key: SECRET.into() }),
            format!(
                "{:?}",
                pb::ReportLeakedKeyRequest {
                    key: SECRET.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::ImportKeysRequest {
                    keys: vec![pb::ImportedKey {
                        secret: Some(pb::imported_key::Secret::Raw(SECRET.into())),
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::CreateKeyResponse {
                    secret: SECRET.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::RotateKeyResponse {
                    secret: SECRET.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::CreateAdminTokenResponse {
                    secret: SECRET.into(),
                    ..Default::default()
                }
            ),
            format!(
                "{:?}",
                pb::CreateWebhookEndpointResponse {
                    signing_secret: SECRET.into(),
                    ..Default::default()
                }
            ),
        ];
        for p in printed {
            assert!(!p.contains(&SECRET[8..]), "{p}");
            assert!(p.contains(REDACTED), "{p}");
        }
        assert!(format!("{verify:?}").contains("required_scopes: [\"a\"]"));
    }
}
