//! The metadata conformance suite against a real etcd process (one per test, on ephemeral
//! ports).

use std::sync::Arc;

use meta::MetadataStore;
use meta::testing::EtcdServer;

async fn fixture() -> (Arc<dyn MetadataStore>, EtcdServer) {
    let server = EtcdServer::start().await.expect("start etcd");
    let store = server.store().await.expect("connect to etcd");
    (Arc::new(store), server)
}

meta::conformance_tests!(fixture());
