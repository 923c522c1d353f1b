//! GET_TOPICS_OF_NAMESPACE: every persistent topic of a namespace — the topics created so far
//! and every partition of its partitioned topics — and (mode NON_PERSISTENT or ALL) the
//! non-persistent topics in use on this broker, for regex and multi-topic consumers. The
//! list is not filtered by the client's pattern (`filtered = false`: the client filters);
//! `topics_hash` is the CRC32C of the sorted names, and a client that sends the hash of the
//! current list gets `changed = false` and no names.

use std::collections::BTreeSet;

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::cmd;
use crate::protocol::pb::base_command::Type;
use crate::protocol::pb::command_get_topics_of_namespace::Mode;
use crate::protocol::pb::{
    BaseCommand, CommandGetTopicsOfNamespace, CommandGetTopicsOfNamespaceResponse, ServerError,
};

/// The topics of namespace `ns` (`tenant/name`), sorted.
pub async fn topics_of(conn: &Connection, ns: &str) -> Result<Vec<String>> {
    let n = &conn.service.namespaces;
    let mut all: BTreeSet<String> = n
        .topics(ns)
        .await?
        .into_iter()
        .map(|t| format!("persistent://{ns}/{t}"))
        .collect();
    for p in n.partitioned_topics(ns).await? {
        if let Some((info, _)) = n.partitioned(ns, &p).await? {
            for i in 0..info.partitions {
                all.insert(format!("persistent://{ns}/{p}-partition-{i}"));
            }
        }
    }
    Ok(all.into_iter().collect())
}

/// The hash Pulsar's clients compare: CRC32C over the sorted names.
pub fn topics_hash(topics: &[String]) -> String {
    let crc = topics
        .iter()
        .fold(0u32, |crc, t| crc32c::crc32c_append(crc, t.as_bytes()));
    crc.to_string()
}

/// Handles GET_TOPICS_OF_NAMESPACE.
pub async fn handle(conn: &mut Connection, c: CommandGetTopicsOfNamespace) -> Result<()> {
    let ns = c.namespace.trim_matches('/').to_owned();
    let valid = matches!(ns.split('/').collect::<Vec<_>>()[..], [t, n] if crate::service::is_valid_entity(t) && crate::service::is_valid_entity(n));
    if !valid {
        let msg = format!("invalid namespace {:?}", c.namespace);
        return conn
            .send(cmd::error(c.request_id, ServerError::MetadataError, msg))
            .await;
    }
    let mode = Mode::try_from(c.mode.unwrap_or(0)).unwrap_or(Mode::Persistent);
    let mut topics = match mode {
        Mode::NonPersistent => Vec::new(),
        Mode::Persistent | Mode::All => match topics_of(conn, &ns).await {
            Ok(t) => t,
            Err(e) => {
                return conn
                    .send(cmd::error(c.request_id, e.server_error(), e.to_string()))
                    .await;
            }
        },
    };
    if mode != Mode::Persistent {
        topics.extend(conn.service.non_persistent.names_in(&ns));
        topics.sort();
    }
    let hash = topics_hash(&topics);
    let changed = c.topics_hash.as_deref() != Some(hash.as_str());
    conn.send(BaseCommand {
        r#type: Type::GetTopicsOfNamespaceResponse as i32,
        get_topics_of_namespace_response: Some(CommandGetTopicsOfNamespaceResponse {
            request_id: c.request_id,
            topics: if changed { topics } else { Vec::new() },
            filtered: Some(false),
            topics_hash: Some(hash),
            changed: Some(changed),
        }),
        ..Default::default()
    })
    .await
}
