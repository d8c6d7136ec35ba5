//! Entry points for the fuzz targets in `fuzz/`: bytes are decoded as a
//! request the way tonic decodes them, then taken through the handlers'
//! own conversion and decision. Whatever the bytes, nothing may panic; a
//! request either converts or gets a field-named error.

use prost::Message;

use super::{convert, pb};
use crate::{
    domain::{Timestamp, TokenLimits, check_type_policy},
    index::KeyIndex,
    usage::Recorder,
};

/// Decodes a `VerifyRequest` and decides it against `index` with Verify's
/// own code.
/// Returns the answer, or `None` when the bytes or the request are refused.
pub fn verify_request(
    bytes: &[u8],
    index: &KeyIndex,
    usage: &Recorder,
) -> Option<pb::VerifyResponse> {
    let req = pb::VerifyRequest::decode(bytes).ok()?;
    super::verify::decide(
        index,
        usage,
        &req,
        &TokenLimits::NONE,
        Timestamp::now(),
        || 0,
    )
    .ok()
}

/// Decodes `bytes` as each admin request that carries free-form input and
/// converts it, as the handlers do. Returns how many converted.
pub fn admin_requests(bytes: &[u8]) -> usize {
    let mut ok = 0;
    if let Ok(req) = pb::CreateKeyRequest::decode(bytes)
        && let Ok(create) = convert::create_request(req)
    {
        ok += 1;
        let _ = check_type_policy(create.key_type, &create.scopes, &create.restrictions);
    }
    if let Ok(req) = pb::UpdateKeyRequest::decode(bytes) {
        ok += usize::from(convert::key_patch(req).is_ok());
    }
    if let Ok(req) = pb::ListKeysRequest::decode(bytes) {
        ok += usize::from(convert::key_query(req).is_ok());
    }
    if let Ok(req) = pb::ListStaleKeysRequest::decode(bytes) {
        ok += usize::from(convert::stale_query(req).is_ok());
    }
    if let Ok(req) = pb::ListAuditEventsRequest::decode(bytes) {
        ok += usize::from(convert::audit_query(req).is_ok());
    }
    if let Ok(req) = pb::WatchRevocationsRequest::decode(bytes) {
        ok += usize::from(convert::watch_request(req).is_ok());
    }
    if let Ok(req) = pb::UpdateWebhookEndpointRequest::decode(bytes) {
        ok += usize::from(convert::update_endpoint(req).is_ok());
    }
    if let Ok(req) = pb::ListWebhookDeliveriesRequest::decode(bytes) {
        ok += usize::from(convert::delivery_query(req).is_ok());
    }
    if let Ok(req) = pb::CreateKeyspaceRequest::decode(bytes) {
        ok += usize::from(convert::create_keyspace(req).is_ok());
    }
    if let Ok(req) = pb::UpdateKeyspaceRequest::decode(bytes) {
        ok += usize::from(convert::keyspace_patch(req).is_ok());
    }
    if let Ok(req) = pb::ListKeyspacesRequest::decode(bytes) {
        ok += usize::from(convert::list_keyspaces(req).is_ok());
    }
    if let Ok(req) = pb::CreateRoleRequest::decode(bytes) {
        ok += usize::from(convert::create_role(req).is_ok());
    }
    if let Ok(req) = pb::UpdateRoleRequest::decode(bytes) {
        ok += usize::from(convert::role_patch(req).is_ok());
    }
    if let Ok(req) = pb::ListRolesRequest::decode(bytes) {
        ok += usize::from(convert::list_roles(req).is_ok());
    }
    if let Ok(req) = pb::GetRoleRequest::decode(bytes) {
        ok += usize::from(convert::role_ref(&req.keyspace, &req.name).is_ok());
    }
    if let Ok(req) = pb::OwnerStalePolicy::decode(bytes) {
        ok += usize::from(convert::owner_policy(req).is_ok());
    }
    if let Ok(req) = pb::ReportLeakedKeyRequest::decode(bytes) {
        let pb::ReportLeakedKeyRequest {
            key,
            url,
            source,
            leaked_time,
        } = req;
        ok += usize::from(convert::leak_report(&url, &source, leaked_time).is_ok());
        let _ = crate::domain::api_key::parse(&key);
    }
    if let Ok(req) = pb::ImportKeysRequest::decode(bytes) {
        ok += usize::from(convert::import_request(req).is_ok());
    }
    if let Ok(req) = pb::CreateAdminTokenRequest::decode(bytes) {
        ok += usize::from(convert::create_token_request(req).is_ok());
    }
    ok
}

/// Takes `bytes` as the JSON and as the protobuf body of every unary
/// method's Connect request, and each request that carries over as its
/// JSON answer would be written: nothing may panic, whatever the bytes.
/// Returns how many carried over.
pub fn connect_bodies(bytes: &[u8]) -> usize {
    super::connect::fuzz_bodies(bytes)
}
