//! The index's keys are SHA-256 outputs: already uniform, and not choosable
//! by an attacker (finding inputs for chosen hash bits is preimage work). So
//! the map can use their first eight bytes as the hash instead of running
//! SipHash on every lookup.

use std::hash::{BuildHasher, Hasher};

#[derive(Clone, Copy, Default)]
pub struct BuildKeyHashHasher;

impl BuildHasher for BuildKeyHashHasher {
    type Hasher = KeyHashHasher;

    fn build_hasher(&self) -> KeyHashHasher {
        KeyHashHasher(0)
    }
}

/// Takes the first eight bytes written; `KeyHash` writes its 32 bytes once.
pub struct KeyHashHasher(u64);

impl Hasher for KeyHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]: Hash` writes the bytes in one call (no length prefix
        // for arrays). Fold anything else in so the hasher stays correct
        // for any input, just not clever.
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(word);
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;
    use crate::domain::KeyHash;

    #[test]
    fn distinct_hashes_spread() {
        let h = |b: u8| {
            let mut bytes = [0u8; 32];
            bytes[0] = b;
            BuildKeyHashHasher.hash_one(KeyHash::from_bytes(bytes))
        };
        assert_ne!(h(1), h(2));
    }
}
