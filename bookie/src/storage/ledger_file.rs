//! A ledger's data file, `ledgers/<id:020>.dat`: the ledger's entries appended by checkpoints,
//! with an in-memory index from entry id to location, rebuilt by one sequential scan when the
//! file is first opened.
//!
//! One file per ledger is what makes deletion cheap: deleting a ledger unlinks its files and
//! the space comes back at once — no entry-log compaction.
//!
//! ```text
//! header (32): magic (8) | version u32 | reserved u32 | ledger id u64 | crc32c u32 | 0 u32
//! record:      body length u32 | crc32c(body) u32 |
//!              body = entry id u64 | lac i64 | length u64 | entry crc u32 | payload
//! ```

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::{Buf, BytesMut};
use common::{EntryId, LedgerId};

use crate::entry::Entry;
use crate::error::{BookieError, Result};
use crate::format::{
    LEDGER_FILE_HEADER_LEN, LEDGER_FILE_MAGIC, LEDGER_FILE_VERSION, LEDGER_RECORD_HEADER_LEN,
    MAX_RECORD_LEN,
};

const BODY_FIXED: usize = LEDGER_RECORD_HEADER_LEN - 8;

/// File name of a ledger's data file.
pub fn data_file_name(ledger: LedgerId) -> String {
    format!("{:020}.dat", ledger.0)
}

/// An open data file and its index.
#[derive(Debug)]
pub struct LedgerFile {
    path: PathBuf,
    file: File,
    len: u64,
    /// entry id -> (offset of the record, record length including its header)
    index: BTreeMap<u64, (u64, u32)>,
    bytes: u64,
}

fn header(ledger: LedgerId) -> [u8; LEDGER_FILE_HEADER_LEN] {
    let mut h = [0u8; LEDGER_FILE_HEADER_LEN];
    h[..8].copy_from_slice(LEDGER_FILE_MAGIC);
    h[8..12].copy_from_slice(&LEDGER_FILE_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&ledger.0.to_le_bytes());
    let crc = common::checksum::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

impl LedgerFile {
    /// Opens (or, with `create`, creates) the data file of `ledger` in `dir`, scanning it to
    /// build the index. A torn tail — a checkpoint cut short by a crash; its entries are still
    /// in the journal — is truncated.
    pub fn open(dir: &Path, ledger: LedgerId, create: bool) -> Result<Option<Self>> {
        let path = dir.join(data_file_name(ledger));
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => return Ok(None),
            Err(e) => return Err(BookieError::io(&path)(e)),
        };
        let mut lf = LedgerFile {
            path,
            file,
            len: 0,
            index: BTreeMap::new(),
            bytes: 0,
        };
        let mut buf = Vec::new();
        (&lf.file)
            .read_to_end(&mut buf)
            .map_err(BookieError::io(&lf.path))?;
        if buf.len() < LEDGER_FILE_HEADER_LEN {
            // New, or a crash before the header was synced: nothing in it was checkpointed.
            lf.file
                .set_len(0)
                .and_then(|()| lf.file.write_all_at(&header(ledger), 0))
                .map_err(BookieError::io(&lf.path))?;
            lf.len = LEDGER_FILE_HEADER_LEN as u64;
            return Ok(Some(lf));
        }
        lf.check_header(&buf[..LEDGER_FILE_HEADER_LEN], ledger)?;
        lf.scan(&buf)?;
        Ok(Some(lf))
    }

    fn check_header(&self, h: &[u8], ledger: LedgerId) -> Result<()> {
        let corrupt = |reason: String| BookieError::Corrupt {
            location: format!("{} at offset 0", self.path.display()),
            reason,
        };
        if &h[..8] != LEDGER_FILE_MAGIC {
            return Err(corrupt("not a ledger data file".into()));
        }
        if common::checksum::crc32c(&h[..24])
            != u32::from_le_bytes(h[24..28].try_into().unwrap_or_default())
        {
            return Err(corrupt("header checksum mismatch".into()));
        }
        let version = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default());
        if version != LEDGER_FILE_VERSION {
            return Err(BookieError::UnsupportedVersion {
                path: self.path.clone(),
                found: version,
                supported: LEDGER_FILE_VERSION,
            });
        }
        let id = u64::from_le_bytes(h[16..24].try_into().unwrap_or_default());
        if id != ledger.0 {
            return Err(corrupt(format!("file holds ledger {id}, not {ledger}")));
        }
        Ok(())
    }

    fn scan(&mut self, buf: &[u8]) -> Result<()> {
        let mut pos = LEDGER_FILE_HEADER_LEN;
        while pos < buf.len() {
            match parse_record(&buf[pos..]) {
                Ok((entry, rec_len, payload_len)) => {
                    if let Some((_, old)) = self.index.insert(entry, (pos as u64, rec_len as u32)) {
                        // Re-flushed after a crash between flush and checkpoint: same entry.
                        self.bytes -= u64::from(old) - LEDGER_RECORD_HEADER_LEN as u64;
                    }
                    self.bytes += payload_len as u64;
                    pos += rec_len;
                }
                Err(reason) => {
                    tracing::warn!(
                        path = %self.path.display(), offset = pos, reason = %reason,
                        "truncating torn tail of ledger file; its entries are replayed from the journal"
                    );
                    self.file
                        .set_len(pos as u64)
                        .map_err(BookieError::io(&self.path))?;
                    break;
                }
            }
        }
        self.len = pos.min(buf.len()) as u64;
        Ok(())
    }

    /// Appends entries (in writes of about 1 MiB, through one reused buffer); call
    /// [`LedgerFile::sync`] before relying on them.
    pub fn append(&mut self, entries: &[&Entry]) -> Result<()> {
        const CHUNK: usize = 1 << 20;
        let mut buf = BytesMut::with_capacity(CHUNK + LEDGER_RECORD_HEADER_LEN);
        let mut written = self.len;
        for (i, e) in entries.iter().enumerate() {
            let start = buf.len();
            let body_len = BODY_FIXED + e.payload.len();
            buf.extend_from_slice(&(body_len as u32).to_le_bytes());
            buf.extend_from_slice(&[0u8; 4]);
            buf.extend_from_slice(&e.entry.0.to_le_bytes());
            buf.extend_from_slice(&e.lac.to_le_bytes());
            buf.extend_from_slice(&e.length.to_le_bytes());
            buf.extend_from_slice(&e.crc.to_le_bytes());
            buf.extend_from_slice(&e.payload);
            let crc = common::checksum::crc32c(&buf[start + 8..]);
            buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
            let offset = written + start as u64;
            let len = (buf.len() - start) as u32;
            if let Some((_, old)) = self.index.insert(e.entry.0, (offset, len)) {
                self.bytes -= u64::from(old) - LEDGER_RECORD_HEADER_LEN as u64;
            }
            self.bytes += e.payload.len() as u64;
            if buf.len() >= CHUNK || i + 1 == entries.len() {
                self.file
                    .write_all_at(&buf, written)
                    .map_err(BookieError::io(&self.path))?;
                written += buf.len() as u64;
                buf.clear();
            }
        }
        self.len = written;
        Ok(())
    }

    /// fsyncs the file.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(BookieError::io(&self.path))
    }

    /// Reads an entry, verifying both the record checksum and the writer's entry checksum.
    pub fn read(&self, ledger: LedgerId, entry: EntryId) -> Result<Option<Entry>> {
        let Some(&(offset, len)) = self.index.get(&entry.0) else {
            return Ok(None);
        };
        let mut buf = BytesMut::zeroed(len as usize);
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(BookieError::io(&self.path))?;
        let buf = buf.freeze();
        let location = || format!("{} at offset {offset}", self.path.display());
        let (id, _, _) = parse_record(&buf).map_err(|reason| BookieError::Corrupt {
            location: location(),
            reason,
        })?;
        let mut body = buf.slice(8..);
        body.advance(8);
        let e = Entry {
            ledger,
            entry: EntryId(id),
            lac: body.get_i64_le(),
            length: body.get_u64_le(),
            crc: body.get_u32_le(),
            payload: body,
        };
        if !e.verify() {
            return Err(BookieError::Corrupt {
                location: location(),
                reason: "entry checksum mismatch".into(),
            });
        }
        Ok(Some(e))
    }

    /// Highest entry id stored, if any.
    pub fn last_entry(&self) -> Option<EntryId> {
        self.index.keys().next_back().map(|e| EntryId(*e))
    }

    /// Entries stored.
    pub fn entries(&self) -> usize {
        self.index.len()
    }

    /// Payload bytes stored.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether `entry` is stored.
    pub fn contains(&self, entry: EntryId) -> bool {
        self.index.contains_key(&entry.0)
    }
}

/// Parses one record at the start of `buf`: (entry id, record length, payload length).
fn parse_record(buf: &[u8]) -> std::result::Result<(u64, usize, usize), String> {
    if buf.len() < LEDGER_RECORD_HEADER_LEN {
        return Err("partial record".into());
    }
    let body_len = u32::from_le_bytes(buf[..4].try_into().unwrap_or_default()) as usize;
    if !(BODY_FIXED..=MAX_RECORD_LEN).contains(&body_len) || buf.len() - 8 < body_len {
        return Err(format!("bad record length {body_len}"));
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap_or_default());
    let body = &buf[8..8 + body_len];
    common::checksum::verify(body, crc).map_err(|e| e.to_string())?;
    let entry = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
    Ok((entry, 8 + body_len, body_len - BODY_FIXED))
}

/// Reads a whole data file's entries in id order (for tools and tests).
pub fn read_all(dir: &Path, ledger: LedgerId) -> Result<Vec<Entry>> {
    let Some(f) = LedgerFile::open(dir, ledger, false)? else {
        return Ok(Vec::new());
    };
    let ids: Vec<u64> = f.index.keys().copied().collect();
    ids.into_iter()
        .filter_map(|id| f.read(ledger, EntryId(id)).transpose())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entry(id: u64) -> Entry {
        Entry::new(
            LedgerId(5),
            EntryId(id),
            id as i64 - 1,
            id * 3,
            Bytes::from(vec![id as u8; 3]),
        )
    }

    #[test]
    fn append_read_reopen_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = LedgerFile::open(dir.path(), LedgerId(5), true)
            .unwrap()
            .unwrap();
        let es: Vec<Entry> = (0..10).map(entry).collect();
        f.append(&es.iter().collect::<Vec<_>>()).unwrap();
        f.sync().unwrap();
        assert_eq!(f.read(LedgerId(5), EntryId(3)).unwrap().unwrap(), es[3]);
        assert_eq!(f.last_entry(), Some(EntryId(9)));
        drop(f);
        // Cut the last record short.
        let path = dir.path().join(data_file_name(LedgerId(5)));
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 2)
            .unwrap();
        let f = LedgerFile::open(dir.path(), LedgerId(5), false)
            .unwrap()
            .unwrap();
        assert_eq!(f.entries(), 9);
        assert_eq!(read_all(dir.path(), LedgerId(5)).unwrap(), es[..9].to_vec());
        assert!(
            LedgerFile::open(dir.path(), LedgerId(6), false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_flipped_payload_byte_is_corrupt_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = LedgerFile::open(dir.path(), LedgerId(5), true)
            .unwrap()
            .unwrap();
        let e = entry(1);
        f.append(&[&e]).unwrap();
        let path = dir.path().join(data_file_name(LedgerId(5)));
        let mut b = std::fs::read(&path).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(&path, &b).unwrap();
        assert!(matches!(
            f.read(LedgerId(5), EntryId(1)),
            Err(BookieError::Corrupt { .. })
        ));
    }
}
