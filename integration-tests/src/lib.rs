//! The cluster harness: real `etcd` and real `magnetar` processes on ephemeral loopback
//! ports, with kill -9, SIGTERM, SIGSTOP/SIGCONT and restart, and logs kept when a test
//! fails. Tests wait for conditions with deadlines (`meta::testing::wait_for`), never for a
//! fixed time.
//!
//! - [`bin`]: locates (and builds, once per test process) the `magnetar` binary;
//! - [`process`]: a child process that prints a `ready:` line, with signal helpers;
//! - [`bookie`]: a bookie process and a small gRPC client for it;
//! - [`cluster`]: `TestCluster`, etcd plus N bookies, and ledger clients for it;
//! - [`standalone`]: a `magnetar standalone` process and the official Python client.

pub mod bin;
pub mod bookie;
pub mod cluster;
pub mod process;
pub mod standalone;

pub use bookie::{BookieClient, BookieProcess};
pub use cluster::TestCluster;
pub use meta::testing::{EtcdServer, wait_for};
