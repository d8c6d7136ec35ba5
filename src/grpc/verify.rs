//! KeyVerify handlers. Nothing here awaits: Verify answers from memory.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use zeroize::Zeroize;

use super::{convert, pb, pb::key_verify_server::KeyVerify};
use crate::{
    domain::Timestamp,
    error::Error,
    index::KeyIndex,
    verify::{self, Request as VerifyRequest},
};

pub struct VerifyService {
    index: Arc<KeyIndex>,
}

impl VerifyService {
    pub fn new(index: Arc<KeyIndex>) -> Self {
        Self { index }
    }
}

#[tonic::async_trait]
impl KeyVerify for VerifyService {
    async fn verify(
        &self,
        req: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        if !self.index.is_ready() {
            return Err(Error::Unavailable("the key index is still loading").into());
        }
        let pb::VerifyRequest {
            mut key,
            required_scopes,
            client_ip: _,
            referrer: _,
            resource: _,
        } = req.into_inner();
        convert::check_required_scopes(&required_scopes)?;
        let request = VerifyRequest {
            required_scopes: &required_scopes,
        };
        let outcome = verify::verify(&self.index, &key, &request, Timestamp::now());
        key.zeroize();
        Ok(Response::new(convert::verify_response(&outcome)))
    }
}
