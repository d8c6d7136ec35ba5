//! Admin request decoding and conversion on any bytes: every request either
//! converts or gets a field-named error; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = keysmith::grpc::fuzz::admin_requests(data);
});
