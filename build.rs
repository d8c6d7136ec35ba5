//! Compiles `proto/` with protox (pure Rust, no protoc) and writes the
//! descriptor set that server reflection serves.

use std::{env, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=migrations");

    let out = PathBuf::from(env::var("OUT_DIR")?);
    let fds = protox::compile(["keysmith/v1/keysmith.proto"], ["proto"])?;
    std::fs::write(out.join("keysmith_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
