//! An entry as the writer built it, with the checksum that follows it from the writer through
//! the journal and ledger files to every reader.

use bytes::Bytes;
use common::{EntryId, LedgerId};

/// "No entry" in LAC fields, as in BookKeeper.
pub const NO_ENTRY: i64 = -1;

/// One ledger entry plus the writer's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The ledger.
    pub ledger: LedgerId,
    /// The entry's id within the ledger.
    pub entry: EntryId,
    /// The writer's last-add-confirmed when it sent this entry (-1: none).
    pub lac: i64,
    /// Cumulative ledger length including this entry.
    pub length: u64,
    /// The payload, never copied on the way through.
    pub payload: Bytes,
    /// crc32c over ledger | entry | lac | length (little-endian) | payload.
    pub crc: u32,
}

/// The writer's checksum of an entry: over the 32-byte header (ledger, entry, LAC, length,
/// little-endian) and the payload, as BookKeeper's digest covers header and body.
pub fn entry_crc(ledger: LedgerId, entry: EntryId, lac: i64, length: u64, payload: &[u8]) -> u32 {
    let mut header = [0u8; 32];
    header[..8].copy_from_slice(&ledger.0.to_le_bytes());
    header[8..16].copy_from_slice(&entry.0.to_le_bytes());
    header[16..24].copy_from_slice(&lac.to_le_bytes());
    header[24..].copy_from_slice(&length.to_le_bytes());
    common::checksum::extend(common::checksum::crc32c(&header), payload)
}

impl Entry {
    /// Builds an entry and computes its checksum (what a writer does).
    pub fn new(ledger: LedgerId, entry: EntryId, lac: i64, length: u64, payload: Bytes) -> Self {
        let crc = entry_crc(ledger, entry, lac, length, &payload);
        Entry {
            ledger,
            entry,
            lac,
            length,
            payload,
            crc,
        }
    }

    /// True if the stored checksum matches the contents.
    pub fn verify(&self) -> bool {
        entry_crc(
            self.ledger,
            self.entry,
            self.lac,
            self.length,
            &self.payload,
        ) == self.crc
    }

    /// Converts from the wire message.
    pub fn from_proto(e: proto::bookie::Entry) -> Self {
        Entry {
            ledger: LedgerId(e.ledger_id),
            entry: EntryId(e.entry_id),
            lac: e.lac,
            length: e.length,
            payload: e.payload,
            crc: e.crc,
        }
    }

    /// Converts to the wire message.
    pub fn to_proto(&self) -> proto::bookie::Entry {
        proto::bookie::Entry {
            ledger_id: self.ledger.0,
            entry_id: self.entry.0,
            lac: self.lac,
            length: self.length,
            payload: self.payload.clone(),
            crc: self.crc,
        }
    }

    /// Bytes this entry occupies in memory (payload plus fixed fields), for cache accounting.
    pub fn footprint(&self) -> usize {
        self.payload.len() + 48
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_covers_header_and_payload() {
        let e = Entry::new(
            LedgerId(1),
            EntryId(2),
            1,
            10,
            Bytes::from_static(b"0123456789"),
        );
        assert!(e.verify());
        for tweak in 0..5 {
            let mut bad = e.clone();
            match tweak {
                0 => bad.ledger = LedgerId(9),
                1 => bad.entry = EntryId(9),
                2 => bad.lac = 0,
                3 => bad.length = 11,
                _ => bad.payload = Bytes::from_static(b"0123456780"),
            }
            assert!(!bad.verify(), "tweak {tweak} not detected");
        }
    }
}
