//! The broker's topic registry: loads each topic once (concurrent first uses share the
//! load), and normalises topic names as Pulsar clients do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bookie::client::LedgerClient;
use meta::{KeyLayout, MetadataStore};
use tokio::sync::OnceCell;

use crate::error::{BrokerError, Result};
use crate::managed_ledger::{ManagedLedger, ManagedLedgerConfig};
use crate::topic::Topic;

/// Shared state of one broker.
pub struct BrokerService {
    store: Arc<dyn MetadataStore>,
    keys: KeyLayout,
    client: LedgerClient,
    config: ManagedLedgerConfig,
    topics: Mutex<HashMap<String, Arc<OnceCell<Arc<Topic>>>>>,
    /// The `pulsar://host:port` clients are told to connect to.
    pub service_url: String,
    /// PING after this much silence on a connection; close after as much again.
    pub keepalive: std::time::Duration,
    /// Bundle ownership (`None`: this broker serves every topic, unchecked).
    pub ownership: Option<Arc<crate::ownership::Ownership>>,
    /// Shutting down: no topic is loaded and lookups are refused, so clients retry until
    /// another broker owns the bundles.
    pub draining: std::sync::atomic::AtomicBool,
    /// Cancelled by `POST /admin/v2/brokers/shutdown`: the broker then shuts down as on
    /// SIGTERM (Kubernetes' preStop hook calls it).
    pub shutdown_requested: tokio_util::sync::CancellationToken,
    /// How long too few bookies may answer before the broker gives its bundles up (the
    /// storage watch, [`crate::ownership::storage`]); zero: never.
    pub storage_timeout: std::time::Duration,
    /// Tenants, namespaces and partitioned topics.
    pub namespaces: meta::Namespaces,
    /// The cluster this broker belongs to.
    pub cluster: String,
    /// See `allow_auto_topic_creation` in `broker.toml`.
    pub allow_auto_topic_creation: bool,
    /// See `deduplication_enabled` in `broker.toml`.
    pub deduplication_enabled: bool,
    /// Topics' schema versions.
    pub schemas: crate::schema::Registry,
    /// Non-persistent topics in use on this broker.
    pub non_persistent: crate::nonpersistent::NpTopics,
    /// See `message_ttl` in `broker.toml`.
    pub message_ttl: std::time::Duration,
    /// See `message_expiry_check_interval` in `broker.toml`.
    pub message_expiry_check_interval: std::time::Duration,
    /// See `subscription_pattern_max_length` in `broker.toml`.
    pub subscription_pattern_max_length: usize,
    /// See `max_connections` in `broker.toml` (0: no limit).
    pub max_connections: usize,
    /// See `max_pending_publish_requests_per_connection` in `broker.toml`.
    pub max_pending_publish_per_connection: usize,
    /// Bytes of publishes in flight on the whole broker (`max_message_publish_buffer`):
    /// a SEND takes its payload's size and gives it back once durable; while none is left,
    /// connections stop reading from their producers.
    pub publish_buffer: Arc<tokio::sync::Semaphore>,
    /// Lookups served at once (`max_concurrent_lookup_requests`); past it, TooManyRequests.
    pub lookup_permits: Arc<tokio::sync::Semaphore>,
    /// Topic loads at once (`max_concurrent_topic_loads`); more wait their turn.
    pub topic_load_permits: Arc<tokio::sync::Semaphore>,
    /// Subscriptions one topic may have (`max_subscriptions_per_topic`; 0: no limit).
    pub max_subscriptions_per_topic: usize,
    /// Topics one namespace may have (`max_topics_per_namespace`; 0: no limit).
    pub max_topics_per_namespace: usize,
    /// Who may connect (authentication; disabled unless configured).
    pub authenticator: Arc<crate::auth::Authenticator>,
    /// How often connections' credentials are checked for expiry (PIP-55; zero: never).
    pub auth_refresh_check: std::time::Duration,
    /// What each role may do (authorization; disabled unless configured).
    pub authorizer: Arc<crate::auth::authorization::Authorizer>,
    /// `pulsar+ssl://host:port` when the broker has a TLS listener (empty otherwise).
    pub service_url_tls: String,
    /// The TLS listeners' configuration (none: no TLS listener).
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    /// Inactive-topic deletion: (check period, max inactive age), when enabled.
    pub delete_inactive_topics: Option<(std::time::Duration, std::time::Duration)>,
    /// See `max_connections_per_ip` in `broker.toml` (0: no limit).
    pub max_connections_per_ip: usize,
}

/// A namespace's producer and consumer limits (Pulsar's maxProducersPerTopic,
/// maxConsumersPerTopic, maxConsumersPerSubscription); 0: unlimited.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Producers on one topic.
    pub producers_per_topic: u32,
    /// Consumers on one topic, over all its subscriptions.
    pub consumers_per_topic: u32,
    /// Consumers on one subscription.
    pub consumers_per_subscription: u32,
    /// Backlog quotas.
    pub quotas: crate::topic::backlog_quota::Quotas,
}

/// Whether `count` has reached `limit` (0: no limit).
pub fn reached(count: usize, limit: u32) -> bool {
    limit > 0 && count >= limit as usize
}

impl std::fmt::Debug for BrokerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerService")
            .field("service_url", &self.service_url)
            .finish()
    }
}

/// Longest tenant, namespace or cluster name: each becomes part of metadata keys, and a
/// megabyte name would fill etcd (and every map keyed by topic) in a few requests.
pub const MAX_ENTITY_NAME: usize = 255;

/// Longest subscription, producer or consumer name a client may give.
pub const MAX_CLIENT_NAME: usize = 1024;

/// Checks a name a client gives to a subscription, producer or consumer: at most
/// [`MAX_CLIENT_NAME`] bytes and no control characters (and not empty when `required`). Names
/// are kept in maps, stats and metadata keys: a 5 MiB name would be copied into each.
pub fn check_client_name(what: &str, name: &str, required: bool) -> Result<()> {
    if required && name.is_empty() {
        return Err(BrokerError::NotAllowed(format!("the {what} name is empty")));
    }
    if name.len() > MAX_CLIENT_NAME {
        return Err(BrokerError::NotAllowed(format!(
            "the {what} name has {} bytes, more than the limit of {MAX_CLIENT_NAME}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(BrokerError::NotAllowed(format!(
            "the {what} name contains a control character"
        )));
    }
    Ok(())
}

/// The names a SUBSCRIBE gives: its subscription's (required) and its consumer's.
pub fn check_subscribe_names(c: &crate::protocol::pb::CommandSubscribe) -> Result<()> {
    check_client_name("subscription", &c.subscription, true)?;
    check_client_name("consumer", c.consumer_name.as_deref().unwrap_or(""), false)
}

/// Whether `s` is a valid tenant, namespace or cluster name (Pulsar's rule:
/// `[A-Za-z0-9_.:=-]+`, at most [`MAX_ENTITY_NAME`] bytes).
pub fn is_valid_entity(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ENTITY_NAME
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '=' | '-'))
}

/// `my-topic` → `persistent://public/default/my-topic`, `t/ns/x` → `persistent://t/ns/x`.
/// Names are checked as strictly as Pulsar checks them, and more where a name would reach
/// into another topic's metadata keys: exactly `persistent://tenant/namespace/local`, tenant
/// and namespace of `[A-Za-z0-9_.:=-]` (Pulsar's rule), a local name with no `/` (so no topic
/// is a prefix path of another's cursors) and no control character.
pub fn normalize_topic(name: &str) -> Result<String> {
    let bad = || BrokerError::InvalidTopic(name.to_owned());
    let (domain, rest) = match name.split_once("://") {
        Some((d @ ("persistent" | "non-persistent"), rest)) => (d, rest),
        Some(_) => return Err(bad()),
        None => ("persistent", name),
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (tenant, ns, local) = match parts[..] {
        [local] if name == rest => ("public", "default", local),
        [tenant, ns, local] => (tenant, ns, local),
        _ => return Err(bad()),
    };
    let entity = is_valid_entity;
    if !entity(tenant)
        || !entity(ns)
        || local.is_empty()
        || local.len() > 1024
        || local.chars().any(char::is_control)
    {
        return Err(bad());
    }
    Ok(format!("{domain}://{tenant}/{ns}/{local}"))
}

/// `persistent://t/ns/x-partition-3` → `persistent://t/ns/x`; none for a name that is not a
/// partition's.
pub fn partitioned_parent(topic: &str) -> Option<String> {
    let (base, i) = topic.rsplit_once("-partition-")?;
    (!i.is_empty() && i.bytes().all(|b| b.is_ascii_digit())).then(|| base.to_owned())
}

impl BrokerService {
    /// A broker over `store` and the bookies its ledger client finds there.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        keys: KeyLayout,
        client: LedgerClient,
        mut config: ManagedLedgerConfig,
        service_url: String,
    ) -> Self {
        let namespaces = meta::Namespaces::new(store.clone(), keys.clone());
        config.policies = Some(namespaces.clone());
        BrokerService {
            namespaces,
            cluster: meta::keys::DEFAULT_CLUSTER.to_owned(),
            allow_auto_topic_creation: true,
            deduplication_enabled: false,
            message_ttl: std::time::Duration::ZERO,
            message_expiry_check_interval: std::time::Duration::from_secs(60),
            subscription_pattern_max_length: 50,
            max_connections: 0,
            max_connections_per_ip: 0,
            max_pending_publish_per_connection: 1000,
            publish_buffer: Arc::new(tokio::sync::Semaphore::new(256 << 20)),
            lookup_permits: Arc::new(tokio::sync::Semaphore::new(50_000)),
            topic_load_permits: Arc::new(tokio::sync::Semaphore::new(5_000)),
            max_subscriptions_per_topic: 0,
            max_topics_per_namespace: 0,
            delete_inactive_topics: None,
            authenticator: Arc::new(crate::auth::Authenticator::disabled()),
            authorizer: Default::default(),
            auth_refresh_check: std::time::Duration::from_secs(60),
            service_url_tls: String::new(),
            tls: None,
            schemas: crate::schema::Registry::new(store.clone(), keys.clone()),
            non_persistent: Default::default(),
            store,
            keys,
            client,
            config,
            topics: Mutex::new(HashMap::new()),
            service_url,
            keepalive: std::time::Duration::from_secs(30),
            ownership: None,
            draining: std::sync::atomic::AtomicBool::new(false),
            shutdown_requested: tokio_util::sync::CancellationToken::new(),
            storage_timeout: std::time::Duration::ZERO,
        }
    }

    /// The topic, loaded on first use.
    pub async fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.load_topic(name, false).await
    }

    /// The topic `name`, created if it does not exist whatever the auto-creation policy
    /// (`topics create`, a partition of a partitioned topic): its namespace must exist.
    pub async fn create_topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.load_topic(name, true).await
    }

    async fn load_topic(&self, name: &str, explicit: bool) -> Result<Arc<Topic>> {
        let name = normalize_topic(name)?;
        if crate::nonpersistent::is_non_persistent(&name) {
            return Err(BrokerError::InvalidTopic(format!(
                "{name}: a non-persistent topic has no managed ledger"
            )));
        }
        if self.is_draining() {
            return Err(BrokerError::NotOwner(format!(
                "{name}: this broker is shutting down"
            )));
        }
        let cell = self
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.clone())
            .or_default()
            .clone();
        let loaded = cell
            .get_or_try_init(|| async {
                // Pulsar's maxConcurrentTopicLoadRequest: a burst of loads waits its turn
                // instead of sending thousands of metadata reads at once.
                let _permit = self
                    .topic_load_permits
                    .acquire()
                    .await
                    .map_err(|_| BrokerError::ShuttingDown)?;
                self.check_creatable(&name, explicit).await?;
                // Only the bundle's owner loads a topic (it takes an unowned bundle).
                if let Some(o) = &self.ownership {
                    o.acquire(&name).await?;
                }
                let ml = ManagedLedger::open(
                    &name,
                    self.store.clone(),
                    &self.keys,
                    self.client.clone(),
                    self.config.clone(),
                )
                .await?;
                let topic = Topic::new(name.clone(), ml, self.keys.clone());
                topic.load_compaction_horizon().await?;
                let subs = topic.load_subscriptions().await?;
                let ns = crate::ownership::bundles::namespace_of(&name);
                if let Some((p, _)) = self.namespaces.topic_policies(&name).await? {
                    topic
                        .set_max_unacked(true, p.max_unacked_messages_on_consumer)
                        .await;
                }
                if let Some((p, _)) = self.namespaces.namespace(ns).await? {
                    topic
                        .set_max_unacked(false, p.max_unacked_messages_per_consumer)
                        .await;
                }
                if self.dedup_enabled(ns).await? {
                    topic.enable_dedup().await?;
                }
                tracing::debug!(topic = name, subscriptions = subs, "topic loaded");
                Ok::<_, BrokerError>(topic)
            })
            .await;
        let topic = match loaded {
            Ok(t) => t,
            Err(e) => {
                // A failed load leaves no entry behind (its name may be a client's junk):
                // only this cell's, in case a newer one replaced it meanwhile.
                let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
                if topics
                    .get(&name)
                    .is_some_and(|c| Arc::ptr_eq(c, &cell) && c.get().is_none())
                {
                    topics.remove(&name);
                }
                return Err(e);
            }
        };
        if topic.is_closed() {
            // Being unloaded: the client retries and finds it loaded again.
            return Err(BrokerError::NotOwner(format!(
                "{name} is being unloaded; retry"
            )));
        }
        Ok(topic.clone())
    }

    /// A topic may be loaded if its namespace exists and it exists already, is created on
    /// purpose (`explicit`), is a partition of a partitioned topic, or may be created
    /// implicitly — as the namespace's auto-creation policy (else the broker's) decides.
    async fn check_creatable(&self, name: &str, explicit: bool) -> Result<()> {
        let ns = crate::ownership::bundles::namespace_of(name);
        let Some((policies, _)) = self.namespaces.namespace(ns).await? else {
            return Err(BrokerError::TopicNotFound(format!(
                "namespace {ns} of {name} does not exist (create it with `magnetar admin namespaces create {ns}`)"
            )));
        };
        let exists = self
            .store
            .get(&self.keys.managed_ledger(name))
            .await?
            .is_some();
        if exists {
            return Ok(());
        }
        if !(explicit
            || self.auto_creation(&policies).0
            || self.is_partition_of_existing(name).await?)
        {
            return Err(BrokerError::TopicNotFound(format!(
                "topic {name} does not exist and auto topic creation is off for {ns}"
            )));
        }
        // Pulsar's maxTopicsPerNamespace: a new topic past it is refused.
        let limit = self.max_topics_per_namespace;
        if limit > 0 && self.namespaces.topics(ns).await?.len() >= limit {
            return Err(BrokerError::NotAllowed(format!(
                "Exceed maximum number of topics in namespace {ns} ({limit})"
            )));
        }
        Ok(())
    }

    /// Whether `name` is `<t>-partition-<i>` of a partitioned topic that has partition `i`.
    async fn is_partition_of_existing(&self, name: &str) -> Result<bool> {
        let Some((base, i)) = name.rsplit_once("-partition-") else {
            return Ok(false);
        };
        let Ok(i) = i.parse::<u32>() else {
            return Ok(false);
        };
        Ok(i < self.partitions_of(base).await?)
    }

    /// (auto-creation allowed, partitioned, default partitions) for a namespace's policies.
    pub fn auto_creation(&self, p: &proto::meta::NamespacePolicies) -> (bool, bool, u32) {
        match &p.auto_topic_creation {
            Some(a) => (a.allow, a.partitioned, a.default_partitions),
            None => (self.allow_auto_topic_creation, false, 0),
        }
    }

    /// Whether de-duplication is on for the namespace `ns`: its policy, else the broker's.
    pub async fn dedup_enabled(&self, ns: &str) -> Result<bool> {
        let policy = self
            .namespaces
            .namespace(ns)
            .await?
            .map_or(0, |(p, _)| p.deduplication);
        Ok(self.dedup_policy(policy))
    }

    /// Whether a namespace's `deduplication` policy value (0 unset, 1 on, 2 off) means on.
    pub fn dedup_policy(&self, policy: u32) -> bool {
        match policy {
            1 => true,
            2 => false,
            _ => self.deduplication_enabled,
        }
    }

    /// The message TTL a namespace's policy gives (the broker's default when unset); zero:
    /// messages never expire.
    pub fn message_ttl(&self, policy: Option<u32>) -> std::time::Duration {
        policy.map_or(self.message_ttl, |s| {
            std::time::Duration::from_secs(u64::from(s))
        })
    }

    /// Whether `role` may do `op` on `topic` (a full name): super-user, tenant admin, or the
    /// grants of its namespace (reference §3). Reads the tenant and namespace records; an
    /// unreadable record grants nothing.
    pub async fn authorize_topic(
        &self,
        role: &str,
        topic: &str,
        op: crate::auth::authorization::TopicOp<'_>,
    ) -> std::result::Result<(), crate::auth::authorization::Denied> {
        let a = &self.authorizer;
        if !a.enabled || a.is_super_user(role) {
            return Ok(());
        }
        let ns = crate::ownership::bundles::namespace_of(topic);
        let tenant_name = ns.split('/').next().unwrap_or_default();
        let tenant = self.namespaces.tenant(tenant_name).await.ok().flatten();
        let policies = self.namespaces.namespace(ns).await.ok().flatten();
        a.allow_topic(
            role,
            tenant.as_ref().map(|(t, _)| t),
            policies.as_ref().map(|(p, _)| p),
            topic,
            op,
        )
    }

    /// The producer and consumer limits and backlog quotas of `topic`'s namespace (0:
    /// unlimited). One metadata
    /// read per producer or consumer created; unreadable policies limit nothing (the
    /// reason is logged).
    pub async fn limits(&self, topic: &str) -> Limits {
        let ns = crate::ownership::bundles::namespace_of(topic);
        match self.namespaces.namespace(ns).await {
            Ok(Some((p, _))) => Limits {
                producers_per_topic: p.max_producers_per_topic.unwrap_or(0),
                consumers_per_topic: p.max_consumers_per_topic.unwrap_or(0),
                consumers_per_subscription: p.max_consumers_per_subscription.unwrap_or(0),
                quotas: crate::topic::backlog_quota::Quotas::of(&p),
            },
            Ok(None) => Limits::default(),
            Err(e) => {
                tracing::warn!(namespace = ns, error = %e, "cannot read the namespace's limits");
                Limits::default()
            }
        }
    }

    /// Registers a producer's (or GET_OR_CREATE_SCHEMA's) schema under the namespace's
    /// strategy: its version.
    pub async fn register_schema(
        &self,
        topic: &str,
        s: &crate::protocol::pb::Schema,
    ) -> Result<u64> {
        let strategy = self.schema_strategy(topic).await?;
        self.schemas
            .add_or_get(
                topic,
                s.r#type,
                &s.schema_data,
                crate::schema::properties(s),
                strategy,
            )
            .await
    }

    /// Checks a consumer's schema under the namespace's strategy.
    pub async fn check_consumer_schema(
        &self,
        topic: &str,
        s: &crate::protocol::pb::Schema,
    ) -> Result<()> {
        let strategy = self.schema_strategy(topic).await?;
        self.schemas
            .check_consumer(
                topic,
                s.r#type,
                &s.schema_data,
                crate::schema::properties(s),
                strategy,
            )
            .await
    }

    /// The broker's default ledger quorums (E, Qw, Qa), for ledgers outside a topic's list
    /// (compacted ledgers).
    pub fn default_quorums(&self) -> (usize, usize, usize) {
        (
            self.config.ensemble,
            self.config.write_quorum,
            self.config.ack_quorum,
        )
    }

    /// The schema compatibility strategy of `topic`'s namespace (Pulsar's default, FULL,
    /// when unset).
    pub async fn schema_strategy(&self, topic: &str) -> Result<crate::schema::compat::Strategy> {
        let ns = crate::ownership::bundles::namespace_of(topic);
        let policy = self
            .namespaces
            .namespace(ns)
            .await?
            .map(|(p, _)| p.schema_compatibility_strategy)
            .unwrap_or_default();
        Ok(crate::schema::compat::Strategy::parse(&policy)
            .flatten()
            .unwrap_or(crate::schema::DEFAULT_STRATEGY))
    }

    /// The number of partitions of `name` (0: not a partitioned topic).
    /// A topic that does not exist yet, in a namespace whose auto-creation policy makes
    /// partitioned topics, is created partitioned here (the client asks for its partitions
    /// first), as Pulsar does.
    pub async fn partitions(&self, name: &str) -> Result<u32> {
        let name = normalize_topic(name)?;
        if crate::nonpersistent::is_non_persistent(&name) {
            return Ok(0); // non-persistent topics are not partitioned here
        }
        let n = self.partitions_of(&name).await?;
        if n > 0 || name.contains("-partition-") {
            return Ok(n);
        }
        let ns = crate::ownership::bundles::namespace_of(&name);
        let Some((policies, _)) = self.namespaces.namespace(ns).await? else {
            return Ok(0);
        };
        let (allow, partitioned, default_partitions) = self.auto_creation(&policies);
        if !(allow && partitioned && default_partitions > 0)
            || self
                .store
                .get(&self.keys.managed_ledger(&name))
                .await?
                .is_some()
        {
            return Ok(0);
        }
        let local = &name[name.rfind('/').map_or(0, |i| i + 1)..];
        match self
            .namespaces
            .create_partitioned(ns, local, default_partitions)
            .await
        {
            Ok(()) => {
                tracing::info!(
                    topic = name,
                    partitions = default_partitions,
                    "partitioned topic auto-created"
                );
                Ok(default_partitions)
            }
            // Created meanwhile by another client: what it says.
            Err(meta::MetaError::AlreadyExists { .. }) => self.partitions_of(&name).await,
            Err(e) => Err(e.into()),
        }
    }

    /// The stored partition count of `name` (0: not a partitioned topic).
    async fn partitions_of(&self, name: &str) -> Result<u32> {
        let ns = crate::ownership::bundles::namespace_of(name);
        let local = &name[name.rfind('/').map_or(0, |i| i + 1)..];
        Ok(self
            .namespaces
            .partitioned(ns, local)
            .await?
            .map_or(0, |(p, _)| p.partitions))
    }

    /// Whether the broker is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The entry-cache budget every topic draws on.
    pub fn cache_budget(&self) -> &Arc<crate::managed_ledger::cache::CacheBudget> {
        &self.config.cache
    }

    /// Every topic loaded so far.
    pub fn loaded_topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|c| c.get().cloned())
            .collect()
    }

    /// Drops every loaded topic at once: the lease that made this broker their owner is
    /// gone (see [`Topic::drop_unowned`]).
    pub async fn drop_all_topics(&self) {
        let cells: Vec<_> = self
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, c)| c)
            .collect();
        for cell in cells {
            if let Some(t) = cell.get() {
                t.drop_unowned().await;
            }
        }
    }

    /// Unloads one topic (Pulsar's topic unload): its clients are told to reconnect, cursors
    /// persisted, its ledger closed; ownership of its bundle stays, so the next use loads
    /// it again here. Returns whether it was loaded.
    ///
    /// The topic stays in the broker's map while it closes, so a client that reconnects at
    /// once is told to retry (the closed topic refuses it) instead of loading a second
    /// instance that would fence the ledger the first one is still closing.
    pub async fn unload_topic(&self, name: &str) -> Result<bool> {
        let name = normalize_topic(name)?;
        let cell = self
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            .cloned();
        let Some(cell) = cell else {
            return Ok(false);
        };
        let Some(t) = cell.get() else {
            return Ok(false);
        };
        let closed = t.close().await;
        {
            let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
            if topics.get(&name).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                topics.remove(&name);
            }
        }
        closed?;
        tracing::info!(topic = name, "topic unloaded");
        Ok(true)
    }

    /// The metadata store and this cluster's key layout.
    pub(crate) fn meta(&self) -> (&Arc<dyn MetadataStore>, &KeyLayout) {
        (&self.store, &self.keys)
    }

    /// The ledger client.
    pub fn ledger_client(&self) -> &LedgerClient {
        &self.client
    }

    /// The ensemble size new ledgers need (that many writable bookies).
    pub fn ensemble_size(&self) -> usize {
        self.config.ensemble
    }

    /// How many bookies are registered as writable now.
    pub async fn writable_bookies(&self) -> Result<usize> {
        let prefix = self.keys.bookies_available_prefix();
        let (kvs, _) = meta::range_all(self.store.as_ref(), &prefix, 1000).await?;
        Ok(kvs.len())
    }

    /// Whether the topic has a managed ledger (it was created).
    pub async fn topic_exists(&self, name: &str) -> Result<bool> {
        let name = normalize_topic(name)?;
        Ok(self
            .store
            .get(&self.keys.managed_ledger(&name))
            .await?
            .is_some())
    }

    /// Deletes a topic: refused (`ConsumerBusy`) while it has producers or consumers unless
    /// `force` (they are then told to reconnect, and find it gone or re-created). Its
    /// ledgers, cursors and ledger list go. The caller made sure this broker owns it.
    pub async fn delete_topic(&self, name: &str, force: bool) -> Result<()> {
        let name = normalize_topic(name)?;
        if self
            .store
            .get(&self.keys.managed_ledger(&name))
            .await?
            .is_none()
        {
            return Err(BrokerError::TopicNotFound(format!(
                "topic {name} does not exist"
            )));
        }
        let topic = self.topic(&name).await?;
        if !force && topic.is_in_use().await {
            return Err(BrokerError::ConsumerBusy(format!(
                "topic {name} has active producers or consumers"
            )));
        }
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
        crate::topic::compaction::delete(&topic, &self.client).await?;
        topic.delete().await?;
        self.namespaces.delete_topic_policies(&name).await?;
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Unloads a bundle this broker owns (`key`: its ownership key): lookups and loads for it
    /// are refused meanwhile, every loaded topic of the bundle is closed as in
    /// [`BrokerService::unload_topic`], then the ownership record is deleted — the next
    /// lookup assigns the bundle to the least loaded broker. Returns the topics closed.
    pub async fn unload_bundle(&self, key: &str) -> Result<usize> {
        let Some(o) = self.ownership.clone() else {
            return Ok(0);
        };
        o.start_release(key);
        // The loaded topics of the bundle (loading more of it is refused from here on).
        let loaded: Vec<String> = self
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let mut names = Vec::new();
        for t in loaded {
            match o.key_of(&t).await {
                Ok(k) if k == key => names.push(t),
                Ok(_) => {}
                Err(e) => {
                    o.cancel_release(key);
                    return Err(e);
                }
            }
        }
        let cells: Vec<_> = {
            let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
            names
                .into_iter()
                .filter_map(|n| topics.remove(&n))
                .collect()
        };
        let mut closed = 0;
        for cell in cells {
            if let Some(t) = cell.get() {
                if let Err(e) = t.close().await {
                    tracing::warn!(topic = t.name, error = %e, "topic close failed during unload");
                }
                closed += 1;
            }
        }
        o.release(key).await?;
        tracing::info!(bundle = key, topics = closed, "bundle unloaded");
        Ok(closed)
    }

    /// Closes every loaded topic: cursors persisted, open ledgers closed.
    pub async fn close(&self) {
        let cells: Vec<_> = self
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for cell in cells {
            if let Some(t) = cell.get()
                && let Err(e) = t.close().await
            {
                tracing::warn!(topic = t.name, error = %e, "topic close failed");
            }
        }
    }
}

/// A broker over an embedded store in `dir`, with no bookie (whatever needs a ledger fails),
/// `public/default` created: for tests of what happens before storage.
#[cfg(test)]
pub(crate) async fn test_service(dir: &std::path::Path) -> BrokerService {
    let store: Arc<dyn MetadataStore> = Arc::new(
        meta::EmbeddedStore::open(dir, meta::EmbeddedOptions::default())
            .await
            .unwrap(),
    );
    let keys = KeyLayout::for_cluster("standalone");
    let client = bookie::client::LedgerClient::new(
        store.clone(),
        keys.clone(),
        bookie::client::ClientConfig::default(),
    );
    let service = BrokerService::new(
        store,
        keys,
        client,
        ManagedLedgerConfig::default(),
        "pulsar://127.0.0.1:1".into(),
    );
    service
        .namespaces
        .ensure_defaults("standalone", 4)
        .await
        .unwrap();
    service
}

#[cfg(test)]
mod tests {
    use super::{BrokerError, normalize_topic, test_service};

    #[test]
    fn topic_names() {
        assert_eq!(
            normalize_topic("t").unwrap(),
            "persistent://public/default/t"
        );
        assert_eq!(normalize_topic("a/b/t").unwrap(), "persistent://a/b/t");
        assert_eq!(
            normalize_topic("persistent://a/b/t").unwrap(),
            "persistent://a/b/t"
        );
        assert!(normalize_topic("").is_err());
        assert_eq!(
            normalize_topic("non-persistent://a/b/t").unwrap(),
            "non-persistent://a/b/t"
        );
        assert!(normalize_topic("persistent://a//t").is_err());
        // Nothing that could reach into another topic's keys, or that Pulsar refuses.
        for bad in [
            "persistent://a/b/t/cursors/x",
            "persistent://a/b/c/d",
            "a/b",
            "persistent://a$/b/t",
            "persistent://a/b c/t",
            "persistent://a/b/t\n",
            "persistent:///b/t",
            "x://a/b/t",
        ] {
            assert!(normalize_topic(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            normalize_topic("persistent://my-tenant/ns.1/topic-with:colons=and.dots").unwrap(),
            "persistent://my-tenant/ns.1/topic-with:colons=and.dots"
        );
    }

    /// Review finding 7: a load that fails (here: namespaces that do not exist) leaves no
    /// entry in the topic map, whose keys could be megabytes each.
    #[tokio::test]
    async fn failed_topic_loads_leave_no_entry_behind() {
        let dir = tempfile::tempdir().unwrap();
        let service = test_service(dir.path()).await;
        for i in 0..100 {
            let Err(e) = service.topic(&format!("persistent://ghost-{i}/ns/t")).await else {
                panic!("no such namespace");
            };
            assert!(matches!(e, BrokerError::TopicNotFound(_)), "{e}");
        }
        assert_eq!(service.topics.lock().unwrap().len(), 0);
        let Err(e) = service
            .topic(&format!("persistent://{}/ns/t", "a".repeat(300)))
            .await
        else {
            panic!("too long");
        };
        assert!(matches!(e, BrokerError::InvalidTopic(_)), "{e}");
    }
}
