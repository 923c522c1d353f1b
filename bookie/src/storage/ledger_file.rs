//! A ledger's data file, `ledgers/<id:020>.dat`: the ledger's entries appended by checkpoints,
//! with an in-memory index from entry id to location, rebuilt by one sequential scan when the
//! file is first opened.
//!
//! One file per ledger is what makes deletion cheap: deleting a ledger unlinks its files and
//! the space comes back at once — no entry-log compaction.
//!
//! ```text
//! header (32): magic (8) | version u32 | reserved u32 | ledger id u64 | crc32c u32 | 0 u32
//! record v2:   body length u32 | crc32c(body) u32 | crc32c(previous 8 bytes) u32 |
//!              body = entry id u64 | lac i64 | length u64 | entry crc u32 | checkpoint u64 |
//!                     payload
//! record v1:   body length u32 | crc32c(body) u32 |
//!              body = entry id u64 | lac i64 | length u64 | entry crc u32 | payload
//! ```
//!
//! A checkpoint appends many records and fsyncs once, so a power cut can keep any subset of
//! its pages: a bad record followed by valid ones is normal for the checkpoint that was cut
//! short. Its entries are still in the journal (the mark did not pass them), so that part is
//! truncated and replayed. Each version 2 record carries the number of the checkpoint that wrote
//! it; one numbered at most the mark's was fsynced before the mark was written, so a bad record
//! with such a record after it is corruption, reported with file and offset. Version 1 files
//! (no numbers) are still read and appended in their own format, with the old rule: everything
//! from the first bad record on is a torn tail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::{Buf, BytesMut};
use common::fs::{File, Fs, OpenOptions};
use common::{EntryId, LedgerId};

use crate::entry::Entry;
use crate::error::{BookieError, Result};
use crate::format::{
    LEDGER_FILE_HEADER_LEN, LEDGER_FILE_MAGIC, LEDGER_FILE_VERSION, MAX_RECORD_LEN,
};

/// Bytes read at a time when a file is scanned on open.
const SCAN_CHUNK: usize = 1 << 20;

/// Body bytes before the payload: entry id, lac, length, entry crc (and v2's checkpoint).
const fn body_fixed(version: u32) -> usize {
    if version == 1 { 28 } else { 36 }
}

/// Record header bytes: body length, body crc (and v2's header crc).
const fn header_len(version: u32) -> usize {
    if version == 1 { 8 } else { 12 }
}

/// File name of a ledger's data file.
pub fn data_file_name(ledger: LedgerId) -> String {
    format!("{:020}.dat", ledger.0)
}

/// An open data file and its index.
#[derive(Debug)]
pub struct LedgerFile {
    path: PathBuf,
    file: Box<dyn File>,
    version: u32,
    len: u64,
    /// entry id -> (offset of the record, record length including its header)
    index: BTreeMap<u64, (u64, u32)>,
    bytes: u64,
    /// Created (or found without a complete header) by this open: its directory entry is
    /// not durable until the directory is fsynced.
    created: bool,
    /// Appended to since the last [`LedgerFile::sync`].
    unsynced: bool,
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

/// One record as parsed from the file.
struct Parsed {
    entry: u64,
    record_len: usize,
    payload_len: usize,
    checkpoint: u64,
}

impl LedgerFile {
    /// Opens (or, with `create`, creates) the data file of `ledger` in `dir`, scanning it to
    /// build the index. `committed` is the number of the last checkpoint whose mark is on
    /// disk: what a cut-short checkpoint left after the last good record is truncated, and a
    /// bad record followed by a committed one is `Corrupt`.
    pub fn open(
        fs: &dyn Fs,
        dir: &Path,
        ledger: LedgerId,
        create: bool,
        committed: u64,
    ) -> Result<Option<Self>> {
        Self::open_with(fs, dir, ledger, create, committed, SCAN_CHUNK)
    }

    /// [`LedgerFile::open`], reading the file in `scan_chunk`-byte reads (tests vary it).
    fn open_with(
        fs: &dyn Fs,
        dir: &Path,
        ledger: LedgerId,
        create: bool,
        committed: u64,
        scan_chunk: usize,
    ) -> Result<Option<Self>> {
        let path = dir.join(data_file_name(ledger));
        let opts = if create {
            OpenOptions::create()
        } else {
            OpenOptions::read_write()
        };
        let file = match fs.open(&path, opts) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => return Ok(None),
            Err(e) => return Err(BookieError::io(&path)(e)),
        };
        let mut lf = LedgerFile {
            path,
            file,
            version: LEDGER_FILE_VERSION,
            len: 0,
            index: BTreeMap::new(),
            bytes: 0,
            created: false,
            unsynced: false,
        };
        let file_len = lf.file.size().map_err(BookieError::io(&lf.path))?;
        let mut w = Window::new(&*lf.file, file_len, scan_chunk);
        let head = w
            .get(0, LEDGER_FILE_HEADER_LEN)
            .map_err(BookieError::io(&lf.path))?
            .to_vec();
        let fresh = head.len() < LEDGER_FILE_HEADER_LEN
            || (lf.check_header(&head, ledger).is_err()
                && !holds_committed_records(&mut w, committed)
                    .map_err(BookieError::io(&lf.path))?);
        drop(w);
        if fresh {
            // New, or created by a checkpoint that a crash cut short before it fsynced the
            // file (its header torn, no record of a completed checkpoint in it): nothing in it
            // was checkpointed. The reset is made durable at once: what it replaces must not
            // come back after another crash, once a later checkpoint has reused its number.
            lf.file
                .set_len(0)
                .and_then(|()| lf.file.write_all_at(&header(ledger), 0))
                .and_then(|()| lf.file.sync_data())
                .map_err(BookieError::io(&lf.path))?;
            lf.len = LEDGER_FILE_HEADER_LEN as u64;
            lf.created = true;
            return Ok(Some(lf));
        }
        lf.version = lf.check_header(&head, ledger)?;
        lf.scan(file_len, committed, scan_chunk)?;
        Ok(Some(lf))
    }

    /// Whether this open created the file (see [`LedgerFile::open`]).
    pub fn created(&self) -> bool {
        self.created
    }

    fn check_header(&self, h: &[u8], ledger: LedgerId) -> Result<u32> {
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
        if !(1..=LEDGER_FILE_VERSION).contains(&version) {
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
        Ok(version)
    }

    /// Builds the index by one front-to-back pass in `chunk`-byte reads (never the whole file
    /// in memory); what a cut-short checkpoint left is truncated, corruption is refused.
    fn scan(&mut self, file_len: u64, committed: u64, chunk: usize) -> Result<()> {
        let mut pos = LEDGER_FILE_HEADER_LEN as u64;
        let hlen = header_len(self.version) as u64;
        let fixed = body_fixed(self.version) as u64;
        let mut w = Window::new(&*self.file, file_len, chunk);
        while pos < file_len {
            let parsed =
                record_at(&mut w, pos, self.version).map_err(BookieError::io(&self.path))?;
            match parsed {
                Ok(p) => {
                    if let Some((_, old)) = self.index.insert(p.entry, (pos, p.record_len as u32)) {
                        // Re-flushed after a crash between flush and checkpoint: same entry.
                        self.bytes -= u64::from(old) - hlen - fixed;
                    }
                    self.bytes += p.payload_len as u64;
                    pos += p.record_len as u64;
                }
                Err(reason) => {
                    if self.version > 1
                        && let Some(at) = committed_record_after(&mut w, pos + 1, committed)
                            .map_err(BookieError::io(&self.path))?
                    {
                        return Err(BookieError::Corrupt {
                            location: format!("{} at offset {pos}", self.path.display()),
                            reason: format!(
                                "{reason}, yet a record of a completed checkpoint follows at offset {at}"
                            ),
                        });
                    }
                    tracing::warn!(
                        path = %self.path.display(), offset = pos, reason = %reason,
                        "truncating what a cut-short checkpoint left in a ledger file; its entries are replayed from the journal"
                    );
                    drop(w);
                    self.file
                        .set_len(pos)
                        .and_then(|()| self.file.sync_data())
                        .map_err(BookieError::io(&self.path))?;
                    self.len = pos;
                    return Ok(());
                }
            }
        }
        self.len = pos.min(file_len);
        Ok(())
    }

    /// Index entries held in memory (for the open-file budget).
    pub fn index_entries(&self) -> usize {
        self.index.len()
    }

    /// Appends entries written by checkpoint number `checkpoint` (in writes of about 1 MiB,
    /// through one reused buffer); call [`LedgerFile::sync`] before relying on them.
    pub fn append(&mut self, entries: &[&Entry], checkpoint: u64) -> Result<()> {
        const CHUNK: usize = 1 << 20;
        let hlen = header_len(self.version);
        let fixed = body_fixed(self.version);
        let mut buf = BytesMut::with_capacity(CHUNK + hlen + fixed);
        let mut written = self.len;
        for (i, e) in entries.iter().enumerate() {
            let start = buf.len();
            let body_len = fixed + e.payload.len();
            buf.extend_from_slice(&(body_len as u32).to_le_bytes());
            buf.extend_from_slice(&[0u8; 4]);
            if self.version > 1 {
                buf.extend_from_slice(&[0u8; 4]);
            }
            buf.extend_from_slice(&e.entry.0.to_le_bytes());
            buf.extend_from_slice(&e.lac.to_le_bytes());
            buf.extend_from_slice(&e.length.to_le_bytes());
            buf.extend_from_slice(&e.crc.to_le_bytes());
            if self.version > 1 {
                buf.extend_from_slice(&checkpoint.to_le_bytes());
            }
            buf.extend_from_slice(&e.payload);
            let crc = common::checksum::crc32c(&buf[start + hlen..]);
            buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
            if self.version > 1 {
                let hcrc = common::checksum::crc32c(&buf[start..start + 8]);
                buf[start + 8..start + 12].copy_from_slice(&hcrc.to_le_bytes());
            }
            let offset = written + start as u64;
            let len = (buf.len() - start) as u32;
            if let Some((_, old)) = self.index.insert(e.entry.0, (offset, len)) {
                self.bytes -= u64::from(old) - (hlen + fixed) as u64;
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
        self.unsynced = true;
        Ok(())
    }

    /// fsyncs the file.
    pub fn sync(&mut self) -> Result<()> {
        self.file.sync_data().map_err(BookieError::io(&self.path))?;
        self.unsynced = false;
        Ok(())
    }

    /// Whether appends since the last [`LedgerFile::sync`] are not yet durable.
    pub fn unsynced(&self) -> bool {
        self.unsynced
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
        let p = parse_record(&buf, self.version).map_err(|reason| BookieError::Corrupt {
            location: location(),
            reason,
        })?;
        let mut body = buf.slice(header_len(self.version)..);
        body.advance(8);
        let lac = body.get_i64_le();
        let length = body.get_u64_le();
        let crc = body.get_u32_le();
        if self.version > 1 {
            body.advance(8);
        }
        let e = Entry {
            ledger,
            entry: EntryId(p.entry),
            lac,
            length,
            crc,
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

/// Parses one record of format `version` at the start of `buf`.
fn parse_record(buf: &[u8], version: u32) -> std::result::Result<Parsed, String> {
    let hlen = header_len(version);
    let fixed = body_fixed(version);
    if buf.len() < hlen + fixed {
        return Err("partial record".into());
    }
    if version > 1 {
        let hcrc = u32::from_le_bytes(buf[8..12].try_into().unwrap_or_default());
        if common::checksum::crc32c(&buf[..8]) != hcrc {
            return Err("record header checksum mismatch".into());
        }
    }
    let body_len = u32::from_le_bytes(buf[..4].try_into().unwrap_or_default()) as usize;
    if !(fixed..=MAX_RECORD_LEN).contains(&body_len) || buf.len() - hlen < body_len {
        return Err(format!("bad record length {body_len}"));
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().unwrap_or_default());
    let body = &buf[hlen..hlen + body_len];
    common::checksum::verify(body, crc).map_err(|e| e.to_string())?;
    let entry = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
    let checkpoint = if version > 1 {
        u64::from_le_bytes(body[28..36].try_into().unwrap_or_default())
    } else {
        0
    };
    Ok(Parsed {
        entry,
        record_len: hlen + body_len,
        payload_len: body_len - fixed,
        checkpoint,
    })
}

/// Reads of a ledger file in chunks: a window over `file[start..start + buf.len()]`, refilled
/// from the asked position when a request falls outside it.
struct Window<'a> {
    file: &'a dyn File,
    len: u64,
    chunk: usize,
    start: u64,
    buf: Vec<u8>,
}

impl<'a> Window<'a> {
    fn new(file: &'a dyn File, len: u64, chunk: usize) -> Self {
        Window {
            file,
            len,
            chunk: chunk.max(1),
            start: 0,
            buf: Vec::new(),
        }
    }

    /// `file[pos..pos + n]`, shorter at the end of the file.
    fn get(&mut self, pos: u64, n: usize) -> std::io::Result<&[u8]> {
        let n = n.min(self.len.saturating_sub(pos) as usize);
        let end = pos + n as u64;
        if pos < self.start || end > self.start + self.buf.len() as u64 {
            let want = n.max(self.chunk).min(self.len.saturating_sub(pos) as usize);
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.start = pos;
        }
        let off = (pos - self.start) as usize;
        Ok(&self.buf[off..off + n])
    }
}

/// Parses the record of format `version` at `pos`: the outer error is I/O, the inner a bad
/// record.
fn record_at(
    w: &mut Window<'_>,
    pos: u64,
    version: u32,
) -> std::io::Result<std::result::Result<Parsed, String>> {
    let hlen = header_len(version);
    let head = w.get(pos, hlen)?;
    if head.len() < 4 {
        return Ok(Err("partial record".into()));
    }
    let body_len = u32::from_le_bytes(head[..4].try_into().unwrap_or_default()) as usize;
    let rec = w.get(pos, hlen + body_len.min(MAX_RECORD_LEN))?;
    Ok(parse_record(rec, version))
}

/// Whether a file whose header is bad still holds data a completed checkpoint wrote: a
/// committed version 2 record anywhere, or a version 1 record right after the header. Then the
/// bad header is corruption; otherwise it is the torn creation of an uncommitted file.
fn holds_committed_records(w: &mut Window<'_>, committed: u64) -> std::io::Result<bool> {
    Ok(committed_record_after(w, 1, committed)?.is_some()
        || record_at(w, LEDGER_FILE_HEADER_LEN as u64, 1)?.is_ok())
}

/// Offset (at or after `from`) of a valid version 2 record written by a checkpoint numbered at
/// most `committed`, if any. The header checksum rejects false starts cheaply.
fn committed_record_after(
    w: &mut Window<'_>,
    from: u64,
    committed: u64,
) -> std::io::Result<Option<u64>> {
    let hlen = header_len(LEDGER_FILE_VERSION);
    for at in from..w.len.saturating_sub(hlen as u64) {
        let head = w.get(at, hlen)?;
        let hcrc = u32::from_le_bytes(head[8..12].try_into().unwrap_or_default());
        if common::checksum::crc32c(&head[..8]) != hcrc {
            continue;
        }
        if record_at(w, at, LEDGER_FILE_VERSION)?.is_ok_and(|p| p.checkpoint <= committed) {
            return Ok(Some(at));
        }
    }
    Ok(None)
}

/// Reads a whole data file's entries in id order (for tools and tests); `committed` as for
/// [`LedgerFile::open`].
pub fn read_all(fs: &dyn Fs, dir: &Path, ledger: LedgerId, committed: u64) -> Result<Vec<Entry>> {
    let Some(f) = LedgerFile::open(fs, dir, ledger, false, committed)? else {
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
    use common::fs::RealFs;

    fn entry(id: u64) -> Entry {
        Entry::new(
            LedgerId(5),
            EntryId(id),
            id as i64 - 1,
            id * 3,
            Bytes::from(vec![id as u8; 3]),
        )
    }

    fn path(dir: &Path) -> PathBuf {
        dir.join(data_file_name(LedgerId(5)))
    }

    /// A file holding entries 0..10 written by checkpoint 1, then 10..20 by checkpoint 2.
    /// Returns the offset where checkpoint 2's records begin.
    fn two_checkpoints(dir: &Path) -> (Vec<Entry>, u64) {
        let mut f = LedgerFile::open(&RealFs, dir, LedgerId(5), true, 0)
            .unwrap()
            .unwrap();
        let es: Vec<Entry> = (0..20).map(entry).collect();
        f.append(&es[..10].iter().collect::<Vec<_>>(), 1).unwrap();
        let second = f.len;
        f.append(&es[10..].iter().collect::<Vec<_>>(), 2).unwrap();
        f.sync().unwrap();
        (es, second)
    }

    fn flip(path: &Path, at: u64) {
        let mut b = std::fs::read(path).unwrap();
        b[at as usize] ^= 0x10;
        std::fs::write(path, &b).unwrap();
    }

    #[test]
    fn append_read_reopen_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = LedgerFile::open(&RealFs, dir.path(), LedgerId(5), true, 0)
            .unwrap()
            .unwrap();
        assert!(f.created());
        let es: Vec<Entry> = (0..10).map(entry).collect();
        f.append(&es.iter().collect::<Vec<_>>(), 1).unwrap();
        f.sync().unwrap();
        assert_eq!(f.read(LedgerId(5), EntryId(3)).unwrap().unwrap(), es[3]);
        assert_eq!(f.last_entry(), Some(EntryId(9)));
        drop(f);
        // Cut the last record short.
        let len = std::fs::metadata(path(dir.path())).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(path(dir.path()))
            .unwrap()
            .set_len(len - 2)
            .unwrap();
        let f = LedgerFile::open(&RealFs, dir.path(), LedgerId(5), false, 1)
            .unwrap()
            .unwrap();
        assert!(!f.created());
        assert_eq!(f.entries(), 9);
        assert_eq!(
            read_all(&RealFs, dir.path(), LedgerId(5), 1).unwrap(),
            es[..9].to_vec()
        );
        assert!(
            LedgerFile::open(&RealFs, dir.path(), LedgerId(6), false, 1)
                .unwrap()
                .is_none()
        );
    }

    /// Regression (issue 9, defect 4): a bad record followed by records of a completed
    /// checkpoint is corruption, reported with file and offset — not a torn tail that
    /// silently drops the valid records after it.
    #[test]
    fn a_bad_record_before_committed_records_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _) = two_checkpoints(dir.path());
        // Damage entry 3's payload; entries 4..20 (checkpoints 1 and 2) follow it.
        let rec = (header_len(2) + body_fixed(2) + 3) as u64;
        let at = LEDGER_FILE_HEADER_LEN as u64 + 3 * rec + rec - 1;
        flip(&path(dir.path()), at);
        let err = LedgerFile::open(&RealFs, dir.path(), LedgerId(5), false, 2).unwrap_err();
        let offset = LEDGER_FILE_HEADER_LEN as u64 + 3 * rec;
        match &err {
            BookieError::Corrupt { location, .. } => {
                assert!(location.ends_with(&format!("at offset {offset}")), "{err}")
            }
            e => panic!("expected Corrupt, got {e}"),
        }
    }

    /// What a power cut leaves of a checkpoint that never wrote its mark (pages of it lost,
    /// later ones kept) is truncated at the first bad record, not refused.
    #[test]
    fn damage_inside_an_uncommitted_checkpoint_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (es, second) = two_checkpoints(dir.path());
        let rec = (header_len(2) + body_fixed(2) + 3) as u64;
        // A lost page in the middle of checkpoint 2's records (zeros), valid ones after it.
        let mut b = std::fs::read(path(dir.path())).unwrap();
        let hole = (second + 2 * rec) as usize;
        b[hole..hole + rec as usize].fill(0);
        std::fs::write(path(dir.path()), &b).unwrap();
        // The mark says checkpoint 1: checkpoint 2 never completed.
        let f = LedgerFile::open(&RealFs, dir.path(), LedgerId(5), false, 1)
            .unwrap()
            .unwrap();
        assert_eq!(f.entries(), 12);
        assert_eq!(
            std::fs::metadata(path(dir.path())).unwrap().len(),
            second + 2 * rec
        );
        drop(f);
        assert_eq!(
            read_all(&RealFs, dir.path(), LedgerId(5), 1).unwrap(),
            es[..12].to_vec()
        );
    }

    /// Issue 9, defect 6: opening scans the file in bounded reads, never the whole file at
    /// once; whatever the read size (records straddle every boundary), the index is the same,
    /// and corruption and torn tails are still told apart.
    #[test]
    fn the_scan_reads_in_chunks_of_any_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = LedgerFile::open(&RealFs, dir.path(), LedgerId(5), true, 0)
            .unwrap()
            .unwrap();
        let es: Vec<Entry> = (0..60)
            .map(|i| {
                let mut e = entry(i);
                e.payload = Bytes::from(vec![i as u8; (i as usize * 37) % 700 + 1]);
                e.crc = Entry::new(e.ledger, e.entry, e.lac, e.length, e.payload.clone()).crc;
                e
            })
            .collect();
        f.append(&es.iter().collect::<Vec<_>>(), 1).unwrap();
        f.sync().unwrap();
        drop(f);
        let len = std::fs::metadata(path(dir.path())).unwrap().len();
        for chunk in [1, 5, 12, 47, 300, 4096, 1 << 20] {
            let f = LedgerFile::open_with(&RealFs, dir.path(), LedgerId(5), false, 1, chunk)
                .unwrap()
                .unwrap();
            assert_eq!(f.entries(), 60, "chunk {chunk}");
            assert_eq!(f.len, len, "chunk {chunk}");
            for e in &es {
                assert_eq!(f.read(LedgerId(5), e.entry).unwrap().as_ref(), Some(e));
            }
        }
        // A damaged record with committed records after it: corruption at any read size.
        let mut b = std::fs::read(path(dir.path())).unwrap();
        b[200] ^= 0x40;
        std::fs::write(path(dir.path()), &b).unwrap();
        for chunk in [3, 64, 1 << 20] {
            assert!(matches!(
                LedgerFile::open_with(&RealFs, dir.path(), LedgerId(5), false, 1, chunk),
                Err(BookieError::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn a_flipped_payload_byte_is_corrupt_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = LedgerFile::open(&RealFs, dir.path(), LedgerId(5), true, 0)
            .unwrap()
            .unwrap();
        let e = entry(1);
        f.append(&[&e], 1).unwrap();
        let len = std::fs::metadata(path(dir.path())).unwrap().len();
        flip(&path(dir.path()), len - 1);
        assert!(matches!(
            f.read(LedgerId(5), EntryId(1)),
            Err(BookieError::Corrupt { .. })
        ));
    }

    /// Version 1 files (golden bytes in testdata/) are still read, and appended to in their
    /// own format.
    #[test]
    fn version_1_files_are_read_and_appended() {
        let dir = tempfile::tempdir().unwrap();
        let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/ledger-v1.dat");
        if std::env::var_os("MAGNETAR_BLESS").is_some() {
            // Entries 0..4 of ledger 5 as version 1 wrote them.
            let mut img = header(LedgerId(5)).to_vec();
            img[8..12].copy_from_slice(&1u32.to_le_bytes());
            let crc = common::checksum::crc32c(&img[..24]);
            img[24..28].copy_from_slice(&crc.to_le_bytes());
            for id in 0..4 {
                let e = entry(id);
                let mut body = Vec::new();
                body.extend_from_slice(&e.entry.0.to_le_bytes());
                body.extend_from_slice(&e.lac.to_le_bytes());
                body.extend_from_slice(&e.length.to_le_bytes());
                body.extend_from_slice(&e.crc.to_le_bytes());
                body.extend_from_slice(&e.payload);
                img.extend_from_slice(&(body.len() as u32).to_le_bytes());
                img.extend_from_slice(&common::checksum::crc32c(&body).to_le_bytes());
                img.extend_from_slice(&body);
            }
            std::fs::create_dir_all(Path::new(golden).parent().unwrap()).unwrap();
            std::fs::write(golden, img).unwrap();
        }
        std::fs::copy(golden, path(dir.path())).unwrap();
        let mut f = LedgerFile::open(&RealFs, dir.path(), LedgerId(5), false, 0)
            .unwrap()
            .unwrap();
        assert_eq!(f.version, 1);
        assert_eq!(f.entries(), 4);
        let more = entry(4);
        f.append(&[&more], 1).unwrap();
        f.sync().unwrap();
        drop(f);
        let all: Vec<Entry> = (0..5).map(entry).collect();
        assert_eq!(read_all(&RealFs, dir.path(), LedgerId(5), 1).unwrap(), all);
    }

    /// Fuzz target: any bytes as a ledger data file are read back or refused with an error
    /// naming the file and offset, never a panic.
    #[test]
    fn fuzz_ledger_file() {
        let seed_dir = tempfile::tempdir().unwrap();
        two_checkpoints(seed_dir.path());
        let seed = std::fs::read(path(seed_dir.path())).unwrap();
        let dir = tempfile::tempdir().unwrap();
        common::fuzz::run("ledger_file", &[seed], |input| {
            std::fs::write(path(dir.path()), input).unwrap();
            for committed in [0, 1, 2, u64::MAX] {
                let _ = read_all(&RealFs, dir.path(), LedgerId(5), committed);
            }
        });
    }
}
