//! GitHub's secret-scanning signatures: ECDSA P-256 over SHA-256 of the raw
//! body, base64 of DER, by the public key whose `key_identifier` the request
//! names, from GitHub's key document.
//!
//! The keys are cached. An unknown identifier refetches the document, at
//! most once a minute, with a timeout; a fetch that fails or does not parse
//! keeps the last good set. A request whose key is cached never waits on
//! the key server.

use std::{
    collections::HashMap,
    str::FromStr,
    sync::{Arc, RwLock},
    time::Duration,
};

use base64::Engine;
use p256::ecdsa::{Signature, VerifyingKey, signature::Verifier};
use serde::Deserialize;
use tokio::{sync::Mutex, time::Instant};

/// Longest key identifier and signature header accepted.
const MAX_KEY_ID_LEN: usize = 256;
const MAX_SIGNATURE_LEN: usize = 512;
/// Largest key document read.
const MAX_DOCUMENT: usize = 256 * 1024;
/// Most keys one document may hold.
const MAX_KEYS: usize = 64;

/// Why a request's signature is not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("Github-Public-Key-Identifier and Github-Public-Key-Signature are required")]
    Missing,
    #[error("the signature header is not base64 of a DER ECDSA signature")]
    Malformed,
    #[error("no GitHub public key has this identifier")]
    UnknownKey,
    #[error("the signature does not match the body")]
    Mismatch,
    /// No key could be had at all: the key server has never answered well.
    #[error("GitHub's public keys are not available; retry later")]
    NoKeys,
    /// The key is not cached and a fetch of the document is running.
    #[error("GitHub's public keys are being fetched; retry shortly")]
    Fetching,
}

/// Why a fetch of the key document failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("fetching the key document: {0}")]
    Http(String),
    #[error("the key document does not parse: {0}")]
    Parse(String),
    #[error("waited {0:?} for the key document")]
    Timeout(Duration),
}

#[derive(Clone, Debug)]
pub struct KeysConfig {
    /// The key document (`--github-keys-url`).
    pub url: String,
    /// How long one fetch may take, connection to last byte.
    pub fetch_timeout: Duration,
    /// The least time between two fetches caused by unknown identifiers.
    pub refetch_interval: Duration,
    /// How often the document is fetched anyway, so a key GitHub withdrew
    /// stops being trusted.
    pub refresh_interval: Duration,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            url: "https://api.github.com/meta/public_keys/secret_scanning".into(),
            fetch_timeout: Duration::from_secs(5),
            refetch_interval: Duration::from_secs(60),
            refresh_interval: Duration::from_secs(3600),
        }
    }
}

#[derive(Deserialize)]
struct Document {
    public_keys: Vec<DocumentKey>,
}

#[derive(Deserialize)]
struct DocumentKey {
    key_identifier: String,
    key: String,
}

/// Parses a key document: every key must parse, or the whole document is
/// refused (a half-read document would silently drop a key).
fn parse_document(body: &[u8]) -> Result<HashMap<String, VerifyingKey>, FetchError> {
    let doc: Document =
        serde_json::from_slice(body).map_err(|e| FetchError::Parse(e.to_string()))?;
    if doc.public_keys.is_empty() || doc.public_keys.len() > MAX_KEYS {
        return Err(FetchError::Parse(format!(
            "holds {} keys; expected 1 to {MAX_KEYS}",
            doc.public_keys.len()
        )));
    }
    doc.public_keys
        .into_iter()
        .map(|k| {
            if k.key_identifier.is_empty() || k.key_identifier.len() > MAX_KEY_ID_LEN {
                return Err(FetchError::Parse(
                    "a key_identifier is empty or too long".into(),
                ));
            }
            let key = VerifyingKey::from_str(&k.key).map_err(|_| {
                FetchError::Parse(format!(
                    "key {} is not a P-256 public key in PEM",
                    k.key_identifier
                ))
            })?;
            Ok((k.key_identifier, key))
        })
        .collect()
}

/// GitHub's public keys, cached.
pub struct GitHubKeys {
    config: KeysConfig,
    client: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, VerifyingKey>>>,
    /// Held while fetching; holds when the last fetch started.
    fetching: Mutex<Option<Instant>>,
}

impl GitHubKeys {
    pub fn new(config: KeysConfig) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .connect_timeout(config.fetch_timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("keysmith/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Http(e.to_string()))?;
        Ok(Self {
            config,
            client,
            keys: RwLock::default(),
            fetching: Mutex::new(None),
        })
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn current(&self) -> Arc<HashMap<String, VerifyingKey>> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Fetches the document and, when it parses, makes it the cached set.
    /// A failure keeps the set as it was. Waits for a fetch in progress.
    pub async fn refresh(&self) -> Result<usize, FetchError> {
        let mut last = self.fetching.lock().await;
        *last = Some(Instant::now());
        self.fetch_into_cache().await
    }

    async fn fetch_into_cache(&self) -> Result<usize, FetchError> {
        let timeout = self.config.fetch_timeout;
        let fetched = tokio::time::timeout(timeout, self.fetch())
            .await
            .map_err(|_| FetchError::Timeout(timeout))
            .and_then(|r| r);
        match fetched {
            Ok(keys) => {
                let n = keys.len();
                *self
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
                tracing::info!(keys = n, "GitHub secret-scanning keys loaded");
                Ok(n)
            }
            Err(e) => {
                tracing::warn!(error = %e, kept = self.len(), "GitHub secret-scanning keys not refreshed");
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, VerifyingKey>, FetchError> {
        let mut resp = self
            .client
            .get(&self.config.url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| FetchError::Http(e.without_url().to_string()))?;
        if !resp.status().is_success() {
            return Err(FetchError::Http(format!("status {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError::Http(e.without_url().to_string()))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(FetchError::Parse(format!(
                    "larger than {MAX_DOCUMENT} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        parse_document(&body)
    }

    /// The key named `id`: from the cache, or, when it is not there, after
    /// one refetch if none started within the refetch interval. A miss
    /// while a fetch runs does not wait for it (it is refused; the sender
    /// retries), so misses never queue up behind a key server that hangs.
    async fn key(&self, id: &str) -> Result<VerifyingKey, SignatureError> {
        if let Some(k) = self.current().get(id) {
            return Ok(*k);
        }
        match self.fetching.try_lock() {
            Ok(mut last) => {
                let due = last.is_none_or(|t| t.elapsed() >= self.config.refetch_interval);
                if due {
                    *last = Some(Instant::now());
                    let _ = self.fetch_into_cache().await;
                }
            }
            // Perhaps the very document with this key: the sender retries.
            Err(_) => return Err(SignatureError::Fetching),
        }
        let keys = self.current();
        match keys.get(id) {
            Some(k) => Ok(*k),
            None if keys.is_empty() => Err(SignatureError::NoKeys),
            None => Err(SignatureError::UnknownKey),
        }
    }

    /// Checks `signature` (the header's base64 of DER) over `body` with the
    /// key named `key_id`.
    pub async fn verify(
        &self,
        key_id: &str,
        signature: &str,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        if key_id.is_empty() || signature.is_empty() {
            return Err(SignatureError::Missing);
        }
        if key_id.len() > MAX_KEY_ID_LEN {
            return Err(SignatureError::UnknownKey);
        }
        if signature.len() > MAX_SIGNATURE_LEN {
            return Err(SignatureError::Malformed);
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| SignatureError::Malformed)?;
        let signature = Signature::from_der(&der).map_err(|_| SignatureError::Malformed)?;
        let key = self.key(key_id).await?;
        key.verify(body, &signature)
            .map_err(|_| SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::{
        ecdsa::{SigningKey, signature::Signer},
        pkcs8::{EncodePublicKey, LineEnding},
    };

    fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from_slice(&[seed; 32]).expect("a valid scalar")
    }

    fn document(keys: &[(&str, &SigningKey)]) -> String {
        let keys: Vec<_> = keys
            .iter()
            .map(|(id, k)| {
                serde_json::json!({
                    "key_identifier": id,
                    "key": k.verifying_key().to_public_key_pem(LineEnding::LF).unwrap(),
                    "is_current": true,
                })
            })
            .collect();
        serde_json::json!({ "public_keys": keys }).to_string()
    }

    fn cached(doc: &str) -> GitHubKeys {
        let keys = GitHubKeys::new(KeysConfig {
            url: "http://127.0.0.1:9/unused".into(),
            fetch_timeout: Duration::from_millis(200),
            // Never refetch in these tests: the cache is what they check.
            refetch_interval: Duration::from_secs(3600),
            refresh_interval: Duration::from_secs(3600),
        })
        .unwrap();
        *keys.keys.write().unwrap() = Arc::new(parse_document(doc.as_bytes()).unwrap());
        *keys.fetching.try_lock().unwrap() = Some(Instant::now());
        keys
    }

    fn sign(k: &SigningKey, body: &[u8]) -> String {
        let sig: Signature = k.sign(body);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }

    #[tokio::test]
    async fn a_signature_by_the_named_key_is_accepted_and_nothing_else() {
        let (a, b) = (signing_key(1), signing_key(2));
        let keys = cached(&document(&[("ka", &a), ("kb", &b)]));
        let body = br#"[{"token":"x","type":"t","url":"u","source":"content"}]"#;
        assert_eq!(keys.verify("ka", &sign(&a, body), body).await, Ok(()));
        assert_eq!(keys.verify("kb", &sign(&b, body), body).await, Ok(()));
        // Another key's signature, a changed body, an unknown identifier.
        assert_eq!(
            keys.verify("ka", &sign(&b, body), body).await,
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            keys.verify("ka", &sign(&a, body), b"[]").await,
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            keys.verify("kc", &sign(&a, body), body).await,
            Err(SignatureError::UnknownKey)
        );
        assert_eq!(
            keys.verify("ka", "not base64!", body).await,
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            keys.verify("ka", "AAAA", body).await,
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            keys.verify("", &sign(&a, body), body).await,
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn a_document_with_any_bad_key_is_refused_whole() {
        let a = signing_key(1);
        assert!(parse_document(document(&[("ka", &a)]).as_bytes()).is_ok());
        let bad = r#"{"public_keys":[{"key_identifier":"x","key":"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}]}"#;
        assert!(parse_document(bad.as_bytes()).is_err());
        assert!(parse_document(b"{\"public_keys\":[]}").is_err());
        assert!(parse_document(b"<html>").is_err());
    }
}
