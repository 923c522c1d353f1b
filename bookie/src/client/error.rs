//! The ledger client's error type. Callers branch on `Fenced` (someone else recovered the
//! ledger: stop writing), `NotEnoughBookies`, `Timeout`.

use common::LedgerId;
use proto::bookie::StatusCode;

/// Result with [`ClientError`] as the default error.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Everything a ledger operation can report.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The ledger was fenced or closed by a recoverer: this writer may not add to it.
    #[error("ledger {ledger} is fenced: another client recovered it")]
    Fenced {
        /// The ledger.
        ledger: LedgerId,
    },
    /// Fewer writable bookies than the ensemble needs.
    #[error("not enough bookies: need {needed}, {available} available")]
    NotEnoughBookies {
        /// Bookies needed.
        needed: usize,
        /// Bookies available.
        available: usize,
    },
    /// The ledger's metadata changed under us.
    #[error("ledger {ledger} metadata changed concurrently")]
    BadVersion {
        /// The ledger.
        ledger: LedgerId,
    },
    /// An operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// No metadata for this ledger.
    #[error("no such ledger {0}")]
    NoSuchLedger(LedgerId),
    /// The entry does not exist (beyond the last entry, or on no bookie).
    #[error("no such entry {ledger}:{entry}")]
    NoSuchEntry {
        /// The ledger.
        ledger: LedgerId,
        /// The entry.
        entry: u64,
    },
    /// Every copy read failed its checksum.
    #[error("entry {ledger}:{entry} is corrupt on every bookie that has it")]
    Corrupt {
        /// The ledger.
        ledger: LedgerId,
        /// The entry.
        entry: u64,
    },
    /// A bookie answered with an error.
    #[error("bookie {bookie}: {status:?}: {message}")]
    Bookie {
        /// The bookie id.
        bookie: String,
        /// Its status.
        status: StatusCode,
        /// Its message.
        message: String,
    },
    /// The password does not match the ledger's.
    #[error("wrong password for ledger {0}")]
    Unauthorized(LedgerId),
    /// Invalid arguments (quorums, sizes).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The ledger handle is closed.
    #[error("ledger {0} is closed")]
    Closed(LedgerId),
    /// The metadata store failed.
    #[error("metadata: {0}")]
    Meta(String),
}

impl From<meta::MetaError> for ClientError {
    fn from(e: meta::MetaError) -> Self {
        ClientError::Meta(e.to_string())
    }
}
