//! Connect request bodies (JSON and protobuf) for every unary method, and
//! the JSON they carry over to: every body either carries over or gets a
//! field-named error; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = keysmith::grpc::fuzz::connect_bodies(data);
});
