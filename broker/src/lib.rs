//! The broker: speaks the Pulsar binary protocol to unmodified Pulsar clients and stores each
//! topic as a managed ledger — a chain of ledgers replicated over bookies.
//!
//! - [`protocol`]: frames, generated messages, one handler per command;
//! - [`connection`]: one task per client connection;
//! - [`ownership`]: broker registration, namespace bundles, ownership under leases, lookup;
//! - [`service`]: topics loaded on first use (by the owner of their bundle);
//! - [`topic`]: a topic, its subscriptions and their dispatchers;
//! - [`managed_ledger`]: the ledger list (CAS), rollover, recovery of a previous owner's
//!   ledgers, durable cursors (runs of acknowledged entries), the broker-wide entry cache;
//! - [`admin`]: the `/admin/v2` REST calls (unload of topics and bundles);
//! - [`auth`]: authentication (`tls`, `token`, `basic`) and authorization; [`tls`]: the
//!   TLS listeners' certificates and client-certificate check;
//! - [`server`]: listeners, HTTP, shutdown; [`stats`]: Pulsar-named rates and backlogs, and
//!   trimming of consumed ledgers; [`evict`]: the broker-wide entry cache kept to what
//!   tailing readers need.
//!
//! Publish path: SEND → checksum verified → appended to the open ledger (payload stored byte
//! for byte) → durable at Qa → SEND_RECEIPT `ledger:entry`. Consume path: the subscription's
//! dispatcher reads from the entry cache or bookies and sends MESSAGE while the consumer has
//! permits; ACKs move the cursor, persisted by CAS at most once a second.

pub mod admin;
pub mod auth;
pub mod config;
pub mod conn_limits;
pub mod connection;
pub mod error;
pub mod evict;
#[cfg(test)]
mod fuzz_targets;
pub mod inactive;
pub mod managed_ledger;
pub mod nonpersistent;
pub mod outbound;
pub mod ownership;
pub mod protocol;
pub mod pulsar_conf;
pub mod schema;
pub mod server;
pub mod service;
pub mod stats;
pub mod sticky_key;
pub mod tls;
pub mod topic;
pub mod topic_metrics;

pub use config::BrokerConfig;
pub use error::{BrokerError, Result};
pub use service::BrokerService;
