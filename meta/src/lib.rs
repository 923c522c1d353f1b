//! Magnetar's metadata layer: everything shared between processes — ledger metadata,
//! bookie registration, topic ownership, cursors — lives behind one trait.
//!
//! - [`store`]: the [`MetadataStore`] trait (get / put with CAS / delete / paginated range /
//!   transactions / ordered watches / leases) and its value types;
//! - [`etcd`]: the production backend, on etcd 3.4+;
//! - [`embedded`]: an in-process backend persisted to one local log file, for
//!   `magnetar standalone`;
//! - [`lease`]: a lease kept alive in the background, with a "lost" notification;
//! - [`cas`]: compare-and-set whose ambiguous failures are settled by reading back;
//! - [`keys`]: every key path under the cluster root (docs/metadata.md);
//! - [`records`]: versioned protobuf values; [`ledgers`], [`bookies`] and [`namespaces`]
//!   (tenants, namespaces, partitioned topics): typed stores on top;
//! - `testing` (feature): a real-etcd process harness and the conformance suite that every
//!   backend passes.
//!
//! The path of a metadata write: a typed store encodes a versioned record, the backend
//! applies it as a compare-and-set on the key's version, and watchers of the prefix see it in
//! revision order.

pub mod bookies;
pub mod cas;
pub mod embedded;
pub mod error;
pub mod etcd;
pub mod keys;
pub mod lease;
pub mod ledgers;
pub mod namespaces;
pub mod records;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod url;

pub use bookies::{BookieRegistry, BookieState};
pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::{MetaError, Result};
pub use etcd::{EtcdOptions, EtcdStore};
pub use keys::KeyLayout;
pub use lease::Lease;
pub use ledgers::LedgerStore;
pub use namespaces::{Namespaces, TopicListChange, TopicListWatch};
pub use store::{
    Compare, EventKind, Expect, KeyValue, LeaseId, MetadataStore, PutCondition, RangePage,
    Revision, Txn, TxnOp, Version, WatchEvent, Watcher, range_all,
};
pub use url::MetaUrl;
