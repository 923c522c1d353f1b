//! The bookie's error type, and the one place errors become wire status codes.

use std::path::PathBuf;

use common::{EntryId, LedgerId};
use proto::bookie::StatusCode;

/// Result with [`BookieError`] as the default error.
pub type Result<T, E = BookieError> = std::result::Result<T, E>;

/// Everything the bookie (server side) can report.
#[derive(Debug, thiserror::Error)]
pub enum BookieError {
    /// The bookie holds nothing of this ledger.
    #[error("ledger {ledger} not found on this bookie")]
    NoLedger {
        /// The ledger.
        ledger: LedgerId,
    },
    /// The ledger exists here but not this entry.
    #[error("entry {ledger}:{entry} not found on this bookie")]
    NoEntry {
        /// The ledger.
        ledger: LedgerId,
        /// The entry.
        entry: EntryId,
    },
    /// The request is malformed (bad checksum, missing fields).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The ledger is fenced: only recovery adds are accepted.
    #[error("ledger {ledger} is fenced")]
    Fenced {
        /// The ledger.
        ledger: LedgerId,
    },
    /// The bookie accepts no writes (disk above its usage threshold).
    #[error("bookie is read-only (disk usage above `disk.usage_threshold`)")]
    ReadOnly,
    /// A bounded queue or cache is full; retry later.
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    /// The master key does not match the ledger's.
    #[error("wrong master key for ledger {ledger}")]
    Unauthorized {
        /// The ledger.
        ledger: LedgerId,
    },
    /// A file operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The bookie is shutting down.
    #[error("bookie is shutting down")]
    ShuttingDown,
    /// Stored data fails its checksum or does not parse.
    #[error("corrupt data in {location}: {reason}")]
    Corrupt {
        /// File and offset, or entry.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A file written by a newer Magnetar.
    #[error("{path} has format version {found}; this build reads up to {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Newest version understood.
        supported: u32,
    },
    /// The data directories do not match the cookie (wiped or swapped disk).
    #[error("cookie mismatch: {0}")]
    Cookie(String),
    /// Invalid configuration.
    #[error("config: {0}")]
    Config(String),
    /// The metadata store failed.
    #[error(transparent)]
    Meta(#[from] meta::MetaError),
}

impl BookieError {
    /// The wire status for this error. Codes are never renumbered.
    pub fn status(&self) -> StatusCode {
        match self {
            BookieError::NoLedger { .. } => StatusCode::NoLedger,
            BookieError::NoEntry { .. } => StatusCode::NoEntry,
            BookieError::BadRequest(_) => StatusCode::BadRequest,
            BookieError::Fenced { .. } => StatusCode::Fenced,
            BookieError::ReadOnly => StatusCode::ReadOnly,
            BookieError::TooManyRequests(_) => StatusCode::TooManyRequests,
            BookieError::Unauthorized { .. } => StatusCode::Unauthorized,
            BookieError::ShuttingDown => StatusCode::ShuttingDown,
            BookieError::Corrupt { .. } => StatusCode::Corrupt,
            BookieError::Io { .. }
            | BookieError::UnsupportedVersion { .. }
            | BookieError::Cookie(_)
            | BookieError::Config(_)
            | BookieError::Meta(_) => StatusCode::Io,
        }
    }

    /// A copy of this error, for reporting one failure to every add of a batch. Sources
    /// that cannot be cloned are carried as their message.
    pub fn duplicate(&self) -> BookieError {
        match self {
            BookieError::NoLedger { ledger } => BookieError::NoLedger { ledger: *ledger },
            BookieError::NoEntry { ledger, entry } => BookieError::NoEntry {
                ledger: *ledger,
                entry: *entry,
            },
            BookieError::BadRequest(m) => BookieError::BadRequest(m.clone()),
            BookieError::Fenced { ledger } => BookieError::Fenced { ledger: *ledger },
            BookieError::ReadOnly => BookieError::ReadOnly,
            BookieError::TooManyRequests(m) => BookieError::TooManyRequests(m.clone()),
            BookieError::Unauthorized { ledger } => BookieError::Unauthorized { ledger: *ledger },
            BookieError::Io { path, source } => BookieError::Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            BookieError::ShuttingDown => BookieError::ShuttingDown,
            BookieError::Corrupt { location, reason } => BookieError::Corrupt {
                location: location.clone(),
                reason: reason.clone(),
            },
            BookieError::UnsupportedVersion {
                path,
                found,
                supported,
            } => BookieError::UnsupportedVersion {
                path: path.clone(),
                found: *found,
                supported: *supported,
            },
            BookieError::Cookie(m) => BookieError::Cookie(m.clone()),
            BookieError::Config(m) => BookieError::Config(m.clone()),
            BookieError::Meta(e) => BookieError::Config(e.to_string()),
        }
    }

    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BookieError {
        let path = path.into();
        move |source| BookieError::Io { path, source }
    }
}
