//! The schema registry: each topic's schema versions in the metadata store
//! (`schemas/<tenant>/<namespace>/<topic>`, shared by a partitioned topic's partitions), as
//! Pulsar keeps them. A producer with a schema gets the version of an identical one, or a new
//! version when the namespace's compatibility strategy ([`compat`]) accepts it, else
//! `IncompatibleSchema`; a consumer's schema must be one of them or compatible; clients fetch
//! a version to decode what it wrote (GET_SCHEMA). Versions travel as 8 bytes, big-endian
//! (Pulsar's LongSchemaVersion).

pub mod compat;

use std::sync::Arc;

use bytes::Bytes;
use meta::records::{decode, encode};
use meta::{KeyLayout, MetaError, MetadataStore, PutCondition};
use proto::meta::{SchemaHistory, StoredSchema};

use self::compat::Strategy;
use crate::error::{BrokerError, Result};
use crate::protocol::pb;

/// The strategy when neither the namespace nor the broker sets one (Pulsar's default).
pub const DEFAULT_STRATEGY: Strategy = Strategy::Full;

/// Largest schema definition accepted. Every version of a topic's schema is kept in one
/// metadata record, which etcd caps at 1.5 MiB per request.
pub const MAX_SCHEMA_SIZE: usize = 512 * 1024;

/// Largest encoded history (every version of a topic's schema) the registry writes.
pub const MAX_HISTORY_SIZE: usize = 1024 * 1024;

/// Most versions a topic's schema may have; with a transitive strategy a new one is checked
/// against each.
pub const MAX_VERSIONS: usize = 1000;

/// Refuses a definition over [`MAX_SCHEMA_SIZE`] before anything parses it.
fn check_size(data: &[u8]) -> Result<()> {
    if data.len() > MAX_SCHEMA_SIZE {
        return Err(BrokerError::InvalidSchema(format!(
            "the schema definition has {} bytes, more than the limit of {MAX_SCHEMA_SIZE}",
            data.len()
        )));
    }
    Ok(())
}

/// A version on the wire.
pub fn version_bytes(v: u64) -> Bytes {
    Bytes::copy_from_slice(&v.to_be_bytes())
}

/// A version from the wire (`None` when it is not 8 bytes).
pub fn version_of(b: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(b).ok().map(u64::from_be_bytes)
}

/// The topic whose schema `topic` uses: a partition uses its partitioned topic's.
pub fn schema_topic(topic: &str) -> &str {
    match topic.rsplit_once("-partition-") {
        Some((base, i)) if i.parse::<u32>().is_ok() => base,
        _ => topic,
    }
}

/// Whether a client's schema is a schema at all (Pulsar's NONE / BYTES is "no schema").
pub fn is_schema(s: &pb::Schema) -> bool {
    s.r#type != pb::schema::Type::None as i32 && s.r#type != pb::schema::Type::AutoConsume as i32
}

/// A wire schema's properties as a map.
pub fn properties(s: &pb::Schema) -> std::collections::HashMap<String, String> {
    s.properties
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}

/// A topic's schema versions.
pub struct Registry {
    store: Arc<dyn MetadataStore>,
    keys: KeyLayout,
}

impl Registry {
    /// Over the cluster's store.
    pub fn new(store: Arc<dyn MetadataStore>, keys: KeyLayout) -> Self {
        Registry { store, keys }
    }

    async fn history(&self, topic: &str) -> Result<(SchemaHistory, Option<meta::Version>)> {
        let key = self.keys.schema(schema_topic(topic));
        Ok(match self.store.get(&key).await? {
            Some(kv) => (decode(&key, &kv.value)?, Some(kv.version)),
            None => (SchemaHistory::default(), None),
        })
    }

    /// Version `version` (`None`: the latest) of `topic`'s schema.
    pub async fn get(&self, topic: &str, version: Option<u64>) -> Result<Option<StoredSchema>> {
        let (h, _) = self.history(topic).await?;
        Ok(match version {
            Some(v) => h.versions.into_iter().find(|s| s.version == v),
            None => h.versions.into_iter().last(),
        })
    }

    /// Every version, oldest first.
    pub async fn all(&self, topic: &str) -> Result<Vec<StoredSchema>> {
        Ok(self.history(topic).await?.0.versions)
    }

    /// The version of `schema` for a producer: an identical stored one's, or a new one if
    /// `strategy` accepts it after the existing versions (CAS; re-read on a conflict).
    pub async fn add_or_get(
        &self,
        topic: &str,
        schema_type: i32,
        data: &[u8],
        properties: std::collections::HashMap<String, String>,
        strategy: Strategy,
    ) -> Result<u64> {
        check_size(data)?;
        let key = self.keys.schema(schema_topic(topic));
        for _ in 0..5 {
            let (mut h, version) = self.history(topic).await?;
            if let Some(same) = find_same(&h, schema_type, data) {
                return Ok(same);
            }
            if h.versions.len() >= MAX_VERSIONS {
                return Err(BrokerError::InvalidSchema(format!(
                    "{topic} has {MAX_VERSIONS} schema versions already; delete its schema to start again"
                )));
            }
            if compat::is_avro_like(schema_type) {
                compat::parse(data).map_err(BrokerError::IncompatibleSchema)?;
            }
            check_against(&h, strategy, schema_type, data)?;
            let next = h.versions.last().map_or(0, |s| s.version + 1);
            h.versions.push(StoredSchema {
                version: next,
                schema_type,
                data: Bytes::copy_from_slice(data),
                properties: properties.clone(),
                timestamp_ms: crate::managed_ledger::now_ms(),
            });
            let cond = version.map_or(PutCondition::Absent, PutCondition::Version);
            let record = encode(&mut h);
            if record.len() > MAX_HISTORY_SIZE {
                return Err(BrokerError::InvalidSchema(format!(
                    "the schema history of {topic} would take {} bytes, more than the limit of {MAX_HISTORY_SIZE}; delete its schema to start again",
                    record.len()
                )));
            }
            match meta::cas::put_checked(self.store.as_ref(), &key, record, cond).await {
                Ok(_) => {
                    tracing::info!(topic, version = next, "schema version registered");
                    return Ok(next);
                }
                Err(MetaError::BadVersion { .. } | MetaError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BrokerError::Protocol(format!(
            "the schema of {topic} kept changing; try again"
        )))
    }

    /// A consumer's schema: fine if the topic has none yet (it is registered), or it is one
    /// of the versions, or `strategy` lets it read the latest.
    pub async fn check_consumer(
        &self,
        topic: &str,
        schema_type: i32,
        data: &[u8],
        properties: std::collections::HashMap<String, String>,
        strategy: Strategy,
    ) -> Result<()> {
        check_size(data)?;
        let (h, _) = self.history(topic).await?;
        if h.versions.is_empty() {
            self.add_or_get(topic, schema_type, data, properties, strategy)
                .await?;
            return Ok(());
        }
        if find_same(&h, schema_type, data).is_some() {
            return Ok(());
        }
        check_against(&h, strategy, schema_type, data)
    }

    /// Deletes every version (`schemas delete`).
    pub async fn delete(&self, topic: &str) -> Result<()> {
        Ok(self
            .store
            .delete(&self.keys.schema(schema_topic(topic)), None)
            .await?)
    }
}

fn find_same(h: &SchemaHistory, schema_type: i32, data: &[u8]) -> Option<u64> {
    h.versions
        .iter()
        .find(|s| s.schema_type == schema_type && same_definition(schema_type, &s.data, data))
        .map(|s| s.version)
}

/// Equal definitions: byte for byte, or (AVRO, JSON) the same JSON value.
fn same_definition(schema_type: i32, a: &[u8], b: &[u8]) -> bool {
    a == b
        || compat::is_avro_like(schema_type)
            && matches!((compat::parse(a), compat::parse(b)), (Ok(x), Ok(y)) if x == y)
}

fn check_against(
    h: &SchemaHistory,
    strategy: Strategy,
    schema_type: i32,
    data: &[u8],
) -> Result<()> {
    let against: Vec<&StoredSchema> = if strategy.transitive() {
        h.versions.iter().collect()
    } else {
        h.versions.last().into_iter().collect()
    };
    for old in against {
        compat::check(strategy, (old.schema_type, &old.data), (schema_type, data)).map_err(
            |e| {
                BrokerError::IncompatibleSchema(format!(
                    "incompatible with schema version {} under {}: {e}",
                    old.version,
                    strategy.name()
                ))
            },
        )?;
    }
    Ok(())
}

/// The wire form of a stored version.
pub fn to_wire(s: &StoredSchema, name: &str) -> pb::Schema {
    pb::Schema {
        name: name.to_owned(),
        schema_data: s.data.clone(),
        r#type: s.schema_type,
        properties: s
            .properties
            .iter()
            .map(|(k, v)| pb::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_partitions() {
        assert_eq!(version_of(&version_bytes(7)), Some(7));
        assert_eq!(version_of(b"xyz"), None);
        assert_eq!(version_bytes(0).as_ref(), &[0u8; 8]);
        assert_eq!(
            schema_topic("persistent://a/b/t-partition-3"),
            "persistent://a/b/t"
        );
        assert_eq!(
            schema_topic("persistent://a/b/t-partition-x"),
            "persistent://a/b/t-partition-x"
        );
        assert!(same_definition(
            4,
            br#"{"a": 1, "b": 2}"#,
            br#"{"b":2,"a":1}"#
        ));
        assert!(!same_definition(1, b"a", b"b"));
    }
}
