use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::{page_size, pb, to_timestamp};
use crate::{
    error::{Error, Result},
    store::{DeliveryRow, DeliveryStatus, EndpointRow},
    webhooks::EndpointInput,
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
    let paths = update_mask.map(|m| m.paths).unwrap_or_default();
    if paths.is_empty() {
        return Err(Error::invalid(
            "update_mask",
            format!("must name at least one of {}", ENDPOINT_PATHS.join(", ")),
        ));
    }
    for (i, p) in paths.iter().enumerate() {
        if !ENDPOINT_PATHS.contains(&p.as_str()) || paths[..i].contains(p) {
            return Err(Error::invalid(
                format!("update_mask.paths[{i}]"),
                "unknown or repeated path",
            ));
        }
    }
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
pub type DeliveryQuery = (
    Option<String>,
    Option<DeliveryStatus>,
    u32,
    Option<(i64, String)>,
);

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
    let before = if page_token.is_empty() {
        None
    } else {
        let bad = || Error::invalid("page_token", "is not a token from this list");
        let text = URL_SAFE_NO_PAD.decode(&page_token).map_err(|_| bad())?;
        let text = String::from_utf8(text).map_err(|_| bad())?;
        let (t, id) = text
            .strip_prefix("d:")
            .and_then(|r| r.split_once(':'))
            .ok_or_else(bad)?;
        Some((t.parse().map_err(|_| bad())?, id.to_owned()))
    };
    let endpoint = (!endpoint_id.is_empty()).then_some(endpoint_id);
    Ok((endpoint, status, page_size(size)?, before))
}

pub fn deliveries_page(
    mut rows: Vec<DeliveryRow>,
    limit: u32,
) -> pb::ListWebhookDeliveriesResponse {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_page_token = match (more, rows.last()) {
        (true, Some(last)) => {
            URL_SAFE_NO_PAD.encode(format!("d:{}:{}", last.created_at.as_millis(), last.id))
        }
        _ => String::new(),
    };
    pb::ListWebhookDeliveriesResponse {
        deliveries: rows.iter().map(delivery).collect(),
        next_page_token,
    }
}
