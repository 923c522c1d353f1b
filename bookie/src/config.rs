//! The bookie's configuration: `config/bookie.toml` is the documentation (every key with its
//! default) and is compiled in; a test checks it equals [`BookieConfig::default`].

use std::path::PathBuf;
use std::time::Duration;

use common::config::{ByteSize, duration};
use serde::{Deserialize, Serialize};

use crate::engine::{EngineConfig, RecoveryMode};
use crate::error::{BookieError, Result};
use crate::journal::WriterConfig;
use crate::storage::StorageConfig;

/// The commented default configuration file.
pub const DEFAULT_TOML: &str = include_str!("../config/bookie.toml");

/// Everything `magnetar bookie` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BookieConfig {
    /// Bookie id; empty = advertised service address.
    pub bookie_id: String,
    /// gRPC listen address.
    pub bind: String,
    /// HTTP listen address.
    pub http_bind: String,
    /// Host advertised to clients; empty = host of `bind`.
    pub advertised_address: String,
    /// gRPC over TLS: the bookie's PEM certificate chain (empty: plain gRPC).
    pub tls_certificate_file: String,
    /// Its PEM private key.
    pub tls_key_file: String,
    /// CA certificates every caller's certificate must chain to (empty: callers are not
    /// asked for one).
    pub tls_trust_certs_file: String,
    /// Roles (a caller certificate's CN or an OU) allowed to call, comma-separated; required
    /// with `tls_trust_certs_file`.
    pub authorized_roles: String,
    /// Metadata store.
    pub meta: MetaSection,
    /// Journal.
    pub journal: JournalSection,
    /// Ledger storage.
    pub ledger_storage: LedgerStorageSection,
    /// Disk usage thresholds.
    pub disk: DiskSection,
    /// Garbage collection of ledgers the metadata no longer needs here.
    pub gc: GcSection,
}

/// `[gc]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcSection {
    /// Run the collector at all.
    pub enabled: bool,
    /// Time between passes.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// A ledger whose metadata exists but no longer lists this bookie is removed only once it
    /// has had no add or fence here for this long (re-replication copies before it updates the
    /// metadata).
    #[serde(with = "duration")]
    pub min_age: Duration,
}

impl Default for GcSection {
    fn default() -> Self {
        GcSection {
            enabled: true,
            interval: Duration::from_secs(15 * 60),
            min_age: Duration::from_secs(60 * 60),
        }
    }
}

/// `[meta]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaSection {
    /// `etcd://HOST:PORT[,HOST:PORT]`.
    pub url: String,
    /// Cluster name (key root `/magnetar/<cluster>/`).
    pub cluster: String,
    /// How long to keep trying to reach etcd at start.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Bound on each metadata call.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Registration lease TTL.
    #[serde(with = "duration")]
    pub lease_ttl: Duration,
}

/// `[journal]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalSection {
    /// Journal directory.
    pub dir: PathBuf,
    /// Group commit: longest wait.
    #[serde(with = "duration")]
    pub max_group_wait: Duration,
    /// Group commit: bytes per group.
    pub max_group_bytes: ByteSize,
    /// Group commit: records per group.
    pub max_group_entries: usize,
    /// Write when the queue is empty.
    pub flush_when_queue_empty: bool,
    /// Roll files past this size.
    pub max_file_size: ByteSize,
    /// Zero-fill ahead.
    pub preallocate: ByteSize,
    /// Queue bound.
    pub queue_capacity: usize,
    /// Old journal files kept for reuse.
    pub recycle_files: usize,
    /// "strict" or "tolerate_corruption".
    pub recovery_mode: String,
}

/// `[ledger_storage]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerStorageSection {
    /// Ledger directory.
    pub dir: PathBuf,
    /// Write cache memory.
    pub write_cache_size: ByteSize,
    /// Add throttle before rejection.
    #[serde(with = "duration")]
    pub max_throttle: Duration,
    /// Checkpoint period.
    #[serde(with = "duration")]
    pub checkpoint_interval: Duration,
    /// Ledger data files open at once at most.
    pub max_open_files: usize,
    /// Memory for the in-memory indexes of open ledger files.
    pub index_cache_size: ByteSize,
}

/// `[disk]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskSection {
    /// Read-only above this used fraction.
    pub usage_threshold: f64,
    /// Writable again below this used fraction.
    pub usage_lwm_threshold: f64,
    /// Check period.
    #[serde(with = "duration")]
    pub check_interval: Duration,
}

impl Default for BookieConfig {
    fn default() -> Self {
        BookieConfig {
            bookie_id: String::new(),
            bind: "127.0.0.1:3181".into(),
            http_bind: "127.0.0.1:8000".into(),
            advertised_address: String::new(),
            tls_certificate_file: String::new(),
            tls_key_file: String::new(),
            tls_trust_certs_file: String::new(),
            authorized_roles: String::new(),
            meta: MetaSection::default(),
            journal: JournalSection::default(),
            ledger_storage: LedgerStorageSection::default(),
            disk: DiskSection::default(),
            gc: GcSection::default(),
        }
    }
}

impl Default for MetaSection {
    fn default() -> Self {
        MetaSection {
            url: String::new(),
            cluster: meta::keys::DEFAULT_CLUSTER.into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(10),
        }
    }
}

impl Default for JournalSection {
    fn default() -> Self {
        JournalSection {
            dir: "data/journal".into(),
            max_group_wait: Duration::from_millis(2),
            max_group_bytes: ByteSize(512 << 10),
            max_group_entries: 10_000,
            flush_when_queue_empty: true,
            max_file_size: ByteSize(256 << 20),
            preallocate: ByteSize(16 << 20),
            queue_capacity: 65_536,
            recycle_files: 4,
            recovery_mode: "strict".into(),
        }
    }
}

impl Default for LedgerStorageSection {
    fn default() -> Self {
        LedgerStorageSection {
            dir: "data/ledgers".into(),
            write_cache_size: ByteSize(128 << 20),
            max_throttle: Duration::from_secs(1),
            max_open_files: 1024,
            index_cache_size: ByteSize(256 << 20),
            checkpoint_interval: Duration::from_secs(5),
        }
    }
}

impl Default for DiskSection {
    fn default() -> Self {
        DiskSection {
            usage_threshold: 0.95,
            usage_lwm_threshold: 0.90,
            check_interval: Duration::from_secs(5),
        }
    }
}

impl BookieConfig {
    /// Cross-field checks; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: &str| Err(BookieError::Config(format!("`{key}`: {why}")));
        if self.meta.url.is_empty() {
            return bad("meta.url", "required (--meta-url etcd://HOST:PORT)");
        }
        if let Err(e) = self.meta.url.parse::<meta::MetaUrl>() {
            return bad("meta.url", &e.to_string());
        }
        self.validate_local()
    }

    /// The checks that do not involve the metadata store (used when it is given in-process).
    pub fn validate_local(&self) -> Result<()> {
        let bad = |key: &str, why: &str| Err(BookieError::Config(format!("`{key}`: {why}")));
        if self.tls_certificate_file.is_empty() != self.tls_key_file.is_empty() {
            return bad(
                "tls_certificate_file",
                "needs `tls_key_file` (and the other way round)",
            );
        }
        if !self.tls_trust_certs_file.is_empty() {
            if self.tls_certificate_file.is_empty() {
                return bad("tls_trust_certs_file", "needs `tls_certificate_file`");
            }
            if self.authorized_roles.trim().is_empty() {
                // As BookKeeper's BookieAuthZFactory: a trust file with nobody authorized is
                // a mistake, not "everyone".
                return bad("authorized_roles", "required with `tls_trust_certs_file`");
            }
        }
        if !(0.0..=1.0).contains(&self.disk.usage_threshold) {
            return bad("disk.usage_threshold", "must be between 0 and 1");
        }
        if self.disk.usage_lwm_threshold > self.disk.usage_threshold {
            return bad(
                "disk.usage_lwm_threshold",
                "must not exceed disk.usage_threshold",
            );
        }
        if self.journal.dir == self.ledger_storage.dir {
            return bad("ledger_storage.dir", "must differ from journal.dir");
        }
        if self.journal.max_group_entries == 0 || self.journal.queue_capacity == 0 {
            return bad("journal.max_group_entries", "must be > 0");
        }
        if self.gc.interval.is_zero() {
            return bad(
                "gc.interval",
                "must be > 0 (set gc.enabled = false to turn it off)",
            );
        }
        if self.ledger_storage.max_open_files == 0 {
            return bad("ledger_storage.max_open_files", "must be > 0");
        }
        if self.ledger_storage.write_cache_size.0 < 1 << 20 {
            return bad("ledger_storage.write_cache_size", "must be at least 1MiB");
        }
        self.recovery_mode()?;
        Ok(())
    }

    fn recovery_mode(&self) -> Result<RecoveryMode> {
        match self.journal.recovery_mode.as_str() {
            "strict" => Ok(RecoveryMode::Strict),
            "tolerate_corruption" => Ok(RecoveryMode::TolerateCorruption),
            other => Err(BookieError::Config(format!(
                "`journal.recovery_mode`: {other:?} is not \"strict\" or \"tolerate_corruption\""
            ))),
        }
    }

    /// The engine settings this config describes.
    pub fn engine(&self) -> Result<EngineConfig> {
        Ok(EngineConfig {
            journal: WriterConfig {
                dir: self.journal.dir.clone(),
                max_group_wait: self.journal.max_group_wait,
                max_group_bytes: self.journal.max_group_bytes.0 as usize,
                max_group_entries: self.journal.max_group_entries,
                flush_when_queue_empty: self.journal.flush_when_queue_empty,
                max_file_bytes: self.journal.max_file_size.0,
                preallocate_bytes: self.journal.preallocate.0,
                queue_capacity: self.journal.queue_capacity,
                recycle_files: self.journal.recycle_files,
            },
            storage: StorageConfig {
                dir: self.ledger_storage.dir.clone(),
                write_cache_bytes: self.ledger_storage.write_cache_size.0 as usize,
                max_throttle: self.ledger_storage.max_throttle,
                max_open_files: self.ledger_storage.max_open_files,
                max_index_entries: self.ledger_storage.index_cache_size.0 as usize
                    / crate::storage::INDEX_ENTRY_BYTES,
            },
            checkpoint_interval: self.ledger_storage.checkpoint_interval,
            recovery_mode: self.recovery_mode()?,
            fs: common::fs::real(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_equal_code_defaults() {
        let parsed: BookieConfig = toml::from_str(DEFAULT_TOML).unwrap();
        assert_eq!(parsed, BookieConfig::default());
    }
}
