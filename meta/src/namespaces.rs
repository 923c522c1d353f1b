//! Tenants, namespaces and partitioned topics: typed records (`tenants/<t>`,
//! `namespaces/<t>/<ns>`, `partitioned-topics/<t>/<ns>/<topic>`), each written by
//! compare-and-set on its version. Names are checked by the caller (the broker's admin
//! layer); this module only stores them. Deleting a tenant or namespace that still holds
//! something is refused by the caller too, which knows what "holds" means.

use std::sync::Arc;

use proto::meta::{NamespacePolicies, PartitionedTopicInfo, TenantInfo, TopicPolicies};

use crate::cas::put_checked;
use crate::records::{Record, decode, encode};
use crate::{KeyLayout, MetaError, MetadataStore, PutCondition, Result, Version, range_all};

/// The tenant and namespace every cluster has from its first start, as in Pulsar.
pub const DEFAULT_NAMESPACE: &str = "public/default";

/// Typed access to tenants, namespaces and partitioned topics.
#[derive(Clone)]
pub struct Namespaces {
    store: Arc<dyn MetadataStore>,
    keys: KeyLayout,
}

impl std::fmt::Debug for Namespaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespaces")
            .field("root", &self.keys.root())
            .finish()
    }
}

impl Namespaces {
    /// Over `store`, keys under `keys`.
    pub fn new(store: Arc<dyn MetadataStore>, keys: KeyLayout) -> Self {
        Namespaces { store, keys }
    }

    async fn get<R: Record>(&self, key: &str) -> Result<Option<(R, Version)>> {
        match self.store.get(key).await? {
            Some(kv) => Ok(Some((decode(key, &kv.value)?, kv.version))),
            None => Ok(None),
        }
    }

    async fn create<R: Record>(&self, key: &str, mut record: R) -> Result<()> {
        put_checked(
            self.store.as_ref(),
            key,
            encode(&mut record),
            PutCondition::Absent,
        )
        .await
        .map(|_| ())
    }

    async fn replace<R: Record>(&self, key: &str, mut record: R, version: Version) -> Result<()> {
        put_checked(
            self.store.as_ref(),
            key,
            encode(&mut record),
            PutCondition::Version(version),
        )
        .await
        .map(|_| ())
    }

    /// The last path segments of the keys under `prefix`, one level deep.
    async fn names(&self, prefix: &str) -> Result<Vec<String>> {
        let (kvs, _) = range_all(self.store.as_ref(), prefix, 1000).await?;
        let mut names: Vec<String> = kvs
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(prefix))
            .filter(|rest| !rest.contains('/'))
            .map(str::to_owned)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Creates the `public` tenant and the `public/default` namespace if absent (every
    /// start; idempotent).
    pub async fn ensure_defaults(&self, cluster: &str, bundles: u32) -> Result<()> {
        let tenant = TenantInfo {
            allowed_clusters: vec![cluster.to_owned()],
            ..Default::default()
        };
        match self.create_tenant("public", tenant).await {
            Ok(()) | Err(MetaError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        let policies = NamespacePolicies {
            bundles,
            replication_clusters: vec![cluster.to_owned()],
            ..Default::default()
        };
        match self.create_namespace(DEFAULT_NAMESPACE, policies).await {
            Ok(()) | Err(MetaError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates a tenant; `AlreadyExists` if it exists.
    pub async fn create_tenant(&self, name: &str, info: TenantInfo) -> Result<()> {
        self.create(&self.keys.tenant(name), info).await
    }

    /// A tenant and its version.
    pub async fn tenant(&self, name: &str) -> Result<Option<(TenantInfo, Version)>> {
        self.get(&self.keys.tenant(name)).await
    }

    /// Replaces a tenant's record if it is still at `version`.
    pub async fn update_tenant(
        &self,
        name: &str,
        info: TenantInfo,
        version: Version,
    ) -> Result<()> {
        self.replace(&self.keys.tenant(name), info, version).await
    }

    /// Every tenant, sorted.
    pub async fn tenants(&self) -> Result<Vec<String>> {
        self.names(&self.keys.tenants_prefix()).await
    }

    /// Deletes a tenant (the caller checked it has no namespaces).
    pub async fn delete_tenant(&self, name: &str) -> Result<()> {
        self.store.delete(&self.keys.tenant(name), None).await
    }

    /// Creates a namespace (`tenant/name`); `AlreadyExists` if it exists.
    pub async fn create_namespace(&self, ns: &str, policies: NamespacePolicies) -> Result<()> {
        self.create(&self.keys.namespace(ns), policies).await
    }

    /// A namespace's policies and their version.
    pub async fn namespace(&self, ns: &str) -> Result<Option<(NamespacePolicies, Version)>> {
        self.get(&self.keys.namespace(ns)).await
    }

    /// Replaces a namespace's policies if still at `version`.
    pub async fn update_namespace(
        &self,
        ns: &str,
        policies: NamespacePolicies,
        version: Version,
    ) -> Result<()> {
        self.replace(&self.keys.namespace(ns), policies, version)
            .await
    }

    /// A tenant's namespaces as `tenant/name`, sorted.
    pub async fn namespaces(&self, tenant: &str) -> Result<Vec<String>> {
        Ok(self
            .names(&self.keys.namespaces_prefix(tenant))
            .await?
            .into_iter()
            .map(|n| format!("{tenant}/{n}"))
            .collect())
    }

    /// Deletes a namespace (the caller checked it is empty, or was told to force).
    pub async fn delete_namespace(&self, ns: &str) -> Result<()> {
        self.store.delete(&self.keys.namespace(ns), None).await
    }

    /// Creates a partitioned topic's record; `AlreadyExists` if it exists.
    pub async fn create_partitioned(&self, ns: &str, local: &str, partitions: u32) -> Result<()> {
        let info = PartitionedTopicInfo {
            partitions,
            ..Default::default()
        };
        self.create(&self.keys.partitioned_topic(ns, local), info)
            .await
    }

    /// A topic's own policies and their version.
    pub async fn topic_policies(&self, topic: &str) -> Result<Option<(TopicPolicies, Version)>> {
        self.get(&self.keys.topic_policies(topic)).await
    }

    /// Stores a topic's policies: created when `version` is `None`, else replaced if still at
    /// it (`BadVersion` / `AlreadyExists` otherwise: re-read and retry).
    pub async fn put_topic_policies(
        &self,
        topic: &str,
        policies: TopicPolicies,
        version: Option<Version>,
    ) -> Result<()> {
        let key = self.keys.topic_policies(topic);
        match version {
            Some(v) => self.replace(&key, policies, v).await,
            None => self.create(&key, policies).await,
        }
    }

    /// Deletes a topic's policies (with the topic); none is fine.
    pub async fn delete_topic_policies(&self, topic: &str) -> Result<()> {
        match self
            .store
            .delete(&self.keys.topic_policies(topic), None)
            .await
        {
            Ok(()) | Err(MetaError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A partitioned topic's record and its version.
    pub async fn partitioned(
        &self,
        ns: &str,
        local: &str,
    ) -> Result<Option<(PartitionedTopicInfo, Version)>> {
        self.get(&self.keys.partitioned_topic(ns, local)).await
    }

    /// Sets a partitioned topic's partition count if its record is still at `version`.
    pub async fn update_partitioned(
        &self,
        ns: &str,
        local: &str,
        partitions: u32,
        version: Version,
    ) -> Result<()> {
        let info = PartitionedTopicInfo {
            partitions,
            ..Default::default()
        };
        self.replace(&self.keys.partitioned_topic(ns, local), info, version)
            .await
    }

    /// A namespace's partitioned topics (local names), sorted.
    pub async fn partitioned_topics(&self, ns: &str) -> Result<Vec<String>> {
        self.names(&self.keys.partitioned_topics_prefix(ns)).await
    }

    /// Deletes a partitioned topic's record.
    pub async fn delete_partitioned(&self, ns: &str, local: &str) -> Result<()> {
        self.store
            .delete(&self.keys.partitioned_topic(ns, local), None)
            .await
    }

    /// The persistent topics of a namespace that have a managed ledger (local names, sorted):
    /// the `managed-ledgers/persistent://<ns>/<topic>` keys, without their cursors.
    pub async fn topics(&self, ns: &str) -> Result<Vec<String>> {
        self.names(&self.keys.namespace_topics_prefix(ns)).await
    }

    /// Follows, from now on, every namespace record (policy changes of any namespace).
    pub async fn watch_policies(&self) -> Result<crate::store::Watcher> {
        self.store
            .watch(&self.keys.all_namespaces_prefix(), None)
            .await
    }

    /// Follows, from now on, the records a namespace's topic list is made of: its topics'
    /// managed-ledger records and its partitioned-topic records. Start it before listing
    /// (`topics`, `partitioned_topics`) so that no change falls between the two.
    pub async fn watch_topic_list(&self, ns: &str) -> Result<TopicListWatch> {
        let topics_prefix = self.keys.namespace_topics_prefix(ns);
        let partitioned_prefix = self.keys.partitioned_topics_prefix(ns);
        Ok(TopicListWatch {
            topics: self.store.watch(&topics_prefix, None).await?,
            partitioned: self.store.watch(&partitioned_prefix, None).await?,
            topics_prefix,
            partitioned_prefix,
        })
    }
}

/// A change to a namespace's topic list, as [`TopicListWatch`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicListChange {
    /// A topic's managed-ledger record was written: created, or updated (a ledger rolled
    /// over). The topic's local name.
    TopicWritten(String),
    /// A topic's managed-ledger record was deleted. The topic's local name.
    TopicDeleted(String),
    /// A partitioned topic was created, changed (partitions added) or deleted: list again.
    PartitionedChanged,
}

/// The changes to one namespace's topic list ([`Namespaces::watch_topic_list`]). Cursor
/// records, written on every acknowledgement flush, are left out here.
#[derive(Debug)]
pub struct TopicListWatch {
    topics: crate::store::Watcher,
    partitioned: crate::store::Watcher,
    topics_prefix: String,
    partitioned_prefix: String,
}

impl TopicListWatch {
    /// The next change; `None` when the watch ended (the store shut down), an error when it
    /// cannot go on (compacted, unavailable): watch again and list again.
    pub async fn next(&mut self) -> Option<Result<TopicListChange>> {
        loop {
            let event = tokio::select! {
                e = self.topics.next() => e,
                e = self.partitioned.next() => e,
            };
            let event = match event? {
                Ok(e) => e,
                Err(e) => return Some(Err(e)),
            };
            if event.kv.key.starts_with(&self.partitioned_prefix) {
                return Some(Ok(TopicListChange::PartitionedChanged));
            }
            let Some(name) = event.kv.key.strip_prefix(&self.topics_prefix) else {
                continue;
            };
            if name.contains('/') {
                continue; // a cursor
            }
            return Some(Ok(match event.kind {
                crate::store::EventKind::Put => TopicListChange::TopicWritten(name.to_owned()),
                crate::store::EventKind::Delete => TopicListChange::TopicDeleted(name.to_owned()),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EmbeddedOptions, EmbeddedStore};

    async fn namespaces() -> (tempfile::TempDir, Namespaces) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
            .await
            .unwrap();
        (
            dir,
            Namespaces::new(Arc::new(store), KeyLayout::for_cluster("c")),
        )
    }

    #[tokio::test]
    async fn tenants_namespaces_and_partitioned_topics() {
        let (_dir, n) = namespaces().await;
        n.ensure_defaults("c", 4).await.unwrap();
        n.ensure_defaults("c", 4).await.unwrap();
        assert_eq!(n.tenants().await.unwrap(), ["public"]);
        assert_eq!(n.namespaces("public").await.unwrap(), ["public/default"]);
        assert_eq!(
            n.namespace("public/default")
                .await
                .unwrap()
                .unwrap()
                .0
                .bundles,
            4
        );
        n.create_tenant("t", TenantInfo::default()).await.unwrap();
        assert!(matches!(
            n.create_tenant("t", TenantInfo::default()).await,
            Err(MetaError::AlreadyExists { .. })
        ));
        n.create_namespace("t/a", NamespacePolicies::default())
            .await
            .unwrap();
        n.create_namespace("t/b", NamespacePolicies::default())
            .await
            .unwrap();
        assert_eq!(n.namespaces("t").await.unwrap(), ["t/a", "t/b"]);
        n.create_partitioned("t/a", "p", 3).await.unwrap();
        let (info, v) = n.partitioned("t/a", "p").await.unwrap().unwrap();
        assert_eq!(info.partitions, 3);
        n.update_partitioned("t/a", "p", 5, v).await.unwrap();
        assert!(matches!(
            n.update_partitioned("t/a", "p", 6, v).await,
            Err(MetaError::BadVersion { .. })
        ));
        assert_eq!(n.partitioned_topics("t/a").await.unwrap(), ["p"]);
        n.delete_partitioned("t/a", "p").await.unwrap();
        n.delete_namespace("t/b").await.unwrap();
        assert_eq!(n.namespaces("t").await.unwrap(), ["t/a"]);
    }
}
