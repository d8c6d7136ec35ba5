//! Queries and keyset pagination for the list calls.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::{
    domain::{KeyId, KeyRecord, KeyState, OwnerId},
    error::{Error, Result},
    store::KeyOrder,
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

#[derive(Clone, Debug)]
pub struct KeyQuery {
    pub owner_id: Option<OwnerId>,
    pub state: Option<KeyState>,
    /// Only keys unused (or, never used, created) for at least this long.
    pub unused_for: Option<std::time::Duration>,
    pub order: KeyOrder,
    pub page_size: u32,
    /// From the page token: continue after this (sort key, id).
    pub after: Option<(i64, KeyId)>,
}

#[derive(Clone, Debug)]
pub struct AuditQuery {
    pub key_id: Option<KeyId>,
    pub owner_id: Option<OwnerId>,
    pub action: Option<String>,
    pub from: Option<crate::domain::Timestamp>,
    pub to: Option<crate::domain::Timestamp>,
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
    /// No items, and no next page.
    pub fn empty() -> Self {
        Self {
            items: Vec::new(),
            next_page_token: None,
        }
    }

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

pub(super) fn key_token(order: KeyOrder, key: &KeyRecord) -> String {
    let (factor, sort) = (order.factor(), order.sort_key(key));
    URL_SAFE_NO_PAD.encode(format!("k:{factor}:{sort}:{}", key.id))
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

/// Where a ListKeys page token continues; empty means the start. A token
/// made under another order is refused.
pub fn parse_key_token(token: &str, order: KeyOrder) -> Result<Option<(i64, KeyId)>> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid("page_token", "is not a token from this list");
    let text = decode(token, "k:")?;
    let mut parts = text.splitn(3, ':');
    let (Some(factor), Some(sort), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if factor.parse::<i64>().map_err(|_| bad())? != order.factor() {
        return Err(Error::invalid(
            "page_token",
            "was made for a different order_by",
        ));
    }
    let sort = sort.parse().map_err(|_| bad())?;
    Ok(Some((sort, id.parse().map_err(|_| bad())?)))
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
