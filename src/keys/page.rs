//! Queries and keyset pagination for the list calls.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::{
    domain::{KeyId, KeyState, OwnerId},
    error::{Error, Result},
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

#[derive(Clone, Debug)]
pub struct KeyQuery {
    pub owner_id: Option<OwnerId>,
    pub state: Option<KeyState>,
    pub page_size: u32,
    pub after: Option<KeyId>,
}

#[derive(Clone, Debug)]
pub struct AuditQuery {
    pub key_id: Option<KeyId>,
    pub owner_id: Option<OwnerId>,
    pub page_size: u32,
    pub before: Option<i64>,
}

/// One page of results and the token for the next, if there is one.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from a query that fetched `limit + 1` rows: the extra
    /// row proves there is a next page without a second query.
    pub(super) fn from_overfetch(
        mut items: Vec<T>,
        limit: u32,
        token: impl Fn(&T) -> String,
    ) -> Self {
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_page_token = if more { items.last().map(token) } else { None };
        Self {
            items,
            next_page_token,
        }
    }
}

/// Checks a requested page size: 0 means the default.
pub fn page_size(requested: i32) -> Result<u32> {
    match u32::try_from(requested) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(n) if n <= MAX_PAGE_SIZE => Ok(n),
        _ => Err(Error::invalid(
            "page_size",
            format!("must be between 0 and {MAX_PAGE_SIZE}"),
        )),
    }
}

pub(super) fn key_token(id: &KeyId) -> String {
    URL_SAFE_NO_PAD.encode(format!("k:{id}"))
}

pub(super) fn audit_token(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("a:{id}"))
}

fn decode(token: &str, tag: &str) -> Result<String> {
    let bad = || Error::invalid("page_token", "is not a token from this list");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix(tag).map(str::to_owned).ok_or_else(bad)
}

/// The key id a ListKeys page token continues after; empty means the start.
pub fn parse_key_token(token: &str) -> Result<Option<KeyId>> {
    if token.is_empty() {
        return Ok(None);
    }
    let id = decode(token, "k:")?;
    id.parse()
        .map(Some)
        .map_err(|_| Error::invalid("page_token", "is not a token from this list"))
}

/// The audit event id a ListAuditEvents page token continues below.
pub fn parse_audit_token(token: &str) -> Result<Option<i64>> {
    if token.is_empty() {
        return Ok(None);
    }
    decode(token, "a:")?
        .parse()
        .map(Some)
        .map_err(|_| Error::invalid("page_token", "is not a token from this list"))
}
