//! A rotation policy: proto ↔ [`KeyRotation`], for keys and for a
//! keyspace's defaults.

use super::{duration, pb};
use crate::{
    domain::KeyRotation,
    error::{Error, Result},
};

pub(super) fn rotation(field: &str, p: Option<pb::RotationPolicy>) -> Result<Option<KeyRotation>> {
    let Some(pb::RotationPolicy {
        every,
        action,
        never,
    }) = p
    else {
        return Ok(None);
    };
    if never {
        return Ok(Some(KeyRotation::Never));
    }
    let every = every.ok_or_else(|| Error::invalid(format!("{field}.every"), "is required"))?;
    let every = duration(&format!("{field}.every"), every)?;
    let expire = match pb::RotationAction::try_from(action) {
        Ok(pb::RotationAction::Expire) => true,
        Ok(_) => false,
        Err(_) => return Err(Error::invalid(format!("{field}.action"), "unknown action")),
    };
    KeyRotation::every(every, expire)
        .map(Some)
        .map_err(|m| Error::invalid(format!("{field}.every"), m))
}

pub(super) fn to_rotation(r: KeyRotation) -> pb::RotationPolicy {
    match r {
        KeyRotation::Never => pb::RotationPolicy {
            never: true,
            ..Default::default()
        },
        KeyRotation::Every { every, expire } => pb::RotationPolicy {
            every: Some(crate::grpc::wkt::Duration {
                seconds: every.as_secs() as i64,
                nanos: 0,
            }),
            action: if expire {
                pb::RotationAction::Expire
            } else {
                pb::RotationAction::Notify
            }
            .into(),
            never: false,
        },
    }
}
