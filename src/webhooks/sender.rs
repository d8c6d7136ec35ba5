use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use super::{WebhookConfig, resolver::PublicOnly};
use crate::{
    domain::{Clock, webhook::SigningSecret},
    index::FeedHandle,
    store::{AttemptOutcome, Claimed, Store},
};

/// Deliveries sent per round.
const BATCH: u32 = 32;

/// Sends due deliveries from the outbox: signed, with exponential backoff,
/// until delivered or `max_age` has passed. Runs on every replica; leases
/// keep two replicas from sending the same delivery at once.
pub struct WebhookSender {
    pub store: Arc<dyn Store>,
    pub config: WebhookConfig,
    pub clock: Clock,
    /// Key changes wake the sender, so most events go out at once.
    pub feed: FeedHandle,
    /// Where the sender reports the pending deliveries it counts each round.
    pub outbox_depth: Arc<AtomicI64>,
}

impl WebhookSender {
    pub async fn run(self, shutdown: CancellationToken) {
        let client = match reqwest::Client::builder()
            .timeout(self.config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PublicOnly {
                allow_private: self.config.allow_private_targets,
            }))
            .user_agent(concat!("keysmith-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the webhook HTTP client; not sending");
                return;
            }
        };
        let mut changes = self.feed.subscribe();
        let mut tick = tokio::time::interval(self.config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                _ = changes.recv() => {}
            }
            if let Ok(n) = self.store.pending_deliveries().await {
                self.outbox_depth.store(n, Ordering::Relaxed);
            }
            loop {
                match self.round(&client).await {
                    Ok(n) if n == BATCH as usize => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook round failed");
                        break;
                    }
                }
            }
        }
    }

    /// Claims and sends one batch; returns how many were claimed.
    #[tracing::instrument(name = "webhook_round", skip_all)]
    async fn round(&self, client: &reqwest::Client) -> Result<usize, crate::store::StoreError> {
        let now = self.clock.now();
        let lease = now.saturating_add(self.config.timeout * 3);
        let claimed = self.store.claim_deliveries(now, lease, BATCH).await?;
        let n = claimed.len();
        let attempts = claimed.into_iter().map(|c| async move {
            let outcome = self.attempt(client, &c).await;
            let done = self.store.finish_attempt(&c.delivery.id, &outcome, self.clock.now()).await;
            if let Err(e) = done {
                // The lease runs out and the delivery goes again: at least once.
                tracing::warn!(error = %e, delivery = %c.delivery.id, "could not record a webhook attempt");
            }
        });
        futures::future::join_all(attempts).await;
        Ok(n)
    }

    async fn attempt(&self, client: &reqwest::Client, c: &Claimed) -> AttemptOutcome {
        let d = &c.delivery;
        let secret = SigningSecret::from_stored(c.secret.clone());
        let sent_at = self.clock.now();
        let body = d.payload.clone().into_bytes();
        let signature = secret.sign(sent_at.as_millis().div_euclid(1000), &body);
        let result = client
            .post(&c.url)
            .header("content-type", "application/json")
            .header("keysmith-signature", signature)
            .header("keysmith-event-id", &d.event_id)
            .header("keysmith-event-type", &d.event_type)
            .header("keysmith-delivery-attempt", (d.attempts + 1).to_string())
            .body(body)
            .send()
            .await;
        let (code, error) = match result {
            Ok(r) if r.status().is_success() => {
                return AttemptOutcome::Delivered {
                    status_code: i64::from(r.status().as_u16()),
                };
            }
            Ok(r) => (
                Some(i64::from(r.status().as_u16())),
                format!("receiver answered {}", r.status()),
            ),
            Err(e) => (None, error_text(&e)),
        };
        let age =
            Duration::from_millis((sent_at.as_millis() - d.created_at.as_millis()).max(0) as u64);
        if age >= self.config.max_age {
            tracing::warn!(delivery = %d.id, attempts = d.attempts + 1, "webhook delivery failed for good");
            return AttemptOutcome::Failed {
                status_code: code,
                error,
            };
        }
        AttemptOutcome::Retry {
            status_code: code,
            error,
            next_attempt_at: sent_at.saturating_add(backoff(self.config.retry_base, d.attempts)),
        }
    }
}

/// `base × 2^attempts`, at most an hour.
fn backoff(base: Duration, attempts: i64) -> Duration {
    let factor = 1u32 << attempts.clamp(0, 20);
    base.saturating_mul(factor).min(Duration::from_secs(3600))
}

/// An error's text without the URL (which may carry a token in its query).
fn error_text(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_redirect() {
        "redirect refused"
    } else {
        "request failed"
    };
    let source = std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_default();
    format!("{kind}: {}", source.chars().take(300).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps_at_an_hour() {
        let base = Duration::from_secs(10);
        assert_eq!(backoff(base, 0), Duration::from_secs(10));
        assert_eq!(backoff(base, 3), Duration::from_secs(80));
        assert_eq!(backoff(base, 30), Duration::from_secs(3600));
    }

    #[test]
    fn at_least_a_day_of_retries_fits_before_max_age() {
        // With the defaults, the schedule keeps retrying until max_age.
        let cfg = WebhookConfig::default();
        let mut t = Duration::ZERO;
        let mut attempts = 0;
        while t < cfg.max_age {
            t += backoff(cfg.retry_base, attempts);
            attempts += 1;
        }
        assert!(attempts > 20, "{attempts} attempts over a day");
    }
}
