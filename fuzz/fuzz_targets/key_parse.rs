//! The key parser on any bytes: never panics, and accepts only strings with
//! the shape of a key (an optional keyspace prefix and `_`, then a bare key).
#![no_main]

use keysmith::domain::api_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = api_key::parse(s) {
        let head = parsed.prefix.map_or(0, |p| p.len() + 1);
        assert_eq!(s.len(), head + api_key::KEY_LEN);
        assert!(s.len() <= api_key::MAX_KEY_LEN);
        assert!(s.is_ascii());
        if let Some(p) = parsed.prefix {
            assert_eq!(&s[..head], format!("{p}_"));
        }
        // Parsing is a function of the string: the same hash twice.
        assert_eq!(api_key::parse(s).map(|p| p.hash), Ok(parsed.hash));
    }
});
