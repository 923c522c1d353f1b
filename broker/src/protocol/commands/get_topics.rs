//! GET_TOPICS_OF_NAMESPACE: every persistent topic of a namespace — the topics created so far
//! and every partition of its partitioned topics — and (mode NON_PERSISTENT or ALL) the
//! non-persistent topics in use on this broker, for regex and multi-topic consumers. As in
//! Pulsar, a `topics_pattern` is applied here (`filtered = true`) when it is no longer than
//! `subscription_pattern_max_length` and compiles; otherwise the whole list goes back
//! (`filtered = false`) and the client filters. `topics_hash` is Pulsar's: CRC32C over the
//! sorted names joined by commas, printed as Guava prints a hash code; a client that sends
//! the hash of the current list gets `changed = false` and no names.

use std::collections::BTreeSet;

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::cmd;
use crate::protocol::pb::base_command::Type;
use crate::protocol::pb::command_get_topics_of_namespace::Mode;
use crate::protocol::pb::{
    BaseCommand, CommandGetTopicsOfNamespace, CommandGetTopicsOfNamespaceResponse, ServerError,
};
use crate::service::BrokerService;

/// The topics of namespace `ns` (`tenant/name`), sorted.
pub async fn topics_of(service: &BrokerService, ns: &str) -> Result<Vec<String>> {
    let n = &service.namespaces;
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

/// The hash Pulsar's clients compare (`TopicList.calculateHash`): CRC32C over the sorted
/// names with a comma between two, as lower-case hex of its little-endian bytes (how Guava
/// prints a 32-bit hash code), so that a Java client computing it itself agrees.
pub fn topics_hash(topics: &[String]) -> String {
    let mut sorted: Vec<&str> = topics.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    let mut crc = 0u32;
    for (i, t) in sorted.iter().enumerate() {
        if i > 0 {
            crc = crc32c::crc32c_append(crc, b",");
        }
        crc = crc32c::crc32c_append(crc, t.as_bytes());
    }
    crc.to_le_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A regex consumer's topics pattern, as Pulsar's broker applies it: the domain
/// (`persistent://`, `non-persistent://`) is taken off the pattern and off each topic, a
/// partition's `-partition-N` suffix is taken off the topic, and the rest must match whole.
#[derive(Debug, Clone)]
pub struct TopicsPattern(regex::Regex);

impl TopicsPattern {
    /// Compiles `pattern` (Java/RE2 syntax; look-around and back-references are not
    /// supported). The error says why it was refused.
    pub fn new(pattern: &str, max_length: usize) -> std::result::Result<Self, String> {
        if pattern.len() > max_length {
            return Err(format!(
                "pattern longer than the maximum of {max_length} characters \
                 (subscription_pattern_max_length)"
            ));
        }
        let body = match pattern.split_once("://") {
            None => pattern.to_owned(),
            Some((prefix, rest)) => {
                let lead = ["non-persistent", "persistent"]
                    .iter()
                    .find_map(|d| prefix.strip_suffix(d))
                    .ok_or_else(|| format!("unknown topic domain {prefix:?} in the pattern"))?;
                format!("{lead}{rest}")
            }
        };
        regex::Regex::new(&format!("^(?:{body})$"))
            .map(TopicsPattern)
            .map_err(|e| format!("invalid topics pattern: {e}"))
    }

    /// Whether `topic` (a full name, a partition's included) matches.
    pub fn matches(&self, topic: &str) -> bool {
        let path = topic.split_once("://").map_or(topic, |(_, p)| p);
        let base = match path.rsplit_once("-partition-") {
            Some((base, n)) if n.parse::<u32>().is_ok() => base,
            _ => path,
        };
        self.0.is_match(base)
    }

    /// The topics of `topics` that match, in their order.
    pub fn filter(&self, topics: Vec<String>) -> Vec<String> {
        topics.into_iter().filter(|t| self.matches(t)).collect()
    }
}

/// `tenant/name` from a command's namespace field, if it is a valid one.
pub fn namespace_of(field: &str) -> Option<String> {
    let ns = field.trim_matches('/');
    let valid = matches!(ns.split('/').collect::<Vec<_>>()[..], [t, n] if crate::service::is_valid_entity(t) && crate::service::is_valid_entity(n));
    valid.then(|| ns.to_owned())
}

/// Handles GET_TOPICS_OF_NAMESPACE.
pub async fn handle(conn: &mut Connection, c: CommandGetTopicsOfNamespace) -> Result<()> {
    let Some(ns) = namespace_of(&c.namespace) else {
        let msg = format!("invalid namespace {:?}", c.namespace);
        return conn
            .send(cmd::error(c.request_id, ServerError::MetadataError, msg))
            .await;
    };
    let mode = Mode::try_from(c.mode.unwrap_or(0)).unwrap_or(Mode::Persistent);
    let mut topics = match mode {
        Mode::NonPersistent => Vec::new(),
        Mode::Persistent | Mode::All => match topics_of(&conn.service, &ns).await {
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
    let pattern = c
        .topics_pattern
        .as_deref()
        .map(|p| TopicsPattern::new(p, conn.service.subscription_pattern_max_length));
    let filtered = match pattern {
        Some(Ok(p)) => {
            topics = p.filter(topics);
            true
        }
        // The client filters what it gets (Pulsar does the same past the length limit).
        Some(Err(_)) | None => false,
    };
    let hash = topics_hash(&topics);
    let changed = c.topics_hash.as_deref() != Some(hash.as_str());
    conn.send(BaseCommand {
        r#type: Type::GetTopicsOfNamespaceResponse as i32,
        get_topics_of_namespace_response: Some(CommandGetTopicsOfNamespaceResponse {
            request_id: c.request_id,
            topics: if changed { topics } else { Vec::new() },
            filtered: Some(filtered),
            topics_hash: Some(hash),
            changed: Some(changed),
        }),
        ..Default::default()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_pulsars() {
        // CRC32C("a,b") = 0x...; printed little-endian, as Guava's HashCode.toString.
        let crc = crc32c::crc32c(b"persistent://t/n/a,persistent://t/n/b");
        let expected: String = crc
            .to_le_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let names = [
            "persistent://t/n/b".to_owned(),
            "persistent://t/n/a".to_owned(),
        ];
        assert_eq!(topics_hash(&names), expected, "sorted, comma-separated");
        assert_eq!(topics_hash(&[]), "00000000");
        assert_eq!(
            topics_hash(&["x".to_owned()]),
            crc32c::crc32c(b"x")
                .to_le_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
    }

    #[test]
    fn pattern_matches_as_pulsar() {
        let p = TopicsPattern::new("persistent://public/default/orders-.*", 100).unwrap();
        assert!(p.matches("persistent://public/default/orders-eu"));
        assert!(p.matches("persistent://public/default/orders-eu-partition-3"));
        assert!(!p.matches("persistent://public/default/payments"));
        assert!(
            !p.matches("persistent://public/other/orders-eu"),
            "whole match"
        );
        // the domain is dropped from both sides
        assert!(p.matches("non-persistent://public/default/orders-x"));
        let bare = TopicsPattern::new("public/default/a.", 100).unwrap();
        assert!(bare.matches("persistent://public/default/ab"));
        assert!(!bare.matches("persistent://public/default/abc"));
        // a leading anchor before the domain is kept
        let anchored = TopicsPattern::new("^persistent://public/default/x", 100).unwrap();
        assert!(anchored.matches("persistent://public/default/x"));
        // refused: too long, bad syntax, unknown domain
        assert!(TopicsPattern::new("persistent://public/default/.*", 10).is_err());
        assert!(TopicsPattern::new("persistent://public/default/(", 100).is_err());
        assert!(TopicsPattern::new("http://public/default/x", 100).is_err());
        // a suffix that is not a partition number stays part of the name
        let exact = TopicsPattern::new("public/default/t", 100).unwrap();
        assert!(!exact.matches("persistent://public/default/t-partition-x"));
    }
}
