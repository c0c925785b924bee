//! Generates the gRPC code of `proto/` with a vendored protoc, so the build needs no system
//! package. PROTOC is deliberately not set globally: raft's own build wants a 3.x protoc.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let protos = [
        "../proto/coinledger/v1/ledger.proto",
        "../proto/coinledger/v1/admin.proto",
        "../proto/coinledger/v1/peer.proto",
    ];
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .compile_with_config(config, &protos, &["../proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
