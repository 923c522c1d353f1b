//! The metadata layer's error type. Callers branch on these variants (a CAS loser retries on
//! `BadVersion`, a lease holder stops serving on `LeaseExpired`), so each is a named outcome.

use std::path::PathBuf;
use std::time::Duration;

use crate::store::{LeaseId, Revision};

/// Result with [`MetaError`] as the default error.
pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// Everything a metadata operation can report.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The key does not exist.
    #[error("metadata key {key} not found")]
    NotFound {
        /// The full key.
        key: String,
    },
    /// A compare-and-set lost: the key's version is not the one the caller read.
    /// Re-read the key and decide again.
    #[error("metadata key {key} changed concurrently (expected version {expected})")]
    BadVersion {
        /// The key whose version did not match.
        key: String,
        /// The version the caller expected, or "absent".
        expected: String,
    },
    /// A create-if-absent found the key already there.
    #[error("metadata key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// The lease is gone (expired or revoked); keys bound to it were deleted. Its holder
    /// must stop acting on what it claimed and re-register with a new lease.
    #[error("lease {lease} expired or was revoked")]
    LeaseExpired {
        /// The lease.
        lease: LeaseId,
    },
    /// The store did not answer in time or could not be reached.
    #[error(
        "metadata store at {endpoints} unavailable (no answer within {timeout:?}): {reason}; \
         check that etcd is running and reachable (`--meta-url`)"
    )]
    Unavailable {
        /// The endpoints tried.
        endpoints: String,
        /// The timeout that elapsed, or the one in force when the connection failed.
        timeout: Duration,
        /// What the transport said.
        reason: String,
    },
    /// A watch asked for history the store no longer keeps. Re-list the prefix (its
    /// revision is in [`RangePage::revision`](crate::RangePage)) and watch again from there.
    #[error(
        "revision {requested} was compacted (oldest kept: {compacted}); re-list and watch again"
    )]
    Compacted {
        /// The revision the watch asked for.
        requested: Revision,
        /// The store's compaction revision: history up to here is gone.
        compacted: Revision,
    },
    /// A stored value does not decode, or a record on disk fails its checksum.
    #[error("corrupt metadata in {location}: {reason}")]
    Corrupt {
        /// The key, or file and offset.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A record was written by a newer Magnetar; this build refuses to misread it.
    #[error(
        "metadata key {key} has format version {found}, this build reads up to {supported}; upgrade Magnetar"
    )]
    UnsupportedVersion {
        /// The key.
        key: String,
        /// The version found.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// The caller asked for something the store cannot do (bad URL, empty key…).
    #[error("invalid metadata request: {0}")]
    Invalid(String),
    /// Local file I/O failed (embedded store).
    #[error("metadata file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store answered with an error not covered above.
    #[error("metadata store error: {0}")]
    Backend(String),
}

impl MetaError {
    /// True for errors that may go away on retry (the store was unreachable).
    pub fn is_retryable(&self) -> bool {
        matches!(self, MetaError::Unavailable { .. })
    }
}
