//! Compiles `protos/*.proto` with the `protoc` named by `PROTOC`: `.cargo/config.toml` points it
//! at `scripts/protoc` (the system's protoc, else the one vendored from crates.io), and a `PROTOC`
//! set in the environment overrides that.

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
        .btree_map(".magnetar.meta.NamespacePolicies")
        .btree_map(".magnetar.meta.RoleActions")
        .compile_protos(&protos, &["protos"])?;
    Ok(())
}
