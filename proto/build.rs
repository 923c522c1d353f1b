//! Compiles `protos/*.proto` with the `protoc` that the README's commands install
//! (Debian's `protobuf-compiler`); `PROTOC` overrides the one on PATH.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "protos/meta.proto",
        "protos/embedded_log.proto",
        "protos/bookie.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&protos, &["protos"])?;
    Ok(())
}
