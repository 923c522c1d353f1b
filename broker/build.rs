//! Compiles Pulsar's wire protocol subset (`protos/pulsar.proto`, proto2) with prost.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=protos/pulsar.proto");
    prost_build::Config::new()
        .bytes(["."])
        .compile_protos(&["protos/pulsar.proto"], &["protos"])?;
    Ok(())
}
