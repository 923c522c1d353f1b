//! Framing of the Pulsar binary protocol (big-endian):
//!
//! ```text
//! simple:   totalSize u32 | commandSize u32 | BaseCommand
//! payload:  totalSize u32 | commandSize u32 | BaseCommand |
//!           0x0e01 u16 | crc32c u32 | metadataSize u32 | MessageMetadata | payload
//! ```
//!
//! `totalSize` excludes itself. The crc32c covers everything after it (metadataSize,
//! metadata, payload). The payload section — from the magic on — is what the broker stores as
//! the entry and sends back, byte for byte, after a MESSAGE command, so consumers check the
//! producer's own checksum. Sizes are bounded before anything is allocated.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use super::pb::{BaseCommand, MessageMetadata};

/// Magic that starts a checksummed payload section.
pub const MAGIC_CRC32C: u16 = 0x0e01;
/// Magic of broker entry metadata (never sent: no client we serve asks for it).
pub const MAGIC_BROKER_ENTRY_METADATA: u16 = 0x0e02;
/// Default largest message (Pulsar's `maxMessageSize`).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 5 << 20;
/// Slack on top of the message size for command and framing bytes (Pulsar's padding).
pub const FRAME_PADDING: usize = 10 * 1024;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The command.
    pub command: BaseCommand,
    /// The payload section (from the magic on), for SEND and MESSAGE.
    pub payload: Option<Bytes>,
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not all of the frame has arrived yet.
    #[error("incomplete frame")]
    Incomplete,
    /// The frame claims more than the configured maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Claimed size.
        size: usize,
        /// Maximum.
        max: usize,
    },
    /// The frame is malformed.
    #[error("malformed frame: {0}")]
    Malformed(String),
}

/// Decodes one frame from the front of `buf`, consuming it. `Incomplete` leaves `buf` as is.
pub fn decode(buf: &mut BytesMut, max_frame: usize) -> Result<Frame, FrameError> {
    if buf.len() < 4 {
        return Err(FrameError::Incomplete);
    }
    let total = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if total > max_frame {
        return Err(FrameError::TooLarge {
            size: total,
            max: max_frame,
        });
    }
    if total < 4 {
        return Err(FrameError::Malformed(format!("total size {total} < 4")));
    }
    if buf.len() < 4 + total {
        buf.reserve(4 + total - buf.len());
        return Err(FrameError::Incomplete);
    }
    let mut frame = buf.split_to(4 + total).freeze();
    frame.advance(4);
    let cmd_size = frame.get_u32() as usize;
    if cmd_size > frame.len() {
        return Err(FrameError::Malformed(format!(
            "command size {cmd_size} exceeds the frame ({} bytes)",
            frame.len()
        )));
    }
    let command = BaseCommand::decode(frame.split_to(cmd_size))
        .map_err(|e| FrameError::Malformed(format!("command does not decode: {e}")))?;
    let payload = (!frame.is_empty()).then_some(frame);
    Ok(Frame { command, payload })
}

/// Encodes a simple command frame.
pub fn encode(command: &BaseCommand, out: &mut BytesMut) {
    let len = command.encoded_len();
    out.reserve(8 + len);
    out.put_u32((4 + len) as u32);
    out.put_u32(len as u32);
    command.encode(out).expect("BytesMut grows as needed");
}

/// Encodes a command followed by a stored payload section (MESSAGE).
pub fn encode_with_payload(command: &BaseCommand, payload: &[u8], out: &mut BytesMut) {
    let len = command.encoded_len();
    out.reserve(8 + len + payload.len());
    out.put_u32((4 + len + payload.len()) as u32);
    out.put_u32(len as u32);
    command.encode(out).expect("BytesMut grows as needed");
    out.put_slice(payload);
}

/// What the broker needs from a payload section.
#[derive(Debug, Clone, PartialEq)]
pub struct PayloadInfo {
    /// The producer's metadata.
    pub metadata: MessageMetadata,
    /// Whether a checksum was present (and matched).
    pub checksummed: bool,
    /// Where the body (after the metadata) starts in the payload section.
    pub body_offset: usize,
    /// When the broker stored the entry (its broker entry metadata), for stored entries that
    /// have one: the time TTL, time-based quotas and seek-by-time go by.
    pub broker_timestamp: Option<u64>,
    /// Where the client's payload section starts (after the broker entry metadata).
    pub client_offset: usize,
}

/// Smallest encoding of one message of a batch: its 4-byte metadata size and a
/// SingleMessageMetadata holding only its required field (`payload_size`, 2 bytes).
const MIN_BATCHED_MESSAGE: usize = 6;

/// Largest uncompressed size a compressed batch may claim when counting its messages.
const MAX_UNCOMPRESSED: usize = 128 << 20;

impl PayloadInfo {
    /// The messages the entry holds (of `payload_len` bytes), for permits and counters:
    /// the producer's `num_messages_in_batch`, but never more than the body could hold
    /// (its uncompressed size when compressed). A lying count would otherwise push a
    /// consumer's permits to −2^31 and stall it, then the next consumer after redelivery.
    pub fn messages(&self, payload_len: usize) -> u32 {
        let declared = self.metadata.num_messages_in_batch.unwrap_or(1).max(1) as usize;
        let room = if self.metadata.compression.unwrap_or(0) == 0 {
            payload_len.saturating_sub(self.body_offset)
        } else {
            (self.metadata.uncompressed_size.unwrap_or(0) as usize).min(MAX_UNCOMPRESSED)
        };
        declared.min((room / MIN_BATCHED_MESSAGE).max(1)) as u32
    }
}

/// Checks a payload section's crc32c (when it has one) and parses its metadata.
pub fn inspect_payload(payload: &[u8]) -> Result<PayloadInfo, FrameError> {
    let mut p = payload;
    let mut checksummed = false;
    if p.len() >= 2 && u16::from_be_bytes([p[0], p[1]]) == MAGIC_BROKER_ENTRY_METADATA {
        return Err(FrameError::Malformed(
            "broker entry metadata from a client".into(),
        ));
    }
    if p.len() >= 2 && u16::from_be_bytes([p[0], p[1]]) == MAGIC_CRC32C {
        if p.len() < 6 {
            return Err(FrameError::Malformed("truncated checksum".into()));
        }
        let crc = u32::from_be_bytes([p[2], p[3], p[4], p[5]]);
        p = &p[6..];
        if common::checksum::crc32c(p) != crc {
            return Err(FrameError::Malformed("checksum mismatch".into()));
        }
        checksummed = true;
    }
    if p.len() < 4 {
        return Err(FrameError::Malformed("truncated metadata size".into()));
    }
    let meta_size = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
    if meta_size > p.len() - 4 {
        return Err(FrameError::Malformed(format!(
            "metadata size {meta_size} exceeds the payload"
        )));
    }
    let metadata = MessageMetadata::decode(&p[4..4 + meta_size])
        .map_err(|e| FrameError::Malformed(format!("message metadata does not decode: {e}")))?;
    Ok(PayloadInfo {
        metadata,
        checksummed,
        body_offset: payload.len() - p.len() + 4 + meta_size,
        broker_timestamp: None,
        client_offset: 0,
    })
}

/// Parses a stored entry: the broker entry metadata the broker put in front of it, if any
/// (entries stored before brokers stamped them have none), then the client's payload section
/// as [`inspect_payload`] does. Offsets in the answer are from the start of the entry.
pub fn inspect_entry(entry: &[u8]) -> Result<PayloadInfo, FrameError> {
    let (broker, offset) = split_broker_entry_metadata(entry)?;
    let mut info = inspect_payload(&entry[offset..])?;
    info.body_offset += offset;
    info.client_offset = offset;
    info.broker_timestamp = broker.and_then(|b| b.broker_timestamp);
    Ok(info)
}

/// The broker entry metadata at the start of a stored entry, and where the client's payload
/// section starts (0 when there is none).
pub fn split_broker_entry_metadata(
    entry: &[u8],
) -> Result<(Option<super::pb::BrokerEntryMetadata>, usize), FrameError> {
    if entry.len() < 2 || u16::from_be_bytes([entry[0], entry[1]]) != MAGIC_BROKER_ENTRY_METADATA {
        return Ok((None, 0));
    }
    let Some(size) = entry.get(2..6) else {
        return Err(FrameError::Malformed(
            "truncated broker entry metadata".into(),
        ));
    };
    let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
    let Some(meta) = entry.get(6..6 + size) else {
        return Err(FrameError::Malformed(format!(
            "broker entry metadata size {size} exceeds the entry"
        )));
    };
    let meta = super::pb::BrokerEntryMetadata::decode(meta).map_err(|e| {
        FrameError::Malformed(format!("broker entry metadata does not decode: {e}"))
    })?;
    Ok((Some(meta), 6 + size))
}

/// What the broker stores for a client's payload section: broker entry metadata with the
/// time it received it, then the section as the client sent it (Pulsar's layout, so a
/// consumer that supports broker entry metadata reads it as is).
pub fn stamp_entry(payload: &[u8], broker_timestamp: u64) -> Bytes {
    let meta = super::pb::BrokerEntryMetadata {
        broker_timestamp: Some(broker_timestamp),
        index: None,
    }
    .encode_to_vec();
    let mut out = BytesMut::with_capacity(6 + meta.len() + payload.len());
    out.put_u16(MAGIC_BROKER_ENTRY_METADATA);
    out.put_u32(meta.len() as u32);
    out.put_slice(&meta);
    out.put_slice(payload);
    out.freeze()
}

/// Builds a checksummed payload section (what clients send; for tests and tools).
pub fn build_payload(metadata: &MessageMetadata, body: &[u8]) -> Bytes {
    let meta = metadata.encode_to_vec();
    let mut inner = BytesMut::with_capacity(4 + meta.len() + body.len());
    inner.put_u32(meta.len() as u32);
    inner.put_slice(&meta);
    inner.put_slice(body);
    let mut out = BytesMut::with_capacity(6 + inner.len());
    out.put_u16(MAGIC_CRC32C);
    out.put_u32(common::checksum::crc32c(&inner));
    out.put_slice(&inner);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::pb::{CommandSend, base_command::Type};
    use super::*;

    fn send(seq: u64) -> BaseCommand {
        BaseCommand {
            r#type: Type::Send as i32,
            send: Some(CommandSend {
                producer_id: 0,
                sequence_id: seq,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn meta(seq: u64) -> MessageMetadata {
        MessageMetadata {
            producer_name: "p".into(),
            sequence_id: seq,
            publish_time: 1,
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_with_payload_and_byte_layout() {
        let payload = build_payload(&meta(0), b"hello");
        let mut buf = BytesMut::new();
        encode_with_payload(&send(0), &payload, &mut buf);
        // BaseCommand.type = SEND (6), then field 6 with producer_id=0 and sequence_id=0:
        // required fields are encoded even when zero.
        assert_eq!(
            &buf[8..16],
            &[0x08, 0x06, 0x32, 0x04, 0x08, 0x00, 0x10, 0x00]
        );
        assert_eq!(&buf[16..18], &[0x0e, 0x01]);
        let frame = decode(&mut buf, 1 << 20).unwrap();
        assert!(buf.is_empty());
        assert_eq!(frame.command, send(0));
        let p = frame.payload.unwrap();
        assert_eq!(p, payload);
        let info = inspect_payload(&p).unwrap();
        assert!(info.checksummed);
        assert_eq!(info.metadata.sequence_id, 0);
    }

    #[test]
    fn incomplete_and_oversized_frames() {
        let mut buf = BytesMut::new();
        encode(&send(1), &mut buf);
        let mut partial = BytesMut::from(&buf[..buf.len() - 1]);
        assert_eq!(decode(&mut partial, 1 << 20), Err(FrameError::Incomplete));
        let mut huge = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            decode(&mut huge, 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn corrupt_payload_checksum_is_detected() {
        let mut payload = BytesMut::from(&build_payload(&meta(3), b"body")[..]);
        let last = payload.len() - 1;
        payload[last] ^= 1;
        assert!(inspect_payload(&payload).is_err());
    }

    proptest! {
        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = decode(&mut buf, 1 << 16);
            let _ = inspect_payload(&bytes);
        }

        /// Any truncation of a valid frame is `Incomplete`, never a wrong frame.
        #[test]
        fn truncation_is_incomplete(cut in 0usize..60) {
            let payload = build_payload(&meta(7), b"some body");
            let mut buf = BytesMut::new();
            encode_with_payload(&send(7), &payload, &mut buf);
            let cut = cut.min(buf.len() - 1);
            let mut partial = BytesMut::from(&buf[..cut]);
            prop_assert_eq!(decode(&mut partial, 1 << 20), Err(FrameError::Incomplete));
        }
    }

    /// Review finding 17: a batch's claimed message count is clamped to what its body holds.
    #[test]
    fn batch_counts_are_clamped_to_the_body() {
        let meta = |n: i32, compression: Option<i32>, uncompressed: Option<u32>| MessageMetadata {
            producer_name: "p".into(),
            num_messages_in_batch: Some(n),
            compression,
            uncompressed_size: uncompressed,
            ..Default::default()
        };
        let p = build_payload(&meta(i32::MAX, None, None), &[0u8; 60]);
        let info = inspect_payload(&p).unwrap();
        assert_eq!(
            info.messages(p.len()),
            10,
            "60 bytes hold 10 messages at most"
        );
        let p = build_payload(&meta(3, None, None), &[0u8; 60]);
        assert_eq!(inspect_payload(&p).unwrap().messages(p.len()), 3);
        let p = build_payload(&meta(-7, None, None), b"");
        assert_eq!(inspect_payload(&p).unwrap().messages(p.len()), 1);
        // Compressed: by the claimed uncompressed size, itself capped.
        let p = build_payload(&meta(1000, Some(2), Some(600)), &[0u8; 8]);
        assert_eq!(inspect_payload(&p).unwrap().messages(p.len()), 100);
        let p = build_payload(&meta(i32::MAX, Some(2), Some(u32::MAX)), &[0u8; 8]);
        assert_eq!(
            inspect_payload(&p).unwrap().messages(p.len()) as usize,
            MAX_UNCOMPRESSED / MIN_BATCHED_MESSAGE
        );
    }

    /// Finding 12: a stored entry carries the broker's time in front of the client's section;
    /// entries stored before (no prefix) still parse; a client may not send one.
    #[test]
    fn stored_entries_carry_the_broker_timestamp() {
        let p = build_payload(
            &MessageMetadata {
                producer_name: "p".into(),
                publish_time: 5,
                ..Default::default()
            },
            b"body",
        );
        let stored = stamp_entry(&p, 1_700_000_000_000);
        assert!(inspect_payload(&stored).is_err(), "not from a client");
        let info = inspect_entry(&stored).unwrap();
        assert_eq!(info.broker_timestamp, Some(1_700_000_000_000));
        assert_eq!(info.metadata.publish_time, 5);
        assert_eq!(&stored[info.body_offset..], b"body");
        assert_eq!(&stored[info.client_offset..], &p[..]);
        let old = inspect_entry(&p).unwrap();
        assert_eq!((old.broker_timestamp, old.client_offset), (None, 0));
        assert!(inspect_entry(&stored[..8]).is_err());
    }
}
