//! On-disk format constants, in one place. Layouts are specified in docs/formats.md.

/// Journal file: magic.
pub const JOURNAL_MAGIC: &[u8; 8] = b"MGNTJRNL";
/// Journal file format version this build reads and writes.
pub const JOURNAL_VERSION: u32 = 1;
/// Journal file header length (magic, version, reserved, file sequence, crc, padding).
pub const JOURNAL_HEADER_LEN: usize = 64;
/// Magic at the start of every journal batch ("MGBT").
pub const BATCH_MAGIC: u32 = 0x5442_474d;
/// Batch header: magic, payload length, record count, file sequence, header crc.
pub const BATCH_HEADER_LEN: usize = 24;
/// Record frame header: body length, body crc.
pub const RECORD_HEADER_LEN: usize = 8;
/// Largest journal record body accepted (checked before allocating).
pub const MAX_RECORD_LEN: usize = 16 << 20;
/// Largest batch payload accepted on read (checked before allocating).
pub const MAX_BATCH_LEN: usize = 256 << 20;

/// Ledger data file: magic.
pub const LEDGER_FILE_MAGIC: &[u8; 8] = b"MGNTLEDG";
/// Ledger data file format version this build writes (it also reads and appends to version 1).
pub const LEDGER_FILE_VERSION: u32 = 2;
/// Ledger data file header length (magic, version, reserved, ledger id, crc, padding).
pub const LEDGER_FILE_HEADER_LEN: usize = 32;

/// Per-ledger state file ("index" of fenced flag, master key, explicit LAC): magic.
pub const LEDGER_META_MAGIC: &[u8; 8] = b"MGNTLMET";
/// Per-ledger state file format version.
pub const LEDGER_META_VERSION: u32 = 1;

/// Checkpoint mark file: magic.
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"MGNTCKPT";
/// Checkpoint mark format version.
pub const CHECKPOINT_VERSION: u32 = 2;

/// Cookie file in each data directory: magic.
pub const COOKIE_MAGIC: &[u8; 8] = b"MGNTCOOK";
/// Cookie file format version.
pub const COOKIE_VERSION: u32 = 1;
