//! Journal records: what the journal remembers until a checkpoint makes ledger storage
//! durable. Body layouts (little-endian) are in docs/formats.md; each body is framed with its
//! length and crc32c by [`super::file`].

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{EntryId, LedgerId};

use crate::entry::Entry;

const ADD: u8 = 1;
const MASTER_KEY: u8 = 2;
const FENCE: u8 = 3;
const LAC: u8 = 4;
const DELETE: u8 = 5;

/// One thing the journal makes durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalRecord {
    /// An entry was added.
    Add(Entry),
    /// A ledger's master key, journaled with its first add.
    MasterKey {
        /// The ledger.
        ledger: LedgerId,
        /// The key writers present.
        key: Bytes,
    },
    /// A ledger was fenced.
    Fence {
        /// The ledger.
        ledger: LedgerId,
    },
    /// An explicit last-add-confirmed.
    Lac {
        /// The ledger.
        ledger: LedgerId,
        /// The LAC.
        lac: i64,
    },
    /// A ledger was deleted: earlier records of it must not be replayed.
    Delete {
        /// The ledger.
        ledger: LedgerId,
    },
}

impl JournalRecord {
    /// Encoded body length.
    pub fn encoded_len(&self) -> usize {
        1 + 8
            + match self {
                JournalRecord::Add(e) => 8 + 8 + 8 + 4 + e.payload.len(),
                JournalRecord::MasterKey { key, .. } => key.len(),
                JournalRecord::Fence { .. } | JournalRecord::Delete { .. } => 0,
                JournalRecord::Lac { .. } => 8,
            }
    }

    /// Appends the body to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            JournalRecord::Add(e) => {
                out.put_u8(ADD);
                out.put_u64_le(e.ledger.0);
                out.put_u64_le(e.entry.0);
                out.put_i64_le(e.lac);
                out.put_u64_le(e.length);
                out.put_u32_le(e.crc);
                out.put_slice(&e.payload);
            }
            JournalRecord::MasterKey { ledger, key } => {
                out.put_u8(MASTER_KEY);
                out.put_u64_le(ledger.0);
                out.put_slice(key);
            }
            JournalRecord::Fence { ledger } => {
                out.put_u8(FENCE);
                out.put_u64_le(ledger.0);
            }
            JournalRecord::Lac { ledger, lac } => {
                out.put_u8(LAC);
                out.put_u64_le(ledger.0);
                out.put_i64_le(*lac);
            }
            JournalRecord::Delete { ledger } => {
                out.put_u8(DELETE);
                out.put_u64_le(ledger.0);
            }
        }
    }

    /// Parses a body (whose frame checksum already matched). `Err` names what is wrong.
    pub fn decode(mut body: Bytes) -> Result<Self, String> {
        if body.len() < 9 {
            return Err(format!("record body of {} bytes is too short", body.len()));
        }
        let kind = body.get_u8();
        let ledger = LedgerId(body.get_u64_le());
        let need = |n: usize, body: &Bytes| {
            if body.len() < n {
                Err(format!("record type {kind} truncated"))
            } else {
                Ok(())
            }
        };
        let exact = |n: usize, body: &Bytes| {
            if body.len() != n {
                Err(format!(
                    "record type {kind} has {} trailing bytes",
                    body.len()
                ))
            } else {
                Ok(())
            }
        };
        Ok(match kind {
            ADD => {
                need(28, &body)?;
                let entry = EntryId(body.get_u64_le());
                let lac = body.get_i64_le();
                let length = body.get_u64_le();
                let crc = body.get_u32_le();
                JournalRecord::Add(Entry {
                    ledger,
                    entry,
                    lac,
                    length,
                    payload: body,
                    crc,
                })
            }
            MASTER_KEY => JournalRecord::MasterKey { ledger, key: body },
            FENCE => {
                exact(0, &body)?;
                JournalRecord::Fence { ledger }
            }
            LAC => {
                exact(8, &body)?;
                JournalRecord::Lac {
                    ledger,
                    lac: body.get_i64_le(),
                }
            }
            DELETE => {
                exact(0, &body)?;
                JournalRecord::Delete { ledger }
            }
            other => return Err(format!("unknown record type {other}")),
        })
    }

    /// The ledger the record is about.
    pub fn ledger(&self) -> LedgerId {
        match self {
            JournalRecord::Add(e) => e.ledger,
            JournalRecord::MasterKey { ledger, .. }
            | JournalRecord::Fence { ledger }
            | JournalRecord::Lac { ledger, .. }
            | JournalRecord::Delete { ledger } => *ledger,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_record() -> impl Strategy<Value = JournalRecord> {
        let ledger = any::<u64>().prop_map(LedgerId);
        prop_oneof![
            (
                ledger.clone(),
                any::<u64>(),
                any::<i64>(),
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..200)
            )
                .prop_map(|(l, e, lac, len, p)| JournalRecord::Add(Entry::new(
                    l,
                    EntryId(e),
                    lac,
                    len,
                    Bytes::from(p)
                ))),
            (
                ledger.clone(),
                proptest::collection::vec(any::<u8>(), 0..40)
            )
                .prop_map(|(ledger, k)| JournalRecord::MasterKey {
                    ledger,
                    key: Bytes::from(k)
                }),
            ledger
                .clone()
                .prop_map(|ledger| JournalRecord::Fence { ledger }),
            (ledger.clone(), any::<i64>())
                .prop_map(|(ledger, lac)| JournalRecord::Lac { ledger, lac }),
            ledger.prop_map(|ledger| JournalRecord::Delete { ledger }),
        ]
    }

    proptest! {
        #[test]
        fn every_record_round_trips(r in arb_record()) {
            let mut buf = BytesMut::new();
            r.encode(&mut buf);
            prop_assert_eq!(buf.len(), r.encoded_len());
            prop_assert_eq!(JournalRecord::decode(buf.freeze()).unwrap(), r);
        }

        #[test]
        fn any_truncation_is_an_error_or_a_shorter_add(r in arb_record(), cut in 0usize..300) {
            let mut buf = BytesMut::new();
            r.encode(&mut buf);
            let cut = cut.min(buf.len());
            // Never panics; framing checksums catch truncation before decode in practice.
            let _ = JournalRecord::decode(buf.freeze().slice(..cut));
        }
    }
}
