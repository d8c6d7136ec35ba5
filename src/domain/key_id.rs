use std::{
    fmt,
    str::FromStr,
    sync::{Mutex, PoisonError},
};

/// A key's public identifier: `key_` and a lowercase ULID (26 characters).
///
/// Time-ordered, so listing by id lists by creation: ids made by one process
/// strictly increase, even within a millisecond; across replicas they are
/// ordered to the millisecond. Safe to log and to show.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

const PREFIX: &str = "key_";

#[derive(Debug, thiserror::Error)]
#[error("must be `key_` followed by 26 lowercase base32 characters")]
pub struct KeyIdError;

impl KeyId {
    pub fn generate() -> Self {
        // A plain `Ulid::new()` draws fresh random bits each time, so two ids
        // made in the same millisecond sort at random. The generator adds one
        // to the last id's random part instead.
        static GENERATOR: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());
        let ulid = loop {
            let next = GENERATOR
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .generate();
            match next {
                Ok(ulid) => break ulid,
                // 2^80 ids in one millisecond: wait for the next one.
                Err(_) => std::thread::yield_now(),
            }
        };
        Self(format!("{PREFIX}{}", ulid.to_string().to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = KeyIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix(PREFIX).ok_or(KeyIdError)?;
        let canonical = rest.len() == 26
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        match ulid::Ulid::from_string(rest) {
            Ok(_) if canonical => Ok(Self(s.to_owned())),
            _ => Err(KeyIdError),
        }
    }
}

impl KeyId {
    /// The id's 128-bit ULID: 16 bytes where the string takes 30 and a heap
    /// allocation. The in-memory index holds ids this way.
    pub fn pack(&self) -> PackedKeyId {
        let ulid = ulid::Ulid::from_string(&self.0[PREFIX.len()..])
            .expect("a KeyId always holds a valid ULID");
        PackedKeyId(ulid.to_bytes())
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A [`KeyId`] packed into its ULID's 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackedKeyId([u8; 16]);

impl PackedKeyId {
    pub fn unpack(self) -> KeyId {
        let mut buf = [0u8; ulid::ULID_LEN];
        let text = ulid::Ulid::from_bytes(self.0).array_to_str(&mut buf);
        text.make_ascii_lowercase();
        let mut s = String::with_capacity(PREFIX.len() + ulid::ULID_LEN);
        s.push_str(PREFIX);
        s.push_str(text);
        KeyId(s)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_time() {
        let a = KeyId::generate();
        let parsed: KeyId = a.as_str().parse().expect("generated id parses");
        assert_eq!(parsed, a);
        assert!(a.as_str().len() == 30);
    }

    /// Many ids fall in one millisecond; the store lists by id as text.
    #[test]
    fn ids_made_one_after_another_sort_in_that_order() {
        let ids: Vec<KeyId> = (0..10_000).map(|_| KeyId::generate()).collect();
        for pair in ids.windows(2) {
            assert!(
                pair[0].as_str() < pair[1].as_str(),
                "{} then {}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn ids_carry_their_creation_time() {
        let now_ms = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis() as u64
        };
        let before = now_ms();
        let id = KeyId::generate();
        let after = now_ms();
        let ulid = ulid::Ulid::from_string(&id.as_str()[PREFIX.len()..]).expect("ulid");
        assert!((before..=after).contains(&ulid.timestamp_ms()), "{id}");
        // An id from a later millisecond sorts after every earlier one.
        let earlier = ulid::Ulid::from_parts(before.saturating_sub(1), u128::MAX >> 48);
        let earlier = format!("{PREFIX}{}", earlier.to_string().to_lowercase());
        assert!(earlier.as_str() < id.as_str());
    }

    #[test]
    fn ids_from_many_threads_are_unique_and_ordered_per_thread() {
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..2_000).map(|_| KeyId::generate()).collect()))
            .collect();
        let mut all = std::collections::HashSet::new();
        for t in threads {
            let ids: Vec<KeyId> = t.join().expect("thread");
            assert!(
                ids.windows(2).all(|p| p[0] < p[1]),
                "ordered in each thread"
            );
            all.extend(ids);
        }
        assert_eq!(all.len(), 8_000, "no id twice");
    }

    #[test]
    fn packed_ids_unpack_to_the_same_id() {
        for _ in 0..100 {
            let a = KeyId::generate();
            assert_eq!(a.pack().unpack(), a);
        }
        let fixed: KeyId = "key_01hv0000000000000000000000".parse().expect("id");
        assert_eq!(
            fixed.pack().unpack().as_str(),
            "key_01hv0000000000000000000000"
        );
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "key_",
            "key_123",
            "KEY_01hv0000000000000000000000",
            "key_01HV0000000000000000000000",
            "key_01hv000000000000000000000!",
            "sk_live_x",
        ] {
            assert!(bad.parse::<KeyId>().is_err(), "{bad}");
        }
    }
}
