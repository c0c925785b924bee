pub mod proto {
    tonic::include_proto!("coinledger.v1");
    pub mod peer {
        tonic::include_proto!("coinledger.peer.v1");
    }
}
