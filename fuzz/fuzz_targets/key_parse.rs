//! The key parser on any bytes: never panics, and accepts only strings with
//! the shape of a key.
#![no_main]

use keysmith::domain::api_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = api_key::parse(s) {
        assert_eq!(s.len(), api_key::KEY_LEN);
        assert!(s.is_ascii());
        // Parsing is a function of the string: the same hash twice.
        assert_eq!(api_key::parse(s).map(|p| p.hash), Ok(parsed.hash));
    }
});
