use super::{duration, owner_id, pb};
use crate::{
    domain::{OwnerId, StalePolicy},
    error::{Error, Result},
};

fn to_duration(d: std::time::Duration) -> crate::grpc::wkt::Duration {
    crate::grpc::wkt::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

pub fn owner_policy(p: pb::OwnerStalePolicy) -> Result<(OwnerId, StalePolicy)> {
    let pb::OwnerStalePolicy {
        owner_id: owner,
        flag_after,
        disable_after,
        revoke_after,
        dry_run,
    } = p;
    let owner = owner_id("owner_id", &owner)?;
    let flag_after = flag_after.ok_or_else(|| Error::invalid("flag_after", "is required"))?;
    let policy = StalePolicy::new(
        duration("flag_after", flag_after)?,
        disable_after
            .map(|d| duration("disable_after", d))
            .transpose()?,
        revoke_after
            .map(|d| duration("revoke_after", d))
            .transpose()?,
        dry_run,
    )
    .map_err(|(field, reason)| Error::invalid(field, reason))?;
    Ok((owner, policy))
}

pub fn to_owner_policy(owner: &OwnerId, p: &StalePolicy) -> pb::OwnerStalePolicy {
    pb::OwnerStalePolicy {
        owner_id: owner.to_string(),
        flag_after: Some(to_duration(p.flag_after)),
        disable_after: p.disable_after.map(to_duration),
        revoke_after: p.revoke_after.map(to_duration),
        dry_run: p.dry_run,
    }
}
