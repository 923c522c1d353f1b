//! The bookie: Magnetar's storage node, and (later) the ledger client brokers use to write
//! replicated ledgers across bookies.
//!
//! - [`entry`]: an entry and the writer's checksum that follows it everywhere;
//! - [`journal`]: the write-ahead log with group commit (one write + fdatasync per group);
//! - [`storage`]: write cache, per-ledger data files, per-ledger state, checkpoint mark;
//! - [`engine`]: journal + storage + the per-ledger rules (master key, fencing, LAC);
//! - [`format`]: on-disk constants (layouts in docs/formats.md);
//! - [`cookie`], [`registration`], [`disk`]: the bookie's identity and liveness in the
//!   metadata store, and read-only mode;
//! - [`gc`]: removes ledgers the metadata no longer needs on this bookie;
//! - [`server`]: gRPC handlers (one file each), HTTP, start-up and shutdown order;
//! - [`config`]: `config/bookie.toml`, compiled in as the documented defaults;
//! - [`client`]: the ledger client — quorum-striped writes, ensemble changes, fencing and
//!   recovery, reads.
//!
//! Write path: gRPC add → checksum verified → write cache → journal queue → group commit →
//! fdatasync → reply. Read path: write cache, else the ledger's data file (checksums verified
//! again). Checkpoint path: journal position captured → write cache flushed to ledger files →
//! fsync → checkpoint mark → old journal files deleted.

pub mod client;
pub mod config;
pub mod cookie;
pub mod disk;
pub mod engine;
pub mod entry;
pub mod error;
pub mod format;
pub mod gc;
pub mod journal;
pub mod perf;
pub mod registration;
pub mod server;
pub mod storage;

pub use config::BookieConfig;
pub use engine::{Engine, EngineConfig, RecoveryMode};
pub use entry::Entry;
pub use error::{BookieError, Result};
