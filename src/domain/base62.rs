//! Fixed-width base62 over the alphabet `0-9A-Za-z`.
//!
//! The alphabet is in ASCII order, so fixed-width encodings sort like the
//! numbers they encode.

pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The value of one base62 digit, or `None` for any other byte.
#[inline]
pub const fn digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'Z' => Some(b - b'A' + 10),
        b'a'..=b'z' => Some(b - b'a' + 36),
        _ => None,
    }
}

/// Encodes a big-endian number into exactly `out.len()` digits.
///
/// Returns `false` if the number does not fit; `out` is then unspecified.
pub fn encode_be(bytes: &[u8], out: &mut [u8]) -> bool {
    // Schoolbook division of the whole number by 62, one digit per pass.
    let mut num = [0u8; 64];
    let num = &mut num[..bytes.len()];
    num.copy_from_slice(bytes);
    for slot in out.iter_mut().rev() {
        let mut rem = 0u32;
        for byte in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            rem = acc % 62;
        }
        *slot = ALPHABET[rem as usize];
    }
    num.iter().all(|&b| b == 0)
}

/// Encodes a `u32` into exactly six digits (62^6 > 2^32).
pub fn encode_u32(mut n: u32, out: &mut [u8; 6]) {
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
}

/// Decodes six digits into a `u32`; `None` on a bad digit or overflow.
#[inline]
pub fn decode_u32(digits: &[u8; 6]) -> Option<u32> {
    let mut n: u64 = 0;
    for &d in digits {
        n = n * 62 + u64::from(digit(d)?);
    }
    u32::try_from(n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u32_round_trips_at_the_edges() {
        for n in [0, 1, 61, 62, u32::MAX / 2, u32::MAX] {
            let mut out = [0u8; 6];
            encode_u32(n, &mut out);
            assert_eq!(decode_u32(&out), Some(n));
        }
    }

    #[test]
    fn six_digits_beyond_u32_are_rejected() {
        assert_eq!(decode_u32(b"zzzzzz"), None);
        assert_eq!(decode_u32(b"00000-"), None);
    }

    #[test]
    fn encoding_preserves_order() {
        let mut a = [0u8; 43];
        let mut b = [0u8; 43];
        assert!(encode_be(&[0x01; 32], &mut a));
        assert!(encode_be(&[0x02; 32], &mut b));
        assert!(a < b);
        assert!(encode_be(&[0xff; 32], &mut b), "2^256-1 fits 43 digits");
    }
}
