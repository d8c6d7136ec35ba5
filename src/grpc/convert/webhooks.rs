use super::{page_size, pb, to_timestamp};
use crate::{
    error::{Error, Result},
    keys::Page,
    store::{DeliveryRow, DeliveryStatus, EndpointRow},
    webhooks::{DeliveryQuery, EndpointInput},
};

pub fn endpoint(e: &EndpointRow) -> pb::WebhookEndpoint {
    pb::WebhookEndpoint {
        id: e.id.clone(),
        url: e.url.clone(),
        events: e.events.clone(),
        description: e.description.clone(),
        enabled: e.enabled,
        create_time: Some(to_timestamp(e.created_at)),
        update_time: Some(to_timestamp(e.updated_at)),
    }
}

pub fn create_endpoint(req: pb::CreateWebhookEndpointRequest) -> EndpointInput {
    let pb::CreateWebhookEndpointRequest {
        url,
        events,
        description,
    } = req;
    EndpointInput {
        url: Some(url),
        events: Some(events),
        description: Some(description),
        enabled: Some(true),
    }
}

const ENDPOINT_PATHS: [&str; 4] = ["url", "events", "description", "enabled"];

pub fn update_endpoint(req: pb::UpdateWebhookEndpointRequest) -> Result<(String, EndpointInput)> {
    let pb::UpdateWebhookEndpointRequest {
        endpoint,
        update_mask,
    } = req;
    let e = endpoint.ok_or_else(|| Error::invalid("endpoint", "is required"))?;
    let paths = super::update_paths(update_mask, &ENDPOINT_PATHS)?;
    let named = |p: &str| paths.iter().any(|x| x == p);
    let pb::WebhookEndpoint {
        id,
        url,
        events,
        description,
        enabled,
        ..
    } = e;
    Ok((
        id,
        EndpointInput {
            url: named("url").then_some(url),
            events: named("events").then_some(events),
            description: named("description").then_some(description),
            enabled: named("enabled").then_some(enabled),
        },
    ))
}

fn status(s: DeliveryStatus) -> pb::DeliveryStatus {
    match s {
        DeliveryStatus::Pending => pb::DeliveryStatus::Pending,
        DeliveryStatus::Delivered => pb::DeliveryStatus::Delivered,
        DeliveryStatus::Failed => pb::DeliveryStatus::Failed,
    }
}

pub fn delivery(d: &DeliveryRow) -> pb::WebhookDelivery {
    pb::WebhookDelivery {
        id: d.id.clone(),
        event_id: d.event_id.clone(),
        endpoint_id: d.endpoint_id.clone(),
        event_type: d.event_type.clone(),
        status: status(d.status).into(),
        attempts: d.attempts,
        next_attempt_time: Some(to_timestamp(d.next_attempt_at)),
        last_status_code: d.last_status_code.and_then(|c| i32::try_from(c).ok()),
        last_error: d.last_error.clone().unwrap_or_default(),
        enqueue_time: Some(to_timestamp(d.created_at)),
        deliver_time: d.delivered_at.map(to_timestamp),
        payload: d.payload.clone(),
    }
}

/// A ListWebhookDeliveries query: endpoint, status, page size, page start.
pub fn delivery_query(req: pb::ListWebhookDeliveriesRequest) -> Result<DeliveryQuery> {
    let pb::ListWebhookDeliveriesRequest {
        endpoint_id,
        status: s,
        page_size: size,
        page_token,
    } = req;
    let status = match pb::DeliveryStatus::try_from(s) {
        Ok(pb::DeliveryStatus::Unspecified) => None,
        Ok(pb::DeliveryStatus::Pending) => Some(DeliveryStatus::Pending),
        Ok(pb::DeliveryStatus::Delivered) => Some(DeliveryStatus::Delivered),
        Ok(pb::DeliveryStatus::Failed) => Some(DeliveryStatus::Failed),
        Err(_) => return Err(Error::invalid("status", "unknown delivery status")),
    };
    Ok(DeliveryQuery {
        endpoint_id: (!endpoint_id.is_empty()).then_some(endpoint_id),
        status,
        page_size: page_size(size)?,
        page_token,
    })
}

pub fn deliveries_page(page: Page<DeliveryRow>) -> pb::ListWebhookDeliveriesResponse {
    pb::ListWebhookDeliveriesResponse {
        deliveries: page.items.iter().map(delivery).collect(),
        next_page_token: page.next_page_token.unwrap_or_default(),
    }
}
