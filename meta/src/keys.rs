//! Every metadata key path, built in one place so the layout in docs/metadata.md has a
//! single implementation.

use common::{BookieId, LedgerId};

/// Default cluster name, used when none is configured.
pub const DEFAULT_CLUSTER: &str = "standalone";

/// Builds the keys of one cluster under its root (default `/magnetar/<cluster>/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    root: String,
}

impl KeyLayout {
    /// Keys under `/magnetar/<cluster>/`.
    pub fn for_cluster(cluster: &str) -> Self {
        Self::with_root(format!("/magnetar/{cluster}/"))
    }

    /// Keys under an explicit root; a trailing `/` is added if missing.
    pub fn with_root(root: impl Into<String>) -> Self {
        let mut root = root.into();
        if !root.ends_with('/') {
            root.push('/');
        }
        KeyLayout { root }
    }

    /// The root, ending in `/`.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// `cluster`: the cluster's instance id.
    pub fn cluster(&self) -> String {
        format!("{}cluster", self.root)
    }

    /// `ledgers/ids`: the ledger-id counter.
    pub fn ledger_ids(&self) -> String {
        format!("{}ledgers/ids", self.root)
    }

    /// Prefix of every ledger's metadata key (the id counter shares it; it does not parse
    /// as an id).
    pub fn ledgers_prefix(&self) -> String {
        format!("{}ledgers/", self.root)
    }

    /// `ledgers/<id>`: one ledger's metadata. Ids are zero-padded to 20 digits so keys sort
    /// in id order.
    pub fn ledger(&self, id: LedgerId) -> String {
        format!("{}{:020}", self.ledgers_prefix(), id.0)
    }

    /// Parses the id back out of a key from [`KeyLayout::ledger`].
    pub fn ledger_id_of(&self, key: &str) -> Option<LedgerId> {
        let digits = key.strip_prefix(&self.ledgers_prefix())?;
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(LedgerId)
    }

    /// Prefix of writable bookies' registrations.
    pub fn bookies_available_prefix(&self) -> String {
        format!("{}bookies/available/", self.root)
    }

    /// Prefix of read-only bookies' registrations.
    pub fn bookies_readonly_prefix(&self) -> String {
        format!("{}bookies/readonly/", self.root)
    }

    /// `bookies/available/<id>` (lease-bound).
    pub fn bookie_available(&self, id: &BookieId) -> String {
        format!("{}{id}", self.bookies_available_prefix())
    }

    /// `bookies/readonly/<id>` (lease-bound).
    pub fn bookie_readonly(&self, id: &BookieId) -> String {
        format!("{}{id}", self.bookies_readonly_prefix())
    }

    /// `managed-ledgers/<topic>`: a topic's ledger list. The topic name is used as is
    /// (`persistent://tenant/ns/topic` keeps its slashes; keys are opaque to etcd).
    pub fn managed_ledger(&self, topic: &str) -> String {
        format!("{}managed-ledgers/{topic}", self.root)
    }

    /// `schemas/<tenant>/<namespace>/<topic>` for `persistent://tenant/namespace/topic`
    /// (the caller strips a partition suffix: partitions share their topic's schema).
    pub fn schema(&self, topic: &str) -> String {
        let path = topic.split_once("://").map_or(topic, |(_, p)| p);
        format!("{}schemas/{path}", self.root)
    }

    /// `topic-policies/<tenant>/<namespace>/<topic>` for `persistent://tenant/namespace/topic`.
    pub fn topic_policies(&self, topic: &str) -> String {
        let path = topic.split_once("://").map_or(topic, |(_, p)| p);
        format!("{}topic-policies/{path}", self.root)
    }

    /// `managed-ledgers/<topic>/compaction`.
    pub fn compaction(&self, topic: &str) -> String {
        format!("{}managed-ledgers/{topic}/compaction", self.root)
    }

    /// `managed-ledgers/<topic>/cursors/<subscription>`.
    pub fn cursor(&self, topic: &str, subscription: &str) -> String {
        format!(
            "{}managed-ledgers/{topic}/cursors/{subscription}",
            self.root
        )
    }

    /// `managed-ledgers/<topic>/dedup`: the topic's de-duplication snapshot.
    pub fn dedup(&self, topic: &str) -> String {
        format!("{}managed-ledgers/{topic}/dedup", self.root)
    }

    /// Prefix of a topic's cursors.
    pub fn cursors_prefix(&self, topic: &str) -> String {
        format!("{}managed-ledgers/{topic}/cursors/", self.root)
    }

    /// Prefix of broker registrations.
    pub fn brokers_prefix(&self) -> String {
        format!("{}brokers/", self.root)
    }

    /// `brokers/<id>` (lease-bound): a live broker and its load.
    pub fn broker(&self, id: &str) -> String {
        format!("{}{id}", self.brokers_prefix())
    }

    /// `ownership/<tenant>/<namespace>/<bundle>` (bound to the owner's lease).
    pub fn ownership(&self, namespace: &str, bundle: &str) -> String {
        format!("{}ownership/{namespace}/{bundle}", self.root)
    }

    /// Prefix of tenants.
    pub fn tenants_prefix(&self) -> String {
        format!("{}tenants/", self.root)
    }

    /// `tenants/<tenant>`.
    pub fn tenant(&self, tenant: &str) -> String {
        format!("{}{tenant}", self.tenants_prefix())
    }

    /// Prefix of every namespace record (`namespaces/`).
    pub fn all_namespaces_prefix(&self) -> String {
        format!("{}namespaces/", self.root)
    }

    /// Prefix of a tenant's namespaces (`namespaces/<tenant>/`).
    pub fn namespaces_prefix(&self, tenant: &str) -> String {
        format!("{}namespaces/{tenant}/", self.root)
    }

    /// `namespaces/<tenant>/<namespace>` (`namespace` is `tenant/name`).
    pub fn namespace(&self, namespace: &str) -> String {
        format!("{}namespaces/{namespace}", self.root)
    }

    /// Prefix of a namespace's partitioned topics (`namespace` is `tenant/name`).
    pub fn partitioned_topics_prefix(&self, namespace: &str) -> String {
        format!("{}partitioned-topics/{namespace}/", self.root)
    }

    /// `partitioned-topics/<tenant>/<namespace>/<topic>`.
    pub fn partitioned_topic(&self, namespace: &str, local: &str) -> String {
        format!("{}{local}", self.partitioned_topics_prefix(namespace))
    }

    /// Prefix of the managed ledgers (and their cursors) of a namespace's persistent topics.
    pub fn namespace_topics_prefix(&self, namespace: &str) -> String {
        format!("{}managed-ledgers/persistent://{namespace}/", self.root)
    }

    /// Prefix of bookie cookies.
    pub fn cookies_prefix(&self) -> String {
        format!("{}bookies/cookies/", self.root)
    }

    /// `bookies/cookies/<id>`.
    pub fn cookie(&self, id: &BookieId) -> String {
        format!("{}{id}", self.cookies_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = KeyLayout::for_cluster("c1");
        assert_eq!(
            k.ledger(LedgerId(42)),
            "/magnetar/c1/ledgers/00000000000000000042"
        );
        assert_eq!(k.ledger_id_of(&k.ledger(LedgerId(42))), Some(LedgerId(42)));
        assert_eq!(k.ledger_id_of(&k.ledger_ids()), None);
        let b = BookieId::new("127.0.0.1:3181").unwrap();
        assert_eq!(
            k.bookie_available(&b),
            "/magnetar/c1/bookies/available/127.0.0.1:3181"
        );
        assert_eq!(KeyLayout::with_root("/x").root(), "/x/");
    }
}
