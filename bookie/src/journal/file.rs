//! Journal files: `<seq:016x>.jnl` in the journal directory, each a 64-byte header followed by
//! batches. A batch is what one group commit wrote with one `write` + `fdatasync`:
//!
//! ```text
//! batch:  magic u32 | payload length u32 | record count u32 | file sequence u64 |
//!         crc32c(previous 20 bytes) u32
//!         then `count` records: body length u32 | crc32c(body) u32 | body
//! ```
//!
//! A batch is valid only if its header and every record check out. Since a batch is written
//! only after the previous one was fsynced, a bad batch with no valid batch after it is the
//! torn tail of a crash (nothing in it was acknowledged); a bad batch followed by a valid one
//! is corruption. The end of the data is an all-zero header (space zero-filled ahead) or a
//! valid batch of another file sequence: journal files are recycled, and what follows the
//! new data in a recycled file is the old incarnation's.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use common::fs::{File, Fs, OpenOptions};

use super::record::JournalRecord;
use crate::error::{BookieError, Result};
use crate::format::{
    BATCH_HEADER_LEN, BATCH_MAGIC, JOURNAL_HEADER_LEN, JOURNAL_MAGIC, JOURNAL_VERSION,
    MAX_BATCH_LEN, MAX_RECORD_LEN, RECORD_HEADER_LEN,
};

/// A point in the journal: file sequence number and byte offset within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct JournalPosition {
    /// The file's sequence number.
    pub file: u64,
    /// Byte offset within the file.
    pub offset: u64,
}

/// File name of journal file `seq`.
pub fn file_name(seq: u64) -> String {
    format!("{seq:016x}.jnl")
}

/// Sequence numbers of the journal files in `dir`, ascending.
pub fn list_files(fs: &dyn Fs, dir: &Path) -> Result<Vec<u64>> {
    let mut seqs = Vec::new();
    for name in fs.list_dir(dir).map_err(BookieError::io(dir))? {
        let Some(stem) = name.strip_suffix(".jnl") else {
            continue;
        };
        if let Ok(seq) = u64::from_str_radix(stem, 16) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// The 64-byte file header.
pub fn header(seq: u64) -> [u8; JOURNAL_HEADER_LEN] {
    let mut h = [0u8; JOURNAL_HEADER_LEN];
    h[..8].copy_from_slice(JOURNAL_MAGIC);
    h[8..12].copy_from_slice(&JOURNAL_VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = common::checksum::crc32c(&h[..JOURNAL_HEADER_LEN - 4]);
    h[JOURNAL_HEADER_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn check_header(path: &Path, h: &[u8], seq: u64) -> Result<()> {
    let corrupt = |reason: String| BookieError::Corrupt {
        location: format!("{} at offset 0", path.display()),
        reason,
    };
    if h.len() < JOURNAL_HEADER_LEN || &h[..8] != JOURNAL_MAGIC {
        return Err(corrupt("not a Magnetar journal file (bad magic)".into()));
    }
    let crc = u32::from_le_bytes(h[JOURNAL_HEADER_LEN - 4..].try_into().unwrap_or_default());
    if common::checksum::crc32c(&h[..JOURNAL_HEADER_LEN - 4]) != crc {
        return Err(corrupt("journal header checksum mismatch".into()));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default());
    if version != JOURNAL_VERSION {
        return Err(BookieError::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
            supported: JOURNAL_VERSION,
        });
    }
    let found = u64::from_le_bytes(h[16..24].try_into().unwrap_or_default());
    if found != seq {
        return Err(corrupt(format!(
            "header says file {found}, name says {seq}"
        )));
    }
    Ok(())
}

/// Builds one batch of journal file `seq` into `out` (cleared first).
pub fn encode_batch<'a>(
    seq: u64,
    records: impl IntoIterator<Item = &'a JournalRecord>,
    out: &mut BytesMut,
) {
    out.clear();
    out.resize(BATCH_HEADER_LEN, 0);
    let mut count = 0u32;
    for r in records {
        let start = out.len();
        out.resize(start + RECORD_HEADER_LEN, 0);
        r.encode(out);
        let body_len = out.len() - start - RECORD_HEADER_LEN;
        let crc = common::checksum::crc32c(&out[start + RECORD_HEADER_LEN..]);
        out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        count += 1;
    }
    let payload_len = (out.len() - BATCH_HEADER_LEN) as u32;
    out[..4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&payload_len.to_le_bytes());
    out[8..12].copy_from_slice(&count.to_le_bytes());
    out[12..20].copy_from_slice(&seq.to_le_bytes());
    let hcrc = common::checksum::crc32c(&out[..20]);
    out[20..24].copy_from_slice(&hcrc.to_le_bytes());
}

/// Parsed batch header.
struct BatchHeader {
    payload_len: usize,
    count: u32,
    seq: u64,
}

/// `Ok(None)`: an all-zero header (clean end). `Err`: not a valid batch header.
fn parse_batch_header(h: &[u8]) -> std::result::Result<Option<BatchHeader>, String> {
    if h.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    let word = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().unwrap_or_default());
    if word(0) != BATCH_MAGIC {
        return Err("bad batch magic".into());
    }
    if common::checksum::crc32c(&h[..20]) != word(20) {
        return Err("batch header checksum mismatch".into());
    }
    let payload_len = word(4) as usize;
    if payload_len > MAX_BATCH_LEN {
        return Err(format!(
            "batch of {payload_len} bytes exceeds {MAX_BATCH_LEN}"
        ));
    }
    Ok(Some(BatchHeader {
        payload_len,
        count: word(8),
        seq: u64::from_le_bytes(h[12..20].try_into().unwrap_or_default()),
    }))
}

/// Splits and checks a batch payload into records; any defect rejects the whole batch.
fn parse_batch(payload: Bytes, count: u32) -> std::result::Result<Vec<JournalRecord>, String> {
    let mut records = Vec::with_capacity(count.min(1 << 16) as usize);
    let mut pos = 0usize;
    for i in 0..count {
        if payload.len() - pos < RECORD_HEADER_LEN {
            return Err(format!("record {i} header runs past the batch"));
        }
        let len = u32::from_le_bytes(payload[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(payload[pos + 4..pos + 8].try_into().unwrap_or_default());
        if len > MAX_RECORD_LEN || payload.len() - pos - RECORD_HEADER_LEN < len {
            return Err(format!("record {i} length {len} runs past the batch"));
        }
        let body = payload.slice(pos + RECORD_HEADER_LEN..pos + RECORD_HEADER_LEN + len);
        common::checksum::verify(&body, crc).map_err(|e| format!("record {i}: {e}"))?;
        records.push(JournalRecord::decode(body).map_err(|e| format!("record {i}: {e}"))?);
        pos += RECORD_HEADER_LEN + len;
    }
    if pos != payload.len() {
        return Err("batch has bytes after its last record".into());
    }
    Ok(records)
}

/// What reading one journal file found.
#[derive(Debug)]
pub struct FileScan {
    /// Offset just past the last valid batch.
    pub end: u64,
    /// Where the torn tail began and why, if the file ended in one.
    pub torn: Option<(u64, String)>,
}

/// Reads journal file `seq` from `from` (at least the header length), calling `visit` for
/// every record of every valid batch with the position just past its batch.
/// A torn tail ends the scan; corruption before the tail is an error naming file and offset.
pub fn read_file(
    fs: &dyn Fs,
    dir: &Path,
    seq: u64,
    from: u64,
    mut visit: impl FnMut(JournalRecord, JournalPosition) -> Result<()>,
) -> Result<FileScan> {
    let path = dir.join(file_name(seq));
    let file = fs
        .open(&path, OpenOptions::read())
        .map_err(BookieError::io(&path))?;
    let file_len = file.size().map_err(BookieError::io(&path))?;
    let mut h = [0u8; JOURNAL_HEADER_LEN];
    read_full(&*file, &mut h, 0, &path)?;
    check_header(&path, &h, seq)?;
    let mut offset = from.max(JOURNAL_HEADER_LEN as u64);
    loop {
        if file_len - offset.min(file_len) < BATCH_HEADER_LEN as u64 {
            let rest = read_rest(&*file, offset.min(file_len), &path)?;
            let torn =
                (!rest.iter().all(|b| *b == 0)).then(|| (offset, "partial batch header".into()));
            return Ok(FileScan { end: offset, torn });
        }
        let mut bh = [0u8; BATCH_HEADER_LEN];
        read_full(&*file, &mut bh, offset, &path)?;
        let bad = match parse_batch_header(&bh) {
            Ok(None) => {
                return Ok(FileScan {
                    end: offset,
                    torn: None,
                });
            }
            // A valid batch of another file sequence is what a recycled file held before: the
            // end of this file's data, whatever its length (new data often ends exactly on an
            // old batch boundary, with fixed-size entries).
            Ok(Some(b)) if b.seq != seq => {
                return Ok(FileScan {
                    end: offset,
                    torn: None,
                });
            }
            Ok(Some(b)) if (b.payload_len as u64) > file_len - offset - BATCH_HEADER_LEN as u64 => {
                format!(
                    "batch of {} bytes runs past the end of the file",
                    b.payload_len
                )
            }
            Ok(Some(b)) => {
                let mut payload = BytesMut::zeroed(b.payload_len);
                read_full(
                    &*file,
                    &mut payload,
                    offset + BATCH_HEADER_LEN as u64,
                    &path,
                )?;
                match parse_batch(payload.freeze(), b.count) {
                    Ok(records) => {
                        offset += (BATCH_HEADER_LEN + b.payload_len) as u64;
                        let pos = JournalPosition { file: seq, offset };
                        for r in records {
                            visit(r, pos)?;
                        }
                        continue;
                    }
                    Err(reason) => reason,
                }
            }
            Err(reason) => reason,
        };
        // A bad batch: torn tail, unless a valid batch follows it.
        let rest = read_rest(&*file, offset + 1, &path)?;
        if let Some(at) = find_valid_batch(&rest, seq) {
            return Err(BookieError::Corrupt {
                location: format!("{} at offset {offset}", path.display()),
                reason: format!(
                    "{bad}, yet a valid batch follows at offset {}; set `journal.recovery_mode = \"tolerate_corruption\"` to skip it",
                    offset + 1 + at as u64
                ),
            });
        }
        return Ok(FileScan {
            end: offset,
            torn: Some((offset, bad)),
        });
    }
}

/// Whether journal file `seq` holds any valid batch of its own. A file whose header is torn
/// and holds none is one whose creation a crash cut short: a batch is acknowledged only after
/// an fdatasync that also makes the header durable, so nothing in it was acknowledged.
pub fn holds_batches(fs: &dyn Fs, dir: &Path, seq: u64) -> Result<bool> {
    let path = path_of(dir, seq);
    let buf = fs.read(&path).map_err(BookieError::io(&path))?;
    Ok(find_valid_batch(&buf, seq).is_some())
}

/// Offset of the first valid batch of file `seq` in `buf`, if any.
fn find_valid_batch(buf: &[u8], seq: u64) -> Option<usize> {
    let magic = BATCH_MAGIC.to_le_bytes();
    let mut from = 0;
    while let Some(i) = buf[from..].windows(4).position(|w| w == magic) {
        let at = from + i;
        if buf.len() - at >= BATCH_HEADER_LEN
            && let Ok(Some(h)) = parse_batch_header(&buf[at..at + BATCH_HEADER_LEN])
            && h.seq == seq
        {
            let start = at + BATCH_HEADER_LEN;
            if buf.len() - start >= h.payload_len {
                let payload = Bytes::copy_from_slice(&buf[start..start + h.payload_len]);
                if parse_batch(payload, h.count).is_ok() {
                    return Some(at);
                }
            }
        }
        from = at + 1;
    }
    None
}

fn read_full(file: &dyn File, buf: &mut [u8], offset: u64, path: &Path) -> Result<()> {
    file.read_exact_at(buf, offset).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => BookieError::Corrupt {
            location: path.display().to_string(),
            reason: "file shorter than its header".into(),
        },
        _ => BookieError::Io {
            path: path.to_owned(),
            source: e,
        },
    })
}

fn read_rest(file: &dyn File, offset: u64, path: &Path) -> Result<Vec<u8>> {
    file.read_from(offset).map_err(BookieError::io(path))
}

/// Path of journal file `seq` in `dir`.
pub fn path_of(dir: &Path, seq: u64) -> PathBuf {
    dir.join(file_name(seq))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use common::{EntryId, LedgerId};
    use proptest::prelude::*;

    use super::*;
    use crate::entry::Entry;

    fn add(l: u64, e: u64) -> JournalRecord {
        JournalRecord::Add(Entry::new(
            LedgerId(l),
            EntryId(e),
            -1,
            e * 10,
            Bytes::from(vec![e as u8; 10 + e as usize]),
        ))
    }

    /// A file with three batches, followed by `zeros` bytes of preallocated space.
    fn write_file(dir: &Path, zeros: usize) -> (Vec<u8>, Vec<JournalRecord>) {
        let mut img = header(7).to_vec();
        let mut all = Vec::new();
        let mut buf = BytesMut::new();
        for b in 0..3u64 {
            let recs: Vec<_> = (0..3).map(|i| add(1, b * 3 + i)).collect();
            encode_batch(7, &recs, &mut buf);
            img.extend_from_slice(&buf);
            all.extend(recs);
        }
        img.extend(std::iter::repeat_n(0u8, zeros));
        std::fs::File::create(dir.join(file_name(7)))
            .unwrap()
            .write_all(&img)
            .unwrap();
        (img, all)
    }

    fn scan(dir: &Path) -> Result<(Vec<JournalRecord>, FileScan)> {
        let mut got = Vec::new();
        let s = read_file(&common::fs::RealFs, dir, 7, 0, |r, _| {
            got.push(r);
            Ok(())
        })?;
        Ok((got, s))
    }

    #[test]
    fn reads_every_record_and_stops_at_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let (img, all) = write_file(dir.path(), 4096);
        let (got, s) = scan(dir.path()).unwrap();
        assert_eq!(got, all);
        assert_eq!(s.end as usize, img.len() - 4096);
        assert!(s.torn.is_none());
    }

    #[test]
    fn a_recycled_files_old_batches_mark_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let (img, all) = write_file(dir.path(), 0);
        // Recycle as file 8: new header, one new batch, then the old incarnation's bytes.
        let mut recycled = img.clone();
        recycled[..JOURNAL_HEADER_LEN].copy_from_slice(&header(8));
        let mut buf = BytesMut::new();
        encode_batch(8, &all[..1], &mut buf);
        // Shorter than the old first batch, so an old batch does not start right after it:
        // the old bytes that follow are garbage, yet no valid batch of file 8 follows.
        recycled[JOURNAL_HEADER_LEN..JOURNAL_HEADER_LEN + buf.len()].copy_from_slice(&buf);
        std::fs::write(dir.path().join(file_name(8)), &recycled).unwrap();
        let mut got = Vec::new();
        let scan = read_file(&common::fs::RealFs, dir.path(), 8, 0, |r, _| {
            got.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, all[..1].to_vec());
        assert_eq!(scan.end as usize, JOURNAL_HEADER_LEN + buf.len());
    }

    /// Regression (issue 9, defect 1): the new data ends exactly where an old batch begins, so
    /// the old incarnation's batches (valid in themselves) follow. They must not be replayed.
    #[test]
    fn old_batches_aligned_after_new_data_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let (img, all) = write_file(dir.path(), 0);
        // The first old batch of file 7 holds records 0..3; write file 8's one batch of the
        // same three records (same length), so file 7's second batch starts right after it.
        let mut recycled = img.clone();
        recycled[..JOURNAL_HEADER_LEN].copy_from_slice(&header(8));
        let mut buf = BytesMut::new();
        encode_batch(8, &all[..3], &mut buf);
        let old_first_batch_end = {
            let mut b = BytesMut::new();
            encode_batch(7, &all[..3], &mut b);
            JOURNAL_HEADER_LEN + b.len()
        };
        assert_eq!(JOURNAL_HEADER_LEN + buf.len(), old_first_batch_end);
        recycled[JOURNAL_HEADER_LEN..old_first_batch_end].copy_from_slice(&buf);
        std::fs::write(dir.path().join(file_name(8)), &recycled).unwrap();
        let mut got = Vec::new();
        let scan = read_file(&common::fs::RealFs, dir.path(), 8, 0, |r, _| {
            got.push(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, all[..3].to_vec(), "only file 8's own batch is data");
        assert_eq!(scan.end as usize, old_first_batch_end);
        assert!(scan.torn.is_none());
    }

    #[test]
    fn corruption_followed_by_a_valid_batch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut img, _) = write_file(dir.path(), 0);
        img[JOURNAL_HEADER_LEN + BATCH_HEADER_LEN + 12] ^= 1; // first batch's first record
        std::fs::write(dir.path().join(file_name(7)), &img).unwrap();
        let err = scan(dir.path()).unwrap_err().to_string();
        assert!(err.contains("offset 64"), "{err}");
    }

    proptest! {
        /// Truncating anywhere yields a prefix of whole batches, never a panic or an error.
        #[test]
        fn truncation_is_a_torn_tail(cut in JOURNAL_HEADER_LEN..2000usize) {
            let dir = tempfile::tempdir().unwrap();
            let (img, all) = write_file(dir.path(), 0);
            let cut = cut.min(img.len());
            std::fs::write(dir.path().join(file_name(7)), &img[..cut]).unwrap();
            let (got, _) = scan(dir.path()).unwrap();
            prop_assert_eq!(got.len() % 3, 0);
            prop_assert_eq!(&got[..], &all[..got.len()]);
        }

        /// A flipped byte anywhere gives `Corrupt` or a shorter prefix, never wrong records.
        #[test]
        fn flipped_byte_is_detected(at in 0usize..2000, bit in 0u8..8) {
            let dir = tempfile::tempdir().unwrap();
            let (mut img, all) = write_file(dir.path(), 0);
            let at = at % img.len();
            img[at] ^= 1 << bit;
            std::fs::write(dir.path().join(file_name(7)), &img).unwrap();
            match scan(dir.path()) {
                Ok((got, _)) => {
                    prop_assert!(got.len() < all.len());
                    prop_assert_eq!(&got[..], &all[..got.len()]);
                }
                Err(BookieError::Corrupt { .. } | BookieError::UnsupportedVersion { .. }) => {}
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }
    }

    /// Fuzz target: any bytes as a journal file are replayed or refused with an error, never
    /// a panic or an allocation the file does not justify.
    #[test]
    fn fuzz_journal_file() {
        let mut seed = header(7).to_vec();
        let mut buf = BytesMut::new();
        let recs: Vec<_> = (0..3).map(|i| add(1, i)).collect();
        encode_batch(7, &recs, &mut buf);
        seed.extend_from_slice(&buf);
        let dir = tempfile::tempdir().unwrap();
        let fs = common::fs::real();
        common::fuzz::run("journal_file", &[seed], |input| {
            std::fs::write(path_of(dir.path(), 7), input).unwrap();
            let _ = read_file(
                fs.as_ref(),
                dir.path(),
                7,
                JOURNAL_HEADER_LEN as u64,
                |_, _| Ok(()),
            );
        });
    }
}
