use super::{opt_key_id, opt_owner_id, page_size, pb, to_timestamp};
use crate::{
    error::Result,
    keys::{self, AuditQuery, Page},
    store::AuditEvent,
};

pub fn audit_query(req: pb::ListAuditEventsRequest) -> Result<AuditQuery> {
    let pb::ListAuditEventsRequest {
        key_id,
        owner_id,
        page_size: size,
        page_token,
    } = req;
    Ok(AuditQuery {
        key_id: opt_key_id("key_id", &key_id)?,
        owner_id: opt_owner_id("owner_id", &owner_id)?,
        page_size: page_size(size)?,
        before: keys::parse_audit_token(&page_token)?,
    })
}

pub fn audit_page(page: Page<AuditEvent>) -> pb::ListAuditEventsResponse {
    pb::ListAuditEventsResponse {
        events: page
            .items
            .into_iter()
            .map(|e| pb::AuditEvent {
                id: e.id,
                time: Some(to_timestamp(e.at)),
                actor: e.actor,
                action: e.action,
                key_id: e.key_id.unwrap_or_default(),
                owner_id: e.owner_id.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                changes_json: e.changes.to_string(),
                request_id: e.request_id.unwrap_or_default(),
            })
            .collect(),
        next_page_token: page.next_page_token.unwrap_or_default(),
    }
}
