//! The journal: the bookie's write-ahead log. An add is acknowledged only after the journal
//! record holding it is fsynced; ledger storage catches up in the background, and a
//! checkpoint tells which journal files are no longer needed.
//!
//! - [`record`]: what is journaled (adds, master keys, fences, explicit LACs, deletes);
//! - [`file`]: the file and batch layout, and reading it back with torn-tail detection;
//! - [`writer`]: the group-commit thread;
//! - [`recycle`]: reuse of journal files the checkpoint has passed (overwrites fsync faster).

pub mod file;
pub mod record;
pub mod recycle;
pub mod writer;

pub use file::JournalPosition;
pub use record::JournalRecord;
pub use writer::{JournalWriter, WriterConfig};
