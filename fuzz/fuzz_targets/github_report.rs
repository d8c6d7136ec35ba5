//! The public listener's secret-scanning report parser on any bytes: every
//! body is either a bounded list of checked matches or refused; nothing
//! panics, and no list grows past its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(n) = keysmith::public::parse_report(data, 16) {
        assert!(n <= 16);
    }
});
