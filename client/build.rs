//! Generates the public Ledger and Admin APIs with a vendored protoc.
//!
//! The client side is what the library uses. The server side is generated too so the crate's
//! own tests can run tiny in-process servers that script NOT_LEADER / UNAVAILABLE answers;
//! it costs only compile time and nothing calls it outside tests.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let protos = [
        "../proto/coinledger/v1/ledger.proto",
        "../proto/coinledger/v1/admin.proto",
    ];
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .build_server(true)
        .compile_with_config(config, &protos, &["../proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
