//! Building blocks every Magnetar crate shares.
//!
//! - [`ids`]: the newtypes that cross crate boundaries (`LedgerId`, `EntryId`, `BookieId`,
//!   `Position`), so a ledger id is never confused with an entry id.
//! - [`checksum`]: crc32c over byte slices; every on-disk record and wire payload uses it.
//! - [`config`]: the one way servers load configuration — TOML file, then `MAGNETAR_*`
//!   environment, then flags — plus human units (`"2ms"`, `"128MiB"`).
//! - [`telemetry`]: tracing initialisation and the Prometheus recorder behind `/metrics`.
//! - [`fs`]: the storage seam every durable write goes through — the real file system, or a
//!   simulated one that can lose power (for tests that catch a missing fsync).

pub mod checksum;
pub mod config;
pub mod error;
pub mod fs;
pub mod fuzz;
pub mod ids;
pub mod net;
pub mod telemetry;

pub use error::{Error, Result};
pub use ids::{BookieId, EntryId, LedgerId, Position};
