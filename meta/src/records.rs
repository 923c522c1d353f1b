//! Encoding of the typed records stored as values (protobuf, `proto::meta`). Every record
//! carries a format version; a record from a newer Magnetar is refused, never misread.

use bytes::Bytes;
use prost::Message;
use proto::meta::{
    BookieServiceInfo, BrokerInfo, ClusterInfo, CompactionInfo, Cookie, CursorInfo, DedupSnapshot,
    FORMAT_VERSION, LedgerIdCounter, LedgerMetadata, ManagedLedgerInfo, NamespacePolicies,
    OwnershipInfo, PartitionedTopicInfo, SchemaHistory, TenantInfo, TopicPolicies,
};

use crate::error::{MetaError, Result};

/// A protobuf record with a `format_version` field.
pub trait Record: Message + Default {
    /// The version stored in the record.
    fn format_version(&self) -> u32;
    /// Sets the version before writing.
    fn set_format_version(&mut self, version: u32);
}

macro_rules! record {
    ($($t:ty),*) => {$(
        impl Record for $t {
            fn format_version(&self) -> u32 {
                self.format_version
            }
            fn set_format_version(&mut self, version: u32) {
                self.format_version = version;
            }
        }
    )*};
}
record!(
    LedgerMetadata,
    LedgerIdCounter,
    ClusterInfo,
    BookieServiceInfo,
    Cookie,
    ManagedLedgerInfo,
    CursorInfo,
    BrokerInfo,
    OwnershipInfo,
    TenantInfo,
    NamespacePolicies,
    PartitionedTopicInfo,
    DedupSnapshot,
    SchemaHistory,
    TopicPolicies,
    CompactionInfo
);

/// Serialises a record stamped with this build's format version.
pub fn encode<R: Record>(record: &mut R) -> Bytes {
    record.set_format_version(FORMAT_VERSION);
    Bytes::from(record.encode_to_vec())
}

/// Parses the record stored at `key`, refusing unknown versions.
pub fn decode<R: Record>(key: &str, value: &[u8]) -> Result<R> {
    let record = R::decode(value).map_err(|e| MetaError::Corrupt {
        location: key.to_owned(),
        reason: format!("value does not decode: {e}"),
    })?;
    match record.format_version() {
        0 => Err(MetaError::Corrupt {
            location: key.to_owned(),
            reason: "record has no format version".into(),
        }),
        v if v > FORMAT_VERSION => Err(MetaError::UnsupportedVersion {
            key: key.to_owned(),
            found: v,
            supported: FORMAT_VERSION,
        }),
        _ => Ok(record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_checks() {
        let mut c = Cookie {
            bookie_id: "b1".into(),
            instance_id: "i".into(),
            ..Default::default()
        };
        let bytes = encode(&mut c);
        let back: Cookie = decode("k", &bytes).unwrap();
        assert_eq!(back, c);

        c.format_version = FORMAT_VERSION + 1;
        let newer = c.encode_to_vec();
        assert!(matches!(
            decode::<Cookie>("k", &newer),
            Err(MetaError::UnsupportedVersion { found, .. }) if found == FORMAT_VERSION + 1
        ));
        assert!(matches!(
            decode::<Cookie>("k", b"\xff\xff\xff"),
            Err(MetaError::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<Cookie>("k", b""),
            Err(MetaError::Corrupt { .. })
        ));
    }
}
