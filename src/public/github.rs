//! `POST /v1/secret-scanning/github`: GitHub's secret-scanning partner
//! reports (<https://docs.github.com/en/code-security/secret-scanning/secret-scanning-partnership-program/secret-scanning-partner-program>).
//!
//! The body is a JSON array of `{token, type, url, source}`, signed by
//! GitHub over the raw bytes. The answer is GitHub's feedback array: each
//! token's SHA-256 and type, labelled `true_positive` when it is one of this
//! service's keys (which then gets its keyspace's leak policy) and
//! `false_positive` otherwise. Telling the two apart costs what a Verify
//! does: a format check and an index lookup, no database.
//!
//! Order of checks: size, signature, shape, replay, effects. Nothing is
//! parsed before the signature holds, and nothing is written before the
//! delivery is known to be new; its receipt is written once it is applied.

use std::collections::HashMap;

use futures::{StreamExt, stream};
use hyper::{StatusCode, body::Bytes};
use serde::{
    Deserialize,
    de::{self, SeqAccess, Visitor},
};
use sha2::{Digest, Sha256};

use super::{
    Public,
    http::{Answer, busy, error, json},
    signing::SignatureError,
};
use crate::{
    domain::{
        Timestamp,
        leak::{LeakFinder, LeakReport, MAX_LEAK_LABEL_LEN, leak_label, leak_url},
    },
    error::Error,
    keys::Actor,
};

/// Longest token looked at; GitHub sends what the keyspace's regex matched,
/// far shorter.
pub const MAX_TOKEN_LEN: usize = 4096;
/// How many matches of one report are handled at once.
const PARALLEL: usize = 8;

#[derive(Deserialize)]
pub(super) struct Match {
    token: String,
    #[serde(rename = "type", default)]
    token_type: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    source: String,
}

/// The report's matches, refused past `max` while parsing (no list of
/// 100,000 entries is ever built).
struct Matches(Vec<Match>);

struct Bounded(usize);

impl<'de> de::DeserializeSeed<'de> for Bounded {
    type Value = Matches;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Matches, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Bounded {
    type Value = Matches;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an array of at most {} matches", self.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Matches, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.0));
        while let Some(m) = seq.next_element::<Match>()? {
            if out.len() == self.0 {
                return Err(de::Error::custom(format!(
                    "more than {} matches in one report",
                    self.0
                )));
            }
            out.push(m);
        }
        Ok(Matches(out))
    }
}

/// A refused body: its status and what to say.
#[derive(Debug)]
pub(super) struct Refused(StatusCode, String);

impl Refused {
    fn answer(&self) -> Answer {
        error(self.0, &self.1)
    }
}

/// Parses and checks the body: a 400 names the field, a 413 the limit.
pub(super) fn parse(bytes: &[u8], max: usize) -> Result<Vec<Match>, Refused> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let matches = de::DeserializeSeed::deserialize(Bounded(max), &mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| {
            // serde's own message may quote the body (a token, say): only
            // its class and position are told.
            if e.to_string().starts_with("more than") {
                return Refused(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body: more than {max} matches in one report"),
                );
            }
            let what = match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    "is not JSON"
                }
                _ => "must be a JSON array of {token, type, url, source}",
            };
            Refused(
                StatusCode::BAD_REQUEST,
                format!("body: {what} (line {}, column {})", e.line(), e.column()),
            )
        })?
        .0;
    for (i, m) in matches.iter().enumerate() {
        let bad = |field: &str, why: String| {
            Err(Refused(
                StatusCode::BAD_REQUEST,
                format!("[{i}].{field}: {why}"),
            ))
        };
        if m.token.is_empty() {
            return bad("token", "is required".into());
        }
        if m.token.len() > MAX_TOKEN_LEN {
            return bad("token", format!("longer than {MAX_TOKEN_LEN} bytes"));
        }
        if let Err(e) = leak_label(&m.token_type) {
            return bad("type", e.to_string());
        }
        if let Err(e) = leak_label(&m.source) {
            return bad("source", e.to_string());
        }
        if let Err(e) = leak_url(&m.url) {
            return bad("url", e.to_string());
        }
    }
    Ok(matches)
}

fn header<'a>(parts: &'a hyper::http::request::Parts, name: &str) -> &'a str {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn hex_sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

impl Public {
    pub(super) async fn github_report(
        &self,
        parts: &hyper::http::request::Parts,
        bytes: Bytes,
    ) -> Answer {
        let key_id = header(parts, "github-public-key-identifier");
        let signature = header(parts, "github-public-key-signature");
        match self.github.verify(key_id, signature, &bytes).await {
            Ok(()) => {}
            Err(SignatureError::NoKeys) => {
                return busy("GitHub's public keys are not available yet; retry", 30);
            }
            Err(SignatureError::Fetching) => {
                return busy("GitHub's public keys are being fetched; retry", 5);
            }
            Err(e) => {
                tracing::warn!(reason = %e, "refused a secret-scanning report");
                return error(StatusCode::UNAUTHORIZED, &format!("signature: {e}"));
            }
        }
        let matches = match parse(&bytes, self.config.max_matches) {
            Ok(m) => m,
            Err(refused) => return refused.answer(),
        };
        // The delivery's identity is its body: GitHub sends no nonce or
        // time, and a signature can be re-encoded (ECDSA's s and n - s both
        // verify), so the signature is no part of it. A body applied before
        // is refused whole. It is recorded only once applied: a delivery cut
        // short (a crash, a failed transaction) is no replay when GitHub
        // sends it again, and applying one twice only ends what is ended.
        let digest = hex_sha256(&bytes);
        match self.store.has_receipt(&digest).await {
            Ok(false) => {}
            Ok(true) => {
                return error(
                    StatusCode::CONFLICT,
                    "replayed: this signed report was already received",
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read secret-scanning receipts");
                return busy("cannot check the report; retry", 5);
            }
        }
        let now = Timestamp::now();
        let window = i64::try_from(self.config.replay_window.as_millis()).unwrap_or(i64::MAX);
        let forget_before = Timestamp::from_millis(now.as_millis().saturating_sub(window));
        // The effects run to the end even if the sender hangs up.
        let keys = self.keys.clone();
        let store = self.store.clone();
        let work = tokio::spawn(async move {
            let feedback = apply(&keys, matches).await?;
            store.record_receipt(&digest, now, forget_before).await?;
            Ok::<_, Error>(feedback)
        });
        match work.await {
            Ok(Ok(feedback)) => json(StatusCode::OK, &serde_json::Value::Array(feedback)),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "a secret-scanning report was not applied");
                busy("the report could not be applied; retry", 5)
            }
            Err(_) => busy("the report could not be applied; retry", 5),
        }
    }
}

/// Labels each match and applies the leak policy to the true positives
/// (each distinct key once, however often it is reported).
async fn apply(
    keys: &crate::keys::Keys,
    matches: Vec<Match>,
) -> Result<Vec<serde_json::Value>, Error> {
    let actor = Actor::system("github");
    let mut found = HashMap::new();
    for (i, m) in matches.iter().enumerate() {
        if let Some(id) = keys.identify(&m.token) {
            found.entry(id).or_insert(i);
        }
    }
    let mut reports = Vec::with_capacity(found.len());
    for (id, i) in found {
        let m = &matches[i];
        let report = LeakReport {
            finder: LeakFinder::GitHub,
            url: m.url.clone(),
            source: m.source.clone(),
            token_type: m.token_type.clone(),
            leaked_at: None,
        };
        let (keys, actor) = (keys.clone(), actor.clone());
        reports.push(async move {
            match keys.report_leak(&id, &report, None, &actor).await {
                Ok(leak) => {
                    tracing::warn!(
                        key_id = %leak.key.id,
                        policy = %leak.policy,
                        successors = leak.successors.len(),
                        "GitHub reported a leaked key"
                    );
                    Ok(())
                }
                // Purged between the lookup and the read: not ours now.
                Err(Error::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            }
        });
    }
    let results: Vec<Result<(), Error>> = stream::iter(reports)
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), Error>>()?;
    Ok(matches
        .iter()
        .map(|m| {
            let ours = keys.identify(&m.token).is_some();
            debug_assert!(m.token_type.len() <= MAX_LEAK_LABEL_LEN);
            serde_json::json!({
                "token_hash": hex_sha256(m.token.as_bytes()),
                "token_type": m.token_type,
                "label": if ours { "true_positive" } else { "false_positive" },
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_refused_with_the_field_named() {
        let ok = br#"[{"token":"t","type":"x","url":"https://github.com/a","source":"content"}]"#;
        assert_eq!(parse(ok, 10).map(|m| m.len()).ok(), Some(1));
        for (body, status, needle) in [
            (&b"not json"[..], StatusCode::BAD_REQUEST, "body:"),
            (b"{}", StatusCode::BAD_REQUEST, "body:"),
            (br#"[{"type":"x"}]"#, StatusCode::BAD_REQUEST, "token"),
            (br#"[{"token":""}]"#, StatusCode::BAD_REQUEST, "[0].token"),
            (
                br#"[{"token":"t","url":"a b"}]"#,
                StatusCode::BAD_REQUEST,
                "[0].url",
            ),
            (br#"[] []"#, StatusCode::BAD_REQUEST, "body:"),
        ] {
            let err = parse(body, 10).err().expect("refused");
            assert_eq!(err.0, status, "{}", String::from_utf8_lossy(body));
            assert!(err.1.contains(needle), "{}", err.1);
        }
        let many = format!("[{}]", [r#"{"token":"t"}"#; 11].join(","));
        let err = parse(many.as_bytes(), 10).err().expect("refused");
        assert_eq!(err.0, StatusCode::PAYLOAD_TOO_LARGE);
        let long = format!(r#"[{{"token":"{}"}}]"#, "a".repeat(MAX_TOKEN_LEN + 1));
        let err = parse(long.as_bytes(), 10).err().expect("refused");
        assert_eq!(err.0, StatusCode::BAD_REQUEST);
    }
}
