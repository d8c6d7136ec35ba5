//! Keyspaces as the index and Verify see them: a small number per keyspace
//! (a [`KeyspaceSlot`]), so an entry holds 4 bytes instead of an id, and a
//! request's keyspace is one map lookup away, without allocating.

use std::sync::atomic::{AtomicU32, Ordering};

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

/// Which keyspaces' keys a Verify accepts: the one the request names, if it
/// names one. A key outside answers exactly as an unknown key does. The
/// limits of the caller's credential apply on top (`verify::verify_within`).
/// `Copy`: deciding with it allocates nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyspaceScope {
    named: Named,
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

impl KeyspaceScope {
    /// Every keyspace: a request that names none, from an unbound caller.
    pub const ANY: Self = Self { named: Named::Any };

    /// Only keys of `slot`.
    pub fn only(slot: KeyspaceSlot) -> Self {
        Self {
            named: Named::One(slot),
        }
    }

    /// Matches no key at all.
    pub fn nothing() -> Self {
        Self {
            named: Named::Nothing,
        }
    }

    /// Whether a key of `slot` may answer.
    #[inline]
    pub fn admits(&self, slot: KeyspaceSlot) -> bool {
        match self.named {
            Named::Any => true,
            Named::One(s) => s == slot,
            Named::Nothing => false,
        }
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
    fn a_scope_admits_what_it_names() {
        let (a, b) = (KeyspaceSlot(1), KeyspaceSlot(2));
        assert!(KeyspaceScope::ANY.admits(a));
        assert!(KeyspaceScope::only(a).admits(a));
        assert!(!KeyspaceScope::only(a).admits(b));
        assert!(!KeyspaceScope::nothing().admits(a));
    }
}
