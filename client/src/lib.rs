pub mod proto {
    tonic::include_proto!("coinledger.v1");
}
