//! Webhooks: endpoint management here, delivery in [`sender`].
//!
//! Events reach the outbox inside the transaction that records them (see
//! `Store::write`), so they are delivered at least once, with a stable event
//! id for dedupe.

mod audit;
mod resolver;
mod sender;

use std::{sync::Arc, time::Duration};

pub use sender::{WebhookSender, http_client};

use crate::{
    domain::{
        Clock, PageTokens,
        webhook::{SigningSecret, WebhookUrl, check_event_type},
    },
    error::{Error, Result},
    keys::{Actor, Page, open_page_token},
    store::{DeliveryRow, DeliveryStatus, EndpointPatch, EndpointRow, Store},
};

pub const MAX_ENDPOINTS: usize = 100;
const MAX_DESCRIPTION: usize = 500;

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// Allow targets on private, loopback and link-local addresses. Off by
    /// default: a webhook URL must not become a way into the internal network.
    pub allow_private_targets: bool,
    /// Whether this replica sends deliveries (it always records them).
    pub send: bool,
    pub poll_interval: Duration,
    /// First retry delay; each retry doubles it, up to an hour.
    pub retry_base: Duration,
    /// After this long since it was queued, a delivery is marked failed.
    pub max_age: Duration,
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            send: true,
            poll_interval: Duration::from_secs(1),
            retry_base: Duration::from_secs(10),
            max_age: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What CreateWebhookEndpoint and UpdateWebhookEndpoint ask for.
#[derive(Clone, Debug, Default)]
pub struct EndpointInput {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

/// What ListWebhookDeliveries asks for.
#[derive(Clone, Debug)]
pub struct DeliveryQuery {
    pub endpoint_id: Option<String>,
    pub status: Option<DeliveryStatus>,
    pub page_size: u32,
    /// As the client sent it, checked against this query's filter; empty
    /// for the first page.
    pub page_token: String,
}

impl DeliveryQuery {
    /// What a page token is sealed to: every field but the page size.
    fn canonical(&self) -> String {
        serde_json::json!([
            "deliveries",
            self.endpoint_id,
            self.status.map(DeliveryStatus::as_str),
        ])
        .to_string()
    }
}

#[derive(Clone)]
pub struct Webhooks {
    store: Arc<dyn Store>,
    config: WebhookConfig,
    clock: Clock,
    page_tokens: PageTokens,
}

impl Webhooks {
    pub fn new(
        store: Arc<dyn Store>,
        config: WebhookConfig,
        clock: Clock,
        page_tokens: PageTokens,
    ) -> Self {
        Self {
            store,
            config,
            clock,
            page_tokens,
        }
    }

    /// Checks the fields present in `input`, in the form they are stored.
    fn check(&self, input: EndpointInput) -> Result<EndpointPatch> {
        let url = input
            .url
            .map(|u| {
                WebhookUrl::parse(&u, self.config.allow_private_targets)
                    .map(|u| u.as_str().to_owned())
                    .map_err(|e| Error::invalid("url", e))
            })
            .transpose()?;
        let events = input
            .events
            .map(|mut events| {
                if events.is_empty() {
                    return Err(Error::invalid(
                        "events",
                        "name at least one event type, or *",
                    ));
                }
                for (i, e) in events.iter().enumerate() {
                    check_event_type(e).map_err(|m| Error::invalid(format!("events[{i}]"), m))?;
                }
                events.sort();
                events.dedup();
                Ok(events)
            })
            .transpose()?;
        if let Some(d) = &input.description
            && (d.len() > MAX_DESCRIPTION || d.chars().any(char::is_control))
        {
            return Err(Error::invalid(
                "description",
                "at most 500 bytes, no control characters",
            ));
        }
        Ok(EndpointPatch {
            url,
            events,
            description: input.description,
            enabled: input.enabled,
        })
    }

    /// Creates an endpoint and its signing secret, which is shown once.
    pub async fn create(
        &self,
        input: EndpointInput,
        actor: &Actor,
    ) -> Result<(EndpointRow, SigningSecret)> {
        if input.url.is_none() {
            return Err(Error::invalid("url", "is required"));
        }
        if input.events.is_none() {
            return Err(Error::invalid(
                "events",
                "name at least one event type, or *",
            ));
        }
        let p = self.check(input)?;
        if self.store.list_endpoints().await?.len() >= MAX_ENDPOINTS {
            return Err(Error::FailedPrecondition(format!(
                "at most {MAX_ENDPOINTS} webhook endpoints"
            )));
        }
        let secret = SigningSecret::generate().map_err(|e| Error::Internal(e.to_string()))?;
        let now = self.clock.now();
        let endpoint = EndpointRow {
            id: format!("whe_{}", ulid::Ulid::new().to_string().to_lowercase()),
            url: p.url.unwrap_or_default(),
            description: p.description.unwrap_or_default(),
            enabled: p.enabled.unwrap_or(true),
            events: p.events.unwrap_or_default(),
            created_at: now,
            updated_at: now,
        };
        let event = audit::created(now, actor, &endpoint);
        self.store
            .insert_endpoint(&endpoint, secret.expose_secret(), &event)
            .await?;
        Ok((endpoint, secret))
    }

    pub async fn list(&self) -> Result<Vec<EndpointRow>> {
        Ok(self.store.list_endpoints().await?)
    }

    /// Updates an endpoint. Its audit event's "old" values are read just
    /// before; two racing updates each leave their own event.
    pub async fn update(
        &self,
        id: &str,
        input: EndpointInput,
        actor: &Actor,
    ) -> Result<EndpointRow> {
        let patch = self.check(input)?;
        let old = self.get(id).await?;
        let now = self.clock.now();
        let event = audit::updated(now, actor, &old, &patch);
        if !self.store.update_endpoint(id, &patch, now, &event).await? {
            return Err(Error::NotFound(format!("webhook endpoint {id}")));
        }
        self.get(id).await
    }

    pub async fn get(&self, id: &str) -> Result<EndpointRow> {
        match self.store.get_endpoint(id).await? {
            Some((e, _secret)) => Ok(e),
            None => Err(Error::NotFound(format!("webhook endpoint {id}"))),
        }
    }

    pub async fn delete(&self, id: &str, actor: &Actor) -> Result<()> {
        let old = self.get(id).await?;
        let event = audit::deleted(self.clock.now(), actor, &old);
        if self.store.delete_endpoint(id, &event).await? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("webhook endpoint {id}")))
        }
    }

    /// Newest first; the page token continues below a (created at, id).
    pub async fn deliveries(&self, query: DeliveryQuery) -> Result<Page<DeliveryRow>> {
        let filter = query.canonical();
        let before = open_page_token(&self.page_tokens, &query.page_token, &filter, |p| {
            let (at, id) = p.split_once(':')?;
            Some((at.parse().ok()?, id.to_owned()))
        })?;
        let limit = query.page_size;
        let rows = self
            .store
            .list_deliveries(
                query.endpoint_id.as_deref(),
                query.status,
                before,
                limit + 1,
            )
            .await?;
        Ok(Page::from_overfetch(rows, limit, |last| {
            let position = format!("{}:{}", last.created_at.as_millis(), last.id);
            self.page_tokens.seal(&filter, &position)
        }))
    }

    /// Queues a delivery again, now, with a fresh 24-hour retry budget. The
    /// event id stays the same, so a receiver that got it once can dedupe.
    pub async fn redeliver(&self, id: &str, actor: &Actor) -> Result<DeliveryRow> {
        let not_found = || Error::NotFound(format!("webhook delivery {id}"));
        let old = self.store.get_delivery(id).await?.ok_or_else(not_found)?;
        let now = self.clock.now();
        let event = audit::redelivered(now, actor, &old);
        if !self.store.redeliver(id, now, &event).await? {
            return Err(Error::NotFound(format!("webhook delivery {id}")));
        }
        self.store
            .get_delivery(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("webhook delivery {id}")))
    }
}
