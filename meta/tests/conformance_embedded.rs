//! The metadata conformance suite against the embedded store.

use std::sync::Arc;

use meta::{EmbeddedOptions, EmbeddedStore, MetadataStore};

async fn fixture() -> (Arc<dyn MetadataStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
        .await
        .expect("open embedded store");
    (Arc::new(store), dir)
}

meta::conformance_tests!(fixture());
