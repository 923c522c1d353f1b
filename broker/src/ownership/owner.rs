//! Ownership of bundles (`ownership/<tenant>/<ns>/<bundle>`, bound to the broker's lease,
//! created only if absent) and the lookup answer that follows from it.

use std::sync::Arc;
use std::time::Duration;

use meta::records::{decode, encode};
use meta::{KeyLayout, LeaseId, MetaError, MetadataStore, PutCondition};
use proto::meta::OwnershipInfo;
use tokio::sync::watch;

use super::bundles::{bundle_of, namespace_of};
use super::registry::live_brokers;
use crate::error::{BrokerError, Result};

/// What a lookup tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupAnswer {
    /// This broker serves the topic.
    Connect,
    /// Another broker does (or has been chosen to): connect there.
    Redirect {
        /// Its `pulsar://host:port`.
        service_url: String,
        /// Its `http://host:port`.
        http_url: String,
        /// Its `pulsar+ssl://host:port` (empty: no TLS listener).
        service_url_tls: String,
        /// Its `https://host:port` (empty: no TLS listener).
        http_url_tls: String,
    },
}

/// Where a broker is reached: plain and TLS URLs (the TLS ones empty without TLS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerUrls {
    /// `pulsar://host:port`.
    pub service_url: String,
    /// `http://host:port`.
    pub http_url: String,
    /// `pulsar+ssl://host:port`, or empty.
    pub service_url_tls: String,
    /// `https://host:port`, or empty.
    pub http_url_tls: String,
}

/// This broker's side of bundle ownership.
#[derive(Debug)]
pub struct Ownership {
    store: Arc<dyn MetadataStore>,
    keys: KeyLayout,
    broker_id: String,
    urls: BrokerUrls,
    bundles: u32,
    lease_ttl: Duration,
    /// The live lease (`None`: none yet, or lost).
    lease: watch::Sender<Option<LeaseId>>,
    /// Incremented each time the lease is lost: whoever serves topics drops them all.
    losses: watch::Sender<u64>,
    /// Bundles (ownership keys) being unloaded: no lookup is answered and no topic loaded for
    /// them until their key is released, so clients told to reconnect wait for the next owner.
    releasing: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Whether enough bookies answer this broker to write (the storage watch); while not,
    /// the broker stays unregistered and owns nothing.
    storage: watch::Sender<bool>,
}

impl Ownership {
    /// Ownership for the broker `broker_id` reachable at the given URLs.
    pub fn new(
        store: Arc<dyn MetadataStore>,
        keys: KeyLayout,
        broker_id: String,
        urls: BrokerUrls,
        bundles: u32,
        lease_ttl: Duration,
    ) -> Arc<Self> {
        Arc::new(Ownership {
            store,
            keys,
            broker_id,
            urls,
            bundles: bundles.max(1),
            lease_ttl,
            lease: watch::channel(None).0,
            losses: watch::channel(0).0,
            releasing: Default::default(),
            storage: watch::channel(true).0,
        })
    }

    /// The metadata store.
    pub fn store(&self) -> &Arc<dyn MetadataStore> {
        &self.store
    }

    /// The key layout.
    pub fn keys(&self) -> &KeyLayout {
        &self.keys
    }

    /// This broker's id.
    pub fn broker_id(&self) -> &str {
        &self.broker_id
    }

    /// This broker's `pulsar://` URL.
    pub fn service_url(&self) -> &str {
        &self.urls.service_url
    }

    /// This broker's `http://` URL.
    pub fn http_url(&self) -> &str {
        &self.urls.http_url
    }

    /// All of this broker's URLs.
    pub fn urls(&self) -> &BrokerUrls {
        &self.urls
    }

    /// Bundles per namespace.
    pub fn bundles(&self) -> u32 {
        self.bundles
    }

    /// The broker's lease TTL.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// The registration task's lease changed.
    pub fn set_lease(&self, lease: Option<LeaseId>) {
        self.lease.send_replace(lease);
    }

    /// The storage watch's verdict: whether enough bookies answer this broker.
    pub fn set_storage_reachable(&self, ok: bool) {
        self.storage.send_replace(ok);
    }

    /// Whether enough bookies answered this broker's last probes.
    pub fn storage_reachable(&self) -> bool {
        *self.storage.borrow()
    }

    /// Changes with the storage watch's verdict.
    pub fn subscribe_storage(&self) -> watch::Receiver<bool> {
        self.storage.subscribe()
    }

    /// Whether the broker is registered under a live lease now.
    pub fn has_lease(&self) -> bool {
        self.lease.borrow().is_some()
    }

    /// The lease was lost: every bundle with it.
    pub fn lease_lost(&self) {
        self.lease.send_replace(None);
        self.losses.send_modify(|n| *n += 1);
    }

    /// Changes each time the lease is lost.
    pub fn subscribe_losses(&self) -> watch::Receiver<u64> {
        self.losses.subscribe()
    }

    /// The ownership key of `topic`'s bundle, among its namespace's bundles (the count stored
    /// with the namespace when it was created; the broker's `[ownership] bundles` for a
    /// namespace without a record). Read from the store each time: a namespace deleted and
    /// created again with another count must never leave brokers disagreeing on a topic's
    /// bundle.
    pub async fn key_of(&self, topic: &str) -> Result<String> {
        let ns = namespace_of(topic);
        let count = self.bundles_of(ns).await?;
        Ok(self.keys.ownership(ns, &bundle_of(topic, count)))
    }

    /// How many bundles the namespace `ns` has: its stored count, else the broker's.
    pub async fn bundles_of(&self, ns: &str) -> Result<u32> {
        Ok(meta::Namespaces::new(self.store.clone(), self.keys.clone())
            .namespace(ns)
            .await?
            .map(|(p, _)| p.bundles)
            .filter(|b| *b > 0)
            .unwrap_or(self.bundles))
    }

    async fn current_lease(&self) -> Result<LeaseId> {
        let mut rx = self.lease.subscribe();
        match tokio::time::timeout(self.lease_ttl, rx.wait_for(Option::is_some)).await {
            Ok(Ok(l)) => Ok(l.expect("waited for Some")),
            _ => Err(BrokerError::NotOwner(
                "this broker holds no lease in the metadata store".into(),
            )),
        }
    }

    /// The owner of `topic`'s bundle, if any: (its record, whether it is this broker under
    /// its current lease).
    async fn owner(&self, key: &str) -> Result<Option<(OwnershipInfo, bool)>> {
        let Some(kv) = self.store.get(key).await? else {
            return Ok(None);
        };
        let info: OwnershipInfo = decode(key, &kv.value)?;
        let mine = info.broker_id == self.broker_id
            && kv.lease.is_some()
            && kv.lease == *self.lease.borrow();
        Ok(Some((info, mine)))
    }

    /// Makes this broker the owner of `topic`'s bundle if no one is; `NotOwner` if another
    /// broker is (the client looks up again).
    /// Only for a namespace that exists: a lookup of any made-up name must not write an
    /// ownership key for it.
    pub async fn acquire(&self, topic: &str) -> Result<()> {
        let ns = namespace_of(topic);
        if meta::Namespaces::new(self.store.clone(), self.keys.clone())
            .namespace(ns)
            .await?
            .is_none()
        {
            return Err(BrokerError::TopicNotFound(format!(
                "Namespace {ns} does not exist"
            )));
        }
        let key = self.key_of(topic).await?;
        self.refuse_if_releasing(&key)?;
        for _ in 0..3 {
            if let Some((info, mine)) = self.owner(&key).await? {
                return if mine {
                    Ok(())
                } else {
                    Err(BrokerError::NotOwner(format!(
                        "{topic} is served by {}",
                        info.service_url
                    )))
                };
            }
            let lease = self.current_lease().await?;
            let mut info = OwnershipInfo {
                broker_id: self.broker_id.clone(),
                service_url: self.urls.service_url.clone(),
                http_url: self.urls.http_url.clone(),
                service_url_tls: self.urls.service_url_tls.clone(),
                http_url_tls: self.urls.http_url_tls.clone(),
                ..Default::default()
            };
            match self
                .store
                .put(&key, encode(&mut info), PutCondition::Absent, Some(lease))
                .await
            {
                Ok(_) => {
                    tracing::info!(bundle = key, "bundle acquired");
                    return Ok(());
                }
                // Someone else got it first, or the answer was lost: read again.
                Err(MetaError::AlreadyExists { .. } | MetaError::Unavailable { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(BrokerError::NotOwner(format!(
            "could not settle the owner of {topic}"
        )))
    }

    /// Whether this broker owns `topic`'s bundle right now.
    pub async fn owns(&self, topic: &str) -> Result<bool> {
        Ok(self
            .owner(&self.key_of(topic).await?)
            .await?
            .is_some_and(|(_, mine)| mine))
    }

    /// The lookup answer for `topic`. An owned bundle: Connect here or Redirect to its owner.
    /// An unowned one: if `authoritative` (the client was sent here by another broker's
    /// assignment) or this broker is the least loaded live one, it takes the bundle; else the
    /// client is redirected to the least loaded one (authoritatively, so no loop).
    pub async fn lookup(&self, topic: &str, authoritative: bool) -> Result<LookupAnswer> {
        let key = self.key_of(topic).await?;
        self.refuse_if_releasing(&key)?;
        if let Some((info, mine)) = self.owner(&key).await? {
            return Ok(if mine {
                LookupAnswer::Connect
            } else {
                LookupAnswer::Redirect {
                    service_url: info.service_url,
                    http_url: info.http_url,
                    service_url_tls: info.service_url_tls,
                    http_url_tls: info.http_url_tls,
                }
            });
        }
        if !authoritative {
            let brokers = live_brokers(&self.store, &self.keys).await?;
            let least = brokers
                .iter()
                .min_by_key(|b| (b.load.as_ref().map_or(0, |l| l.topics), b.broker_id.clone()));
            if let Some(b) = least
                && b.broker_id != self.broker_id
            {
                return Ok(LookupAnswer::Redirect {
                    service_url: b.service_url.clone(),
                    http_url: b.http_url.clone(),
                    service_url_tls: b.service_url_tls.clone(),
                    http_url_tls: b.http_url_tls.clone(),
                });
            }
        }
        match self.acquire(topic).await {
            Ok(()) => Ok(LookupAnswer::Connect),
            Err(BrokerError::NotOwner(_)) => match self.owner(&key).await? {
                Some((info, false)) => Ok(LookupAnswer::Redirect {
                    service_url: info.service_url,
                    http_url: info.http_url,
                    service_url_tls: info.service_url_tls,
                    http_url_tls: info.http_url_tls,
                }),
                Some((_, true)) => Ok(LookupAnswer::Connect),
                None => Err(BrokerError::NotOwner(format!("no owner for {topic} yet"))),
            },
            Err(e) => Err(e),
        }
    }

    fn refuse_if_releasing(&self, key: &str) -> Result<()> {
        if self
            .releasing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
        {
            return Err(BrokerError::NotOwner(format!(
                "bundle {key} is being unloaded; look it up again"
            )));
        }
        Ok(())
    }

    /// The owner of the bundle at `key`: `Some((its http URL, whether it is this broker))`.
    pub async fn owner_of_bundle(&self, key: &str) -> Result<Option<(String, bool)>> {
        Ok(self.owner(key).await?.map(|(i, mine)| (i.http_url, mine)))
    }

    /// The ownership key of `bundle` of `namespace`.
    pub fn bundle_key(&self, namespace: &str, bundle: &str) -> String {
        self.keys.ownership(namespace, bundle)
    }

    /// Whether `bundle` is one of the namespace's bundle names.
    pub async fn is_bundle(&self, ns: &str, bundle: &str) -> Result<bool> {
        Ok(super::bundles::all(self.bundles_of(ns).await?)
            .iter()
            .any(|b| b == bundle))
    }

    /// Starts unloading the bundle at `key`: lookups and loads for it are refused until
    /// [`Ownership::release`].
    pub fn start_release(&self, key: &str) {
        self.releasing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned());
    }

    /// Gives up an unload begun with [`Ownership::start_release`] that could not go on: the
    /// bundle stays owned and its lookups are answered again.
    pub fn cancel_release(&self, key: &str) {
        self.releasing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Gives up the bundle at `key` (deletes the ownership record if it is still this
    /// broker's; an ambiguous delete is read back) and answers lookups for it again.
    pub async fn release(&self, key: &str) -> Result<()> {
        let result = self.delete_own(key).await;
        self.releasing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        result
    }

    async fn delete_own(&self, key: &str) -> Result<()> {
        for _ in 0..3 {
            let Some(kv) = self.store.get(key).await? else {
                return Ok(());
            };
            let info: OwnershipInfo = decode(key, &kv.value)?;
            if info.broker_id != self.broker_id {
                return Ok(());
            }
            match self.store.delete(key, Some(kv.version)).await {
                Ok(()) => {
                    tracing::info!(bundle = key, "bundle released");
                    return Ok(());
                }
                Err(
                    MetaError::Unavailable { .. }
                    | MetaError::BadVersion { .. }
                    | MetaError::NotFound { .. },
                ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(BrokerError::NotOwner(format!(
            "could not settle the release of {key}"
        )))
    }
}
