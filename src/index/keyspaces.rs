//! Keyspaces as the index and Verify see them: a small number per keyspace
//! (a [`KeyspaceSlot`]), so an entry holds 4 bytes instead of an id, and a
//! request's keyspace is one map lookup away, without allocating.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use dashmap::DashMap;

use crate::domain::KeyspaceId;

/// A keyspace's number in this process. Two keyspaces never share one;
/// numbers are not stable across processes (never store or send them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyspaceSlot(u32);

impl KeyspaceSlot {
    /// `ks_default`'s, interned first.
    pub const DEFAULT: Self = Self(0);
}

/// Keyspace id → slot. Only grows: keyspaces are never deleted, so it is
/// bounded by the keyspaces that exist. Written when an entry is made (the
/// admin path and the feed), read by every Verify that names a keyspace.
pub(super) struct KeyspaceSlots {
    slots: DashMap<Box<str>, KeyspaceSlot>,
    next: AtomicU32,
}

impl Default for KeyspaceSlots {
    fn default() -> Self {
        let slots = DashMap::new();
        slots.insert(KeyspaceId::DEFAULT_STR.into(), KeyspaceSlot::DEFAULT);
        Self {
            slots,
            next: AtomicU32::new(1),
        }
    }
}

impl KeyspaceSlots {
    /// The slot of `id`, if any key of it was ever indexed (or it was
    /// interned). A lookup by `&str`: no allocation.
    #[inline]
    pub(super) fn get(&self, id: &str) -> Option<KeyspaceSlot> {
        self.slots.get(id).map(|s| *s)
    }

    /// The slot of `id`, made on first sight.
    pub(super) fn intern(&self, id: &KeyspaceId) -> KeyspaceSlot {
        if let Some(slot) = self.get(id.as_str()) {
            return slot;
        }
        *self
            .slots
            .entry(id.as_str().into())
            .or_insert_with(|| KeyspaceSlot(self.next.fetch_add(1, Ordering::Relaxed)))
    }
}

/// The keyspaces a caller is bound to (say, a verify credential limited to
/// some keyspaces), resolved once, when the credential is loaded: their ids
/// for streams, their slots for Verify. Bind a call with
/// [`KeyspaceScope::within`] (Verify) or `WatchRequest::within` (streams).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyspaceBinding {
    ids: Arc<[KeyspaceId]>,
    slots: Arc<[KeyspaceSlot]>,
}

impl KeyspaceBinding {
    /// Interns `ids` in `index` (allocates: do it when loading the caller,
    /// not per request).
    pub fn new(index: &super::KeyIndex, ids: Vec<KeyspaceId>) -> Self {
        Self {
            slots: index.keyspace_slots(&ids).into(),
            ids: ids.into(),
        }
    }

    pub fn ids(&self) -> &[KeyspaceId] {
        &self.ids
    }

    /// Whether a key of keyspace `id` is within the binding.
    pub fn admits(&self, id: &KeyspaceId) -> bool {
        self.ids.contains(id)
    }
}

/// Which keyspaces' keys a Verify accepts: the one the request names, if it
/// names one, within the ones its caller is bound to, if it is bound. A key
/// outside answers exactly as an unknown key does. `Copy`, and borrowed from
/// the request and the caller: deciding with it allocates nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyspaceScope<'a> {
    named: Named,
    bound: Option<&'a [KeyspaceSlot]>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Named {
    /// The request names no keyspace.
    #[default]
    Any,
    One(KeyspaceSlot),
    /// The request names a keyspace no indexed key is in: nothing matches.
    Nothing,
}

impl<'a> KeyspaceScope<'a> {
    /// Every keyspace: a request that names none, from an unbound caller.
    pub const ANY: Self = Self {
        named: Named::Any,
        bound: None,
    };

    /// Only keys of `slot`.
    pub fn only(slot: KeyspaceSlot) -> Self {
        Self {
            named: Named::One(slot),
            bound: None,
        }
    }

    /// Matches no key at all.
    pub fn nothing() -> Self {
        Self {
            named: Named::Nothing,
            bound: None,
        }
    }

    /// Restricts to `binding`, the keyspaces a caller is bound to: the call
    /// that binds a Verify to them (a stream's is `WatchRequest::within`).
    /// A second binding replaces the first; bind once, from the caller.
    pub fn within(self, binding: &'a KeyspaceBinding) -> Self {
        Self {
            bound: Some(&binding.slots),
            ..self
        }
    }

    /// Whether a key of `slot` may answer.
    #[inline]
    pub fn admits(&self, slot: KeyspaceSlot) -> bool {
        let named = match self.named {
            Named::Any => true,
            Named::One(s) => s == slot,
            Named::Nothing => false,
        };
        named && self.bound.is_none_or(|b| b.contains(&slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_distinct() {
        let slots = KeyspaceSlots::default();
        let a: KeyspaceId = "ks_a".parse().unwrap();
        let b: KeyspaceId = "ks_b".parse().unwrap();
        let (sa, sb) = (slots.intern(&a), slots.intern(&b));
        assert_ne!(sa, sb);
        assert_ne!(sa, KeyspaceSlot::DEFAULT);
        assert_eq!(slots.intern(&a), sa);
        assert_eq!(slots.get("ks_a"), Some(sa));
        assert_eq!(slots.get("ks_default"), Some(KeyspaceSlot::DEFAULT));
        assert_eq!(slots.get("ks_c"), None);
    }

    #[test]
    fn a_scope_admits_what_it_names_within_its_bound() {
        let (a, b, c) = (KeyspaceSlot(1), KeyspaceSlot(2), KeyspaceSlot(3));
        assert!(KeyspaceScope::ANY.admits(a));
        assert!(KeyspaceScope::only(a).admits(a));
        assert!(!KeyspaceScope::only(a).admits(b));
        assert!(!KeyspaceScope::nothing().admits(a));
        let bound = KeyspaceBinding {
            ids: Arc::new([]),
            slots: Arc::new([a, b]),
        };
        assert!(KeyspaceScope::ANY.within(&bound).admits(b));
        assert!(!KeyspaceScope::ANY.within(&bound).admits(c));
        assert!(!KeyspaceScope::only(c).within(&bound).admits(c));
        assert!(KeyspaceScope::only(a).within(&bound).admits(a));
    }
}
