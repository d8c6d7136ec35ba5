//! Webhook storage: endpoints, subscriptions and the delivery outbox.

use async_trait::async_trait;

use super::{NewAuditEvent, StoreError};
use crate::domain::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub description: String,
    pub enabled: bool,
    /// Sorted event types, or `["*"]`.
    pub events: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Changes to an endpoint; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub events: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|d| d.as_str() == s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRow {
    /// `<event id>:<endpoint id>`.
    pub id: String,
    /// Stable across retries and redeliveries: receivers dedupe on it.
    pub event_id: String,
    pub endpoint_id: String,
    pub event_type: String,
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

/// A delivery leased to one sender, with where and how to send it.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub delivery: DeliveryRow,
    pub url: String,
    pub secret: String,
}

/// What became of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered {
        status_code: i64,
    },
    Retry {
        status_code: Option<i64>,
        error: String,
        next_attempt_at: Timestamp,
    },
    Failed {
        status_code: Option<i64>,
        error: String,
    },
}

/// The JSON body of an event: its stable id, type, time and data.
pub fn event_payload(event_id: &str, e: &NewAuditEvent) -> String {
    serde_json::json!({
        "id": event_id,
        "type": e.action,
        "created_at_ms": e.at.as_millis(),
        "data": {
            "key_id": e.key_id.as_ref().map(|k| k.as_str()),
            "owner_id": e.owner_id.as_ref().map(|o| o.as_str()),
            "actor": e.actor,
            "reason": e.reason,
            "changes": e.changes,
            "request_id": e.request_id,
        },
    })
    .to_string()
}

/// Each mutation commits its audit event (hash-chained, with its own
/// webhook deliveries) in its transaction; a mutation that finds nothing
/// writes nothing, the event included.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn insert_endpoint(
        &self,
        e: &EndpointRow,
        secret: &str,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    /// The endpoint and its signing secret.
    async fn get_endpoint(&self, id: &str) -> Result<Option<(EndpointRow, String)>, StoreError>;
    async fn list_endpoints(&self) -> Result<Vec<EndpointRow>, StoreError>;
    /// `false` when there is no such endpoint.
    async fn update_endpoint(
        &self,
        id: &str,
        patch: &EndpointPatch,
        at: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    async fn delete_endpoint(&self, id: &str, audit: &NewAuditEvent) -> Result<bool, StoreError>;
    /// Newest first; `before` is the (created_at, id) a page continues after.
    async fn list_deliveries(
        &self,
        endpoint_id: Option<&str>,
        status: Option<DeliveryStatus>,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError>;
    /// Leases up to `limit` due deliveries until `lease_until`. A lease
    /// keeps other replicas off a delivery while it is in flight; an expired
    /// lease (a crashed sender) frees it again.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Claimed>, StoreError>;
    async fn finish_attempt(
        &self,
        id: &str,
        outcome: &AttemptOutcome,
        at: Timestamp,
    ) -> Result<(), StoreError>;
    /// How many deliveries are pending (the outbox depth).
    async fn pending_deliveries(&self) -> Result<i64, StoreError>;
    async fn get_delivery(&self, id: &str) -> Result<Option<DeliveryRow>, StoreError>;
    /// Makes a delivery due again now; `false` when there is no such delivery.
    async fn redeliver(
        &self,
        id: &str,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
}
