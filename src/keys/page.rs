//! Queries and keyset pagination for the list calls. A page token is the
//! last row's position, sealed (`PageTokens`) to the query's filter: a
//! client cannot forge a position, nor page a list other than the one the
//! token came from.

use serde_json::json;

use crate::{
    domain::{
        KeyId, KeyRecord, KeyState, Keyspace, KeyspaceId, OwnerId, PageTokenError, PageTokens,
        RoleName, Timestamp,
    },
    error::{Error, Result},
    store::{AuditEvent, KeyOrder},
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

#[derive(Clone, Debug)]
pub struct KeyQuery {
    pub owner_id: Option<OwnerId>,
    pub keyspace_id: Option<KeyspaceId>,
    pub state: Option<KeyState>,
    /// Only keys unused (or, never used, created) for at least this long.
    pub unused_for: Option<std::time::Duration>,
    pub order: KeyOrder,
    pub page_size: u32,
    /// As the client sent it, checked against this query's filter when the
    /// list runs; empty for the first page.
    pub page_token: String,
}

#[derive(Clone, Debug)]
pub struct KeyspaceQuery {
    pub page_size: u32,
    /// As the client sent it; empty for the first page.
    pub page_token: String,
}

/// ListRoles: one keyspace's roles, by name.
#[derive(Clone, Debug)]
pub struct RoleQuery {
    pub keyspace_id: KeyspaceId,
    pub page_size: u32,
    /// As the client sent it; empty for the first page.
    pub page_token: String,
}

#[derive(Clone, Debug)]
pub struct AuditQuery {
    pub key_id: Option<KeyId>,
    pub owner_id: Option<OwnerId>,
    pub action: Option<String>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub page_size: u32,
    /// As the client sent it; empty for the first page.
    pub page_token: String,
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
    pub(crate) fn from_overfetch(
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

impl KeyQuery {
    /// What a page token is sealed to: every field but the page size and
    /// the token itself. ListStaleKeys is ListKeys with a fixed filter, so
    /// the two share tokens exactly when they list the same keys.
    fn canonical(&self) -> String {
        let mut filter = json!([
            "keys",
            self.owner_id.as_ref().map(OwnerId::as_str),
            self.state.map(KeyState::as_str),
            self.unused_for
                .map(|d| [d.as_secs(), u64::from(d.subsec_nanos())]),
            self.order.factor(),
        ]);
        // Only when set, so a filter without one seals as it always did.
        if let (Some(ks), Some(list)) = (&self.keyspace_id, filter.as_array_mut()) {
            list.push(json!({ "keyspace": ks.as_str() }));
        }
        filter.to_string()
    }

    /// Where the page token continues, after (sort key, id); `None` at the
    /// start.
    pub(super) fn after(&self, tokens: &PageTokens) -> Result<Option<(i64, KeyId)>> {
        open(tokens, &self.page_token, &self.canonical(), |p| {
            let (sort, id) = p.split_once(':')?;
            Some((sort.parse().ok()?, id.parse().ok()?))
        })
    }

    /// The token for the page after `last`.
    pub(super) fn token_after(&self, tokens: &PageTokens, last: &KeyRecord) -> String {
        let position = format!("{}:{}", self.order.sort_key(last), last.id);
        tokens.seal(&self.canonical(), &position)
    }
}

impl KeyspaceQuery {
    const CANONICAL: &str = r#"["keyspaces"]"#;

    /// The keyspace id the page token continues after; `None` at the start.
    pub(super) fn after(&self, tokens: &PageTokens) -> Result<Option<KeyspaceId>> {
        open(tokens, &self.page_token, Self::CANONICAL, |p| {
            p.parse().ok()
        })
    }

    pub(super) fn token_after(&self, tokens: &PageTokens, last: &Keyspace) -> String {
        tokens.seal(Self::CANONICAL, last.id.as_str())
    }
}

impl RoleQuery {
    /// Sealed to the keyspace: one keyspace's token cannot page another's.
    fn canonical(&self) -> String {
        json!(["roles", self.keyspace_id.as_str()]).to_string()
    }

    /// The role name the page token continues after; `None` at the start.
    pub(super) fn after(&self, tokens: &PageTokens) -> Result<Option<RoleName>> {
        open(tokens, &self.page_token, &self.canonical(), |p| {
            RoleName::parse(p).ok()
        })
    }

    pub(super) fn token_after(&self, tokens: &PageTokens, last: &RoleName) -> String {
        tokens.seal(&self.canonical(), last.as_str())
    }
}

impl AuditQuery {
    fn canonical(&self) -> String {
        json!([
            "audit",
            self.key_id.as_ref().map(KeyId::as_str),
            self.owner_id.as_ref().map(OwnerId::as_str),
            self.action,
            self.from.map(Timestamp::as_millis),
            self.to.map(Timestamp::as_millis),
        ])
        .to_string()
    }

    /// The event id the page token continues below; `None` at the start.
    pub(super) fn before(&self, tokens: &PageTokens) -> Result<Option<i64>> {
        open(tokens, &self.page_token, &self.canonical(), |p| {
            p.parse().ok()
        })
    }

    pub(super) fn token_after(&self, tokens: &PageTokens, last: &AuditEvent) -> String {
        tokens.seal(&self.canonical(), &last.id.to_string())
    }
}

/// Opens `token` for `filter` and parses its position. A position that does
/// not parse was sealed by this installation, under another format: refused
/// like any other token not for this list.
pub(crate) fn open<P>(
    tokens: &PageTokens,
    token: &str,
    filter: &str,
    parse: impl FnOnce(&str) -> Option<P>,
) -> Result<Option<P>> {
    let refused = |e: PageTokenError| Error::invalid("page_token", e);
    match tokens.open(token, filter).map_err(refused)? {
        None => Ok(None),
        Some(position) => parse(&position)
            .map(Some)
            .ok_or_else(|| refused(PageTokenError)),
    }
}
