//! The embedded store's log file, `meta.log`: every committed mutation appended and
//! fdatasynced before the write returns; rewritten as one snapshot when it grows.
//!
//! Layout (little-endian; full spec in docs/metadata.md):
//! ```text
//! header:  magic "MGNTMETA" (8) | format version u32 (=1) | reserved u32 (=0)
//! record:  payload length u32 | crc32c(payload) u32 | payload (protobuf LogRecord)
//! ```
//! On open, a record that fails its checksum or runs past the end of the file is a torn
//! tail if nothing valid follows it: it is truncated with a warning. Anything else is
//! `Corrupt` naming the file and offset, and the store refuses to open.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use proto::embedded::{self as pb, log_record::Record, op::Op as PbOp};

use super::state::Entry;
use crate::error::{MetaError, Result};
use crate::store::{LeaseId, TxnOp};

/// File name inside the store's directory.
pub(super) const FILE_NAME: &str = "meta.log";
/// First bytes of every log file.
pub(super) const MAGIC: &[u8; 8] = b"MGNTMETA";
/// The only log format version this build reads and writes.
pub(super) const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 16;
const RECORD_HEADER_LEN: usize = 8;
/// No record may claim more than this; checked before allocating.
pub(super) const MAX_RECORD_LEN: usize = 256 << 20;

/// What a valid log holds, in order.
#[derive(Debug)]
pub(super) enum Replayed {
    Mutation(u64, Vec<TxnOp>),
    Snapshot(u64, BTreeMap<String, Entry>),
}

/// The open, locked log file.
#[derive(Debug)]
pub(super) struct LogFile {
    dir: PathBuf,
    file: File,
    len: u64,
    /// Size of the file right after the last rewrite: growth is measured against it.
    base_len: u64,
    /// Set when a write failed: the file's tail is unknown, so no further writes.
    failed: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MetaError + '_ {
    move |source| MetaError::Io {
        path: path.to_owned(),
        source,
    }
}

impl LogFile {
    /// Opens (or creates) the log in `dir`, locks it against other processes, and returns
    /// its records. A torn tail is truncated.
    pub fn open(dir: &Path) -> Result<(LogFile, Vec<Replayed>)> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(FILE_NAME);
        let fresh = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        file.try_lock().map_err(|e| {
            MetaError::Invalid(format!(
                "{} is in use by another process ({e}); stop it or use another data dir",
                path.display()
            ))
        })?;
        if fresh {
            file.write_all(&header()).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
            sync_dir(dir)?;
        }
        let mut buf = Vec::new();
        file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
        file.read_to_end(&mut buf).map_err(io(&path))?;
        let decoded = decode(&buf).map_err(|(offset, reason)| MetaError::Corrupt {
            location: format!("{} at offset {offset}", path.display()),
            reason,
        })?;
        let mut len = decoded.valid_len as u64;
        if let Some((offset, reason)) = &decoded.torn {
            tracing::warn!(
                path = %path.display(), offset, reason = %reason,
                "truncating torn tail of metadata log"
            );
            file.set_len(len).map_err(io(&path))?;
            if len == 0 {
                file.seek(SeekFrom::Start(0)).map_err(io(&path))?;
                file.write_all(&header()).map_err(io(&path))?;
                len = HEADER_LEN as u64;
            }
            file.sync_all().map_err(io(&path))?;
        }
        file.seek(SeekFrom::Start(len)).map_err(io(&path))?;
        let log = LogFile {
            dir: dir.to_owned(),
            file,
            len,
            base_len: len,
            failed: false,
        };
        Ok((log, decoded.records))
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Appends one mutation and fdatasyncs it: when this returns `Ok`, it survives a crash.
    pub fn append(&mut self, revision: u64, ops: &[TxnOp]) -> Result<()> {
        if self.failed {
            return Err(MetaError::Io {
                path: self.path(),
                source: std::io::Error::other("an earlier write failed; restart the process"),
            });
        }
        let record = pb::LogRecord {
            record: Some(Record::Mutation(pb::Mutation {
                revision,
                ops: ops.iter().map(op_to_pb).collect(),
            })),
        };
        let frame = frame(&record.encode_to_vec());
        let res = self
            .file
            .write_all(&frame)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = res {
            self.failed = true;
            return Err(MetaError::Io {
                path: self.path(),
                source,
            });
        }
        self.len += frame.len() as u64;
        Ok(())
    }

    /// True when the log has grown enough past its last rewrite to be worth compacting.
    pub fn wants_rewrite(&self, threshold: u64) -> bool {
        self.len > threshold.max(self.base_len.saturating_mul(4))
    }

    /// Replaces the log with a single snapshot of `kvs` at `revision`, atomically:
    /// write a temporary file, fsync, rename over the log, fsync the directory.
    pub fn rewrite(&mut self, revision: u64, kvs: &BTreeMap<String, Entry>) -> Result<()> {
        let snapshot = pb::Snapshot {
            revision,
            kvs: kvs
                .iter()
                .filter(|(_, e)| e.lease.is_none())
                .map(|(k, e)| pb::KeyValue {
                    key: k.clone(),
                    value: e.value.clone(),
                    create_revision: e.create_revision,
                    mod_revision: e.mod_revision,
                    version: 0,
                    lease: 0,
                })
                .collect(),
        };
        let record = pb::LogRecord {
            record: Some(Record::Snapshot(snapshot)),
        };
        let mut bytes = header().to_vec();
        bytes.extend_from_slice(&frame(&record.encode_to_vec()));
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        f.try_lock().map_err(|e| MetaError::Io {
            path: tmp.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        std::fs::rename(&tmp, self.path()).map_err(io(&tmp))?;
        sync_dir(&self.dir)?;
        f.seek(SeekFrom::End(0)).map_err(io(&tmp))?;
        self.file = f;
        self.len = bytes.len() as u64;
        self.base_len = self.len;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// Length + checksum + payload.
pub(super) fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&common::checksum::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Result of decoding a log image.
#[derive(Debug)]
pub(super) struct Decoded {
    pub records: Vec<Replayed>,
    /// Bytes that hold valid records (the file is truncated to this).
    pub valid_len: usize,
    /// Where and why the tail was torn, if it was.
    pub torn: Option<(usize, String)>,
}

/// Decodes a whole log image. `Err((offset, reason))` is corruption that is not a torn tail.
pub(super) fn decode(buf: &[u8]) -> std::result::Result<Decoded, (usize, String)> {
    if buf.len() < HEADER_LEN {
        // A crash while creating the file: nothing was ever acknowledged from it.
        if MAGIC.starts_with(&buf[..buf.len().min(8)]) {
            return Ok(Decoded {
                records: Vec::new(),
                valid_len: 0,
                torn: (!buf.is_empty()).then(|| (0, "partial header".to_owned())),
            });
        }
        return Err((0, "not a Magnetar metadata log (bad magic)".into()));
    }
    if &buf[..8] != MAGIC {
        return Err((0, "not a Magnetar metadata log (bad magic)".into()));
    }
    let version = u32::from_le_bytes(buf[8..12].try_into().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err((
            8,
            format!("log format version {version}, this build reads {FORMAT_VERSION}"),
        ));
    }
    if buf[12..16] != [0; 4] {
        return Err((12, "reserved header bytes are not zero".into()));
    }
    let mut records = Vec::new();
    let mut pos = HEADER_LEN;
    while pos < buf.len() {
        match decode_record(&buf[pos..]) {
            Ok((record, used)) => {
                records.push(record.map_err(|reason| (pos, reason))?);
                pos += used;
            }
            Err(reason) => {
                if is_tail(buf, pos) {
                    return Ok(Decoded {
                        records,
                        valid_len: pos,
                        torn: Some((pos, reason)),
                    });
                }
                return Err((pos, reason));
            }
        }
    }
    Ok(Decoded {
        records,
        valid_len: pos,
        torn: None,
    })
}

/// Whether a bad record at `pos` can only be the unfinished last write: it claims to run to
/// or past the end of the file, or everything from it on is zeros (a size extended before
/// the data landed).
fn is_tail(buf: &[u8], pos: usize) -> bool {
    let rest = &buf[pos..];
    if rest.iter().all(|b| *b == 0) || rest.len() < RECORD_HEADER_LEN {
        return true;
    }
    let len = u32::from_le_bytes(rest[..4].try_into().unwrap_or_default()) as usize;
    RECORD_HEADER_LEN.saturating_add(len) >= rest.len()
}

/// One framed record: `Ok((Ok(record) | Err(undecodable payload), bytes used))`, or `Err`
/// when the frame itself is bad (too short, too long, checksum mismatch).
type Framed = (std::result::Result<Replayed, String>, usize);

fn decode_record(buf: &[u8]) -> std::result::Result<Framed, String> {
    if buf.len() < RECORD_HEADER_LEN {
        return Err("partial record header".into());
    }
    let len = u32::from_le_bytes(buf[..4].try_into().unwrap_or_default()) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap_or_default());
    if len == 0 {
        // Never written (every record has a payload): zeros past the last write.
        return Err("zero-length record".into());
    }
    if len > MAX_RECORD_LEN {
        return Err(format!("record length {len} exceeds {MAX_RECORD_LEN}"));
    }
    if buf.len() - RECORD_HEADER_LEN < len {
        return Err(format!(
            "record of {len} bytes runs past the end of the file"
        ));
    }
    let payload = &buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    common::checksum::verify(payload, crc).map_err(|e| e.to_string())?;
    let record = pb::LogRecord::decode(payload)
        .map_err(|e| format!("checksum valid but payload undecodable: {e}"))
        .and_then(from_pb);
    Ok((record, RECORD_HEADER_LEN + len))
}

fn from_pb(record: pb::LogRecord) -> std::result::Result<Replayed, String> {
    match record.record {
        Some(Record::Mutation(m)) => {
            let ops = m
                .ops
                .into_iter()
                .map(|op| match op.op {
                    Some(PbOp::Put(p)) => Ok(TxnOp::Put {
                        key: p.key,
                        value: p.value,
                        lease: (p.lease != 0).then_some(LeaseId(p.lease as i64)),
                    }),
                    Some(PbOp::Delete(d)) => Ok(TxnOp::Delete { key: d.key }),
                    None => Err("mutation with an empty op".to_owned()),
                })
                .collect::<std::result::Result<_, _>>()?;
            Ok(Replayed::Mutation(m.revision, ops))
        }
        Some(Record::Snapshot(s)) => {
            let kvs = s
                .kvs
                .into_iter()
                .map(|kv| {
                    let entry = Entry {
                        value: kv.value,
                        mod_revision: kv.mod_revision,
                        create_revision: kv.create_revision,
                        lease: None,
                    };
                    (kv.key, entry)
                })
                .collect();
            Ok(Replayed::Snapshot(s.revision, kvs))
        }
        None => Err("record of unknown type (written by a newer version?)".into()),
    }
}

fn op_to_pb(op: &TxnOp) -> pb::Op {
    let op = match op {
        TxnOp::Put { key, value, lease } => PbOp::Put(pb::Put {
            key: key.clone(),
            value: value.clone(),
            lease: lease.map_or(0, |l| l.0 as u64),
        }),
        TxnOp::Delete { key } => PbOp::Delete(pb::Delete { key: key.clone() }),
    };
    pb::Op { op: Some(op) }
}

/// A log image holding `mutations`, for tests.
#[cfg(test)]
pub(super) fn image(mutations: &[(u64, Vec<TxnOp>)]) -> Vec<u8> {
    let mut out = header().to_vec();
    for (rev, ops) in mutations {
        let rec = pb::LogRecord {
            record: Some(Record::Mutation(pb::Mutation {
                revision: *rev,
                ops: ops.iter().map(op_to_pb).collect(),
            })),
        };
        out.extend_from_slice(&frame(&rec.encode_to_vec()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn sample() -> Vec<(u64, Vec<TxnOp>)> {
        (1..=5)
            .map(|r| {
                (
                    r,
                    vec![TxnOp::Put {
                        key: format!("k{r}"),
                        value: Bytes::from(vec![r as u8; 20]),
                        lease: None,
                    }],
                )
            })
            .collect()
    }

    fn revisions(d: &Decoded) -> Vec<u64> {
        d.records
            .iter()
            .map(|r| match r {
                Replayed::Mutation(rev, _) | Replayed::Snapshot(rev, _) => *rev,
            })
            .collect()
    }

    #[test]
    fn round_trip() {
        let img = image(&sample());
        let d = decode(&img).unwrap();
        assert_eq!(revisions(&d), vec![1, 2, 3, 4, 5]);
        assert_eq!(d.valid_len, img.len());
        assert!(d.torn.is_none());
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut img = image(&sample());
        img[8] = 2;
        let (offset, reason) = decode(&img).unwrap_err();
        assert_eq!(offset, 8);
        assert!(reason.contains("version 2"), "{reason}");
    }

    #[test]
    fn corruption_before_the_tail_is_an_error() {
        let mut img = image(&sample());
        img[HEADER_LEN + RECORD_HEADER_LEN + 3] ^= 0x40; // inside the first record
        let (offset, _) = decode(&img).unwrap_err();
        assert_eq!(offset, HEADER_LEN);
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let mut img = image(&sample());
        let full = img.len();
        img.extend_from_slice(&[0u8; 100]);
        let d = decode(&img).unwrap();
        assert_eq!(d.valid_len, full);
        assert!(d.torn.is_some());
    }

    proptest! {
        /// Any truncation keeps a prefix of the records and never panics.
        #[test]
        fn truncation_keeps_a_prefix(cut in 0usize..400) {
            let img = image(&sample());
            let cut = cut.min(img.len());
            let d = decode(&img[..cut]).unwrap();
            let revs = revisions(&d);
            prop_assert_eq!(revs.clone(), (1..=revs.len() as u64).collect::<Vec<_>>());
        }

        /// Any flipped byte is either reported as corruption or cuts the log short; it is
        /// never read as different data.
        #[test]
        fn flipped_byte_never_misreads(at in 0usize..400, bit in 0u8..8) {
            let mut img = image(&sample());
            let at = at % img.len();
            img[at] ^= 1 << bit;
            if let Ok(d) = decode(&img) {
                let revs = revisions(&d);
                prop_assert!(revs.len() < 5);
                prop_assert_eq!(revs.clone(), (1..=revs.len() as u64).collect::<Vec<_>>());
            }
        }
    }
}
