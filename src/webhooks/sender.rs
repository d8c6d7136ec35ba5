use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use tokio::sync::broadcast::error::TryRecvError;
use tokio_util::sync::CancellationToken;

use super::{WebhookConfig, resolver::PublicOnly};
use crate::{
    domain::{
        Clock,
        webhook::{SigningSecret, WebhookUrl},
    },
    index::FeedHandle,
    store::{AttemptOutcome, Claimed, Store},
};

/// The HTTP client deliveries go through. Its guards against SSRF:
/// - the resolver connects only to public addresses (`PublicOnly`);
/// - redirects are never followed: a 3xx is a failed attempt, so a receiver
///   cannot bounce a delivery to an internal address (an IP literal in a
///   `Location` would not even pass the resolver);
/// - proxy variables (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`) are ignored: a
///   proxy would resolve and connect to the target itself, past every check.
pub fn http_client(config: &WebhookConfig) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(PublicOnly {
            allow_private: config.allow_private_targets,
        }))
        .user_agent(concat!("keysmith-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

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
        let client = match http_client(&self.config) {
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
                _ = changes.recv() => {
                    // A burst of changes (an import brings a thousand a
                    // batch) is one wake-up, not a round each.
                    while let Ok(_) | Err(TryRecvError::Lagged(_)) = changes.try_recv() {}
                }
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
        // The stored URL is checked again: an IP literal never reaches the
        // resolver, and an endpoint written by an older keysmith (or with
        // private targets allowed then) may fall under today's table.
        let url = match WebhookUrl::parse(&c.url, self.config.allow_private_targets) {
            Ok(url) => url,
            Err(e) => return self.failed_attempt(d, sent_at, None, format!("refused: url {e}")),
        };
        let body = d.payload.clone().into_bytes();
        let signature = secret.sign(sent_at.as_millis().div_euclid(1000), &body);
        let result = client
            .post(url.as_str())
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
            Ok(r) if r.status().is_redirection() => (
                Some(i64::from(r.status().as_u16())),
                format!("redirect not followed: receiver answered {}", r.status()),
            ),
            Ok(r) => (
                Some(i64::from(r.status().as_u16())),
                format!("receiver answered {}", r.status()),
            ),
            Err(e) => (None, error_text(&e)),
        };
        self.failed_attempt(d, sent_at, code, error)
    }

    /// A retry, or a final failure once the delivery is `max_age` old.
    fn failed_attempt(
        &self,
        d: &crate::store::DeliveryRow,
        sent_at: crate::domain::Timestamp,
        code: Option<i64>,
        error: String,
    ) -> AttemptOutcome {
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
    // The whole chain of causes, so a refused address reads as such
    // ("… resolves to no public address"), not as a bare connect error.
    // reqwest's own message is skipped: it holds the URL.
    let mut causes = Vec::new();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        causes.push(cause.to_string());
        next = cause.source();
    }
    let text = causes.join(": ");
    format!("{kind}: {}", text.chars().take(300).collect::<String>())
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
