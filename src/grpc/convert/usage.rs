use super::{pb, timestamp, to_timestamp};
use crate::{
    domain::Timestamp,
    error::Result,
    keys::{KeyUsage, Overlap},
    store::{UnknownRow, UsageCounts},
};

fn counts(c: &UsageCounts) -> pb::UsageCounts {
    let UsageCounts {
        total,
        valid,
        revoked,
        expired,
        disabled,
        insufficient_scope,
        ip_not_allowed,
        referrer_not_allowed,
        resource_not_allowed,
        rate_limited,
        usage_exceeded,
        would_deny,
    } = *c;
    pb::UsageCounts {
        total,
        valid,
        revoked,
        expired,
        disabled,
        insufficient_scope,
        ip_not_allowed,
        referrer_not_allowed,
        resource_not_allowed,
        rate_limited,
        usage_exceeded,
        would_deny,
    }
}

/// An optional time range from a request.
pub fn range(
    from: Option<crate::grpc::wkt::Timestamp>,
    to: Option<crate::grpc::wkt::Timestamp>,
) -> Result<(Option<Timestamp>, Option<Timestamp>)> {
    Ok((
        from.map(|t| timestamp("from", t)).transpose()?,
        to.map(|t| timestamp("to", t)).transpose()?,
    ))
}

pub fn key_usage(u: KeyUsage) -> pb::GetKeyUsageResponse {
    pb::GetKeyUsageResponse {
        buckets: u
            .buckets
            .iter()
            .map(|b| pb::UsageBucket {
                hour: Some(to_timestamp(b.hour)),
                counts: Some(counts(&b.counts)),
            })
            .collect(),
        totals: Some(counts(&u.totals)),
        last_used_time: u.key.last_used_at.map(to_timestamp),
        last_client_ip: u.key.last_client_ip.unwrap_or_default(),
    }
}

pub fn overlap(o: Overlap) -> pb::GetRotationOverlapResponse {
    pb::GetRotationOverlapResponse {
        old_key_id: o.old.id.to_string(),
        new_key_id: o.new.id.to_string(),
        rotate_time: Some(to_timestamp(o.new.created_at)),
        grace_end_time: o.old.expires_at.map(to_timestamp),
        old_key: Some(counts(&o.old_usage)),
        new_key: Some(counts(&o.new_usage)),
        old_last_used_time: o.old.last_used_at.map(to_timestamp),
        new_last_used_time: o.new.last_used_at.map(to_timestamp),
        end_grace_when_idle: o
            .old
            .end_grace_when_idle
            .map(|d| crate::grpc::wkt::Duration {
                seconds: d.as_secs() as i64,
                nanos: d.subsec_nanos() as i32,
            }),
    }
}

pub fn unknown_stats(rows: Vec<UnknownRow>) -> pb::GetUnknownKeyStatsResponse {
    pb::GetUnknownKeyStatsResponse {
        malformed: rows.iter().map(|r| r.malformed).sum(),
        not_found: rows.iter().map(|r| r.not_found).sum(),
        buckets: rows
            .into_iter()
            .map(|r| pb::UnknownKeyBucket {
                hour: Some(to_timestamp(r.hour)),
                malformed: r.malformed,
                not_found: r.not_found,
            })
            .collect(),
    }
}
