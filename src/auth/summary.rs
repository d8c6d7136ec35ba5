//! Failed admin authentications, aggregated for the audit log.
//!
//! An audit row is written under the global `change_seq` lock and sent to
//! every `*` webhook, so failures from unauthenticated callers must not map
//! to rows. They are counted here, in memory, and [`AuthAuditor`] writes one
//! `admin.auth_failed` summary at a time: the first of a quiet spell at
//! once, then at most one per `audit_interval`, whatever the number of
//! peers. Each carries counts and a bounded sample of the peers.

use std::{
    collections::{BTreeMap, HashSet},
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::failures::Failure;
use crate::domain::Peer;
use crate::{
    domain::Timestamp,
    store::{NewAuditEvent, Store, WriteBatch},
};

/// Peers named in one summary, of all those that failed and those blocked.
pub const SAMPLE_PEERS: usize = 8;

/// Failures since the last summary.
#[derive(Default)]
struct Pending {
    first_at: Option<Timestamp>,
    last_at: Option<Timestamp>,
    failures: u64,
    /// Failures from peers already blocked, refused without being counted
    /// against them again.
    refused_while_blocked: u64,
    reasons: BTreeMap<&'static str, u64>,
    /// Distinct peers, up to `max_peers`; `peers_capped` once past it.
    peers: HashSet<Peer>,
    peers_capped: bool,
    blocked: u64,
    sample: Vec<String>,
    blocked_sample: Vec<String>,
}

/// The failures not yet audited; shared by the authenticator (which adds)
/// and the [`AuthAuditor`] (which takes).
pub struct FailureLog {
    pending: Mutex<Pending>,
    max_peers: usize,
    /// Woken on a failure, so a quiet spell's first one is written at once.
    wake: Notify,
}

impl FailureLog {
    pub fn new(max_peers: usize) -> Self {
        Self {
            pending: Mutex::default(),
            max_peers,
            wake: Notify::new(),
        }
    }

    /// Counts one refused authentication: `failure` is what it did to the
    /// peer's window, `None` if the peer was blocked already.
    pub fn record(&self, ip: Option<IpAddr>, why: &'static str, failure: Option<Failure>) {
        let peer = Peer::from(ip);
        let now = Timestamp::now();
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        p.first_at.get_or_insert(now);
        p.last_at = Some(now);
        match failure {
            None => p.refused_while_blocked += 1,
            Some(failure) => {
                p.failures += 1;
                *p.reasons.entry(why).or_default() += 1;
                if failure == Failure::Blocking {
                    p.blocked += 1;
                    if p.blocked_sample.len() < SAMPLE_PEERS {
                        p.blocked_sample.push(peer.to_string());
                    }
                }
            }
        }
        if !p.peers.contains(&peer) {
            if p.peers.len() < self.max_peers {
                p.peers.insert(peer);
                if p.sample.len() < SAMPLE_PEERS {
                    p.sample.push(peer.to_string());
                }
            } else {
                p.peers_capped = true;
            }
        }
        drop(p);
        self.wake.notify_one();
    }

    /// Takes what is pending as an audit event; `None` if nothing is.
    fn take(&self) -> Option<NewAuditEvent> {
        let p = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let (first_at, last_at) = (p.first_at?, p.last_at?);
        let refused = p.failures + p.refused_while_blocked;
        tracing::warn!(
            refused,
            peers = p.peers.len(),
            blocked_peers = p.blocked,
            "admin authentications failed"
        );
        Some(NewAuditEvent {
            at: last_at,
            actor: "unauthenticated".to_owned(),
            action: "admin.auth_failed",
            key_id: None,
            owner_id: None,
            reason: Some(format!(
                "{refused} failed admin authentications from {} peers",
                p.peers.len()
            )),
            changes: json!({
                "from": first_at.as_millis(),
                "to": last_at.as_millis(),
                "failures": p.failures,
                "refused_while_blocked": p.refused_while_blocked,
                "reasons": p.reasons,
                "peers": p.peers.len(),
                "peers_capped": p.peers_capped,
                "sample_peers": p.sample,
                "blocked_peers": p.blocked,
                "sample_blocked_peers": p.blocked_sample,
            }),
            request_id: None,
        })
    }
}

/// Writes the pending failures as one audit event, at most once per
/// `interval`, and once more at shutdown.
pub struct AuthAuditor {
    pub store: Arc<dyn Store>,
    pub log: Arc<FailureLog>,
    pub interval: Duration,
}

impl AuthAuditor {
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.log.wake.notified() => {}
            }
            self.flush().await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
        self.flush().await;
    }

    /// A failed write is logged and its counts dropped: they describe
    /// unauthenticated noise, and retrying would turn an outage into
    /// a backlog.
    async fn flush(&self) {
        let Some(event) = self.log.take() else { return };
        let batch = WriteBatch {
            audit: vec![event],
            ..WriteBatch::default()
        };
        if let Err(e) = self.store.write(batch).await {
            tracing::warn!(error = %e, "cannot audit failed authentications");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> Option<IpAddr> {
        Some(IpAddr::from(std::net::Ipv4Addr::from(0xc000_0200 + n)))
    }

    #[test]
    fn one_summary_holds_any_number_of_failures_with_a_bounded_sample() {
        let log = FailureLog::new(50);
        assert!(log.take().is_none(), "nothing pending, nothing written");
        for n in 0..100 {
            log.record(ip(n), "unknown token", Some(Failure::First));
            log.record(ip(n), "no token", Some(Failure::Blocking));
            log.record(ip(n), "no token", None);
        }
        let event = log.take().expect("a summary");
        let c = &event.changes;
        assert_eq!(event.action, "admin.auth_failed");
        assert_eq!(c["failures"], 200);
        assert_eq!(c["refused_while_blocked"], 100);
        assert_eq!(c["reasons"], json!({"no token": 100, "unknown token": 100}));
        assert_eq!(c["peers"], 50, "counted up to max_peers");
        assert_eq!(c["peers_capped"], true);
        assert_eq!(c["blocked_peers"], 100);
        assert_eq!(
            c["sample_peers"].as_array().expect("sample").len(),
            SAMPLE_PEERS
        );
        assert_eq!(c["sample_peers"][0], "192.0.2.0");
        let blocked = c["sample_blocked_peers"].as_array().expect("sample");
        assert_eq!(blocked.len(), SAMPLE_PEERS);
        assert!(log.take().is_none(), "taken once");
    }
}
