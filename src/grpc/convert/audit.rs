use super::{opt_key_id, opt_owner_id, page_size, pb, timestamp, to_timestamp};
use crate::{
    error::{Error, Result},
    keys::{AuditQuery, Page},
    store::AuditEvent,
};

pub fn audit_query(req: pb::ListAuditEventsRequest) -> Result<AuditQuery> {
    let pb::ListAuditEventsRequest {
        key_id,
        owner_id,
        page_size: size,
        page_token,
        action,
        from,
        to,
    } = req;
    let action = match action.as_str() {
        "" => None,
        a if a.len() <= 64
            && a.bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_') =>
        {
            Some(action)
        }
        _ => {
            return Err(Error::invalid(
                "action",
                "is not an audit action such as `key.revoked`",
            ));
        }
    };
    Ok(AuditQuery {
        key_id: opt_key_id("key_id", &key_id)?,
        owner_id: opt_owner_id("owner_id", &owner_id)?,
        action,
        from: from.map(|t| timestamp("from", t)).transpose()?,
        to: to.map(|t| timestamp("to", t)).transpose()?,
        page_size: page_size(size)?,
        page_token,
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

pub fn chain_report(
    r: std::result::Result<u64, crate::store::audit_chain::BrokenLink>,
) -> pb::VerifyAuditChainResponse {
    match r {
        Ok(n) => pb::VerifyAuditChainResponse {
            intact: true,
            events_checked: n as i64,
            ..Default::default()
        },
        Err(b) => pb::VerifyAuditChainResponse {
            intact: false,
            events_checked: 0,
            broken_event_id: b.event_id,
            reason: b.reason.to_owned(),
        },
    }
}
