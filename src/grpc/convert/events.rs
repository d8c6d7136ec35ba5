use super::{environment, opt_owner_id, pb, to_environment, to_timestamp};
use crate::{
    domain::TokenLimits,
    error::{Error, Result},
    keys::{Propagation, StatusReport},
    store::{Change, ChangeKind},
    watch::WatchRequest,
};

pub fn watch_request(req: pb::WatchRevocationsRequest) -> Result<WatchRequest> {
    let pb::WatchRevocationsRequest {
        after_cursor,
        owner_id,
        environment: env,
        all_changes,
        keyspace,
    } = req;
    if after_cursor.is_some_and(|c| c < 0) {
        return Err(Error::invalid("after_cursor", "must not be negative"));
    }
    let environment = match pb::Environment::try_from(env) {
        Ok(pb::Environment::Unspecified) => None,
        Ok(_) => Some(environment("environment", env)?),
        Err(_) => return Err(Error::invalid("environment", "unknown environment")),
    };
    Ok(WatchRequest {
        after: after_cursor,
        owner_id: opt_owner_id("owner_id", &owner_id)?,
        environment,
        all_changes,
        keyspace_id: super::opt_keyspace_id("keyspace", &keyspace)?,
        within: TokenLimits::NONE,
    })
}

fn kind(k: ChangeKind) -> pb::KeyEventKind {
    match k {
        ChangeKind::Revoked => pb::KeyEventKind::Revoked,
        ChangeKind::Leaked => pb::KeyEventKind::Leaked,
        ChangeKind::Disabled => pb::KeyEventKind::Disabled,
        ChangeKind::Rotated | ChangeKind::ExpiryShortened => pb::KeyEventKind::ExpiresEarlier,
        ChangeKind::ScopesNarrowed => pb::KeyEventKind::ScopesNarrowed,
        ChangeKind::RestrictionsChanged => pb::KeyEventKind::RestrictionsChanged,
        ChangeKind::Created => pb::KeyEventKind::Created,
        ChangeKind::Updated => pb::KeyEventKind::Updated,
        ChangeKind::Enabled => pb::KeyEventKind::Enabled,
    }
}

pub fn key_event(c: &Change) -> pb::KeyEvent {
    pb::KeyEvent {
        cursor: c.seq,
        key_id: c.key_id.to_string(),
        key_hash: c.key_hash.to_hex(),
        kind: kind(c.kind).into(),
        time: Some(to_timestamp(c.at)),
        owner_id: c.owner_id.to_string(),
        environment: to_environment(c.environment).into(),
        expire_time: c.expires_at.map(to_timestamp),
        keyspace: c.keyspace_id.to_string(),
    }
}

fn duration(d: std::time::Duration) -> crate::grpc::wkt::Duration {
    crate::grpc::wkt::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

pub fn propagation(p: &Propagation) -> pb::Propagation {
    pb::Propagation {
        complete: p.complete(),
        confirmed_replicas: p.confirmed as i32,
        live_replicas: p.live as i32,
        elapsed: Some(duration(p.elapsed)),
        cursor: p.seq,
    }
}

pub fn replica_status(s: StatusReport) -> pb::GetReplicaStatusResponse {
    let (stuck_seq, stuck_key_id, stuck_reason) =
        s.stuck.map_or((0, String::new(), String::new()), |st| {
            (st.seq, st.key_id.unwrap_or_default(), st.reason)
        });
    pb::GetReplicaStatusResponse {
        stuck_seq,
        stuck_key_id,
        stuck_reason,
        replica_id: s.replica_id,
        applied_seq: s.applied_seq,
        head_seq: s.head_seq,
        last_contact_time: s.last_contact.map(to_timestamp),
        staleness: s.staleness.map(duration),
        index_size: s.index_size as i64,
        replicas: s
            .replicas
            .into_iter()
            .map(|r| pb::ReplicaStatus {
                replica_id: r.id,
                applied_seq: r.applied_seq,
                heartbeat_time: Some(to_timestamp(r.heartbeat_at)),
                start_time: Some(to_timestamp(r.started_at)),
            })
            .collect(),
    }
}
