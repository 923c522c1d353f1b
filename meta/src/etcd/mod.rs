//! The etcd backend: [`MetadataStore`] over etcd's v3 API (etcd 3.4 and later), through
//! `etcd-client`.
//!
//! Every call is bounded by the request timeout and maps transport failures to
//! `Unavailable`, so a dead etcd is an error within the timeout, never a hang. The gRPC
//! channel reconnects by itself; [`EtcdStore::connect`] retries with backoff until etcd first
//! answers. Conditional writes are etcd transactions whose failure branch reads back the
//! compared keys, so a failed CAS can say which key moved.
//! Only APIs present in etcd 3.4 are used (no `get_stream`, no `downgrade`).

mod watch;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare as EtcdCompare, CompareOp, ConnectOptions, GetOptions,
    PutOptions, Txn as EtcdTxn, TxnOp as EtcdOp, TxnOpResponse,
};

use crate::error::{MetaError, Result};
use crate::store::{
    Expect, KeyValue, LeaseId, MetadataStore, PutCondition, RangePage, Revision, Txn, TxnOp,
    Version, Watcher, prefix_end,
};

/// How to reach etcd.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// `host:port` or `http://host:port` of each etcd member.
    pub endpoints: Vec<String>,
    /// How long [`EtcdStore::connect`] keeps retrying before giving up.
    pub connect_timeout: Duration,
    /// Upper bound on every call; past it the call fails with `Unavailable`.
    pub request_timeout: Duration,
}

impl EtcdOptions {
    /// Options for `endpoints` with default timeouts (10 s to connect, 5 s per request).
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        EtcdOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// [`MetadataStore`] on etcd. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    options: EtcdOptions,
    endpoints: String,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl EtcdStore {
    /// Connects and waits until etcd answers, retrying with backoff (100 ms doubling to 2 s)
    /// for up to `connect_timeout`.
    pub async fn connect(options: EtcdOptions) -> Result<Self> {
        if options.endpoints.is_empty() {
            return Err(MetaError::Invalid("no etcd endpoints given".into()));
        }
        let urls: Vec<String> = options
            .endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        let endpoints = urls.join(",");
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.request_timeout)
            .with_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(10), options.request_timeout)
            .with_keep_alive_while_idle(true);
        let client = Client::connect(&urls, Some(connect))
            .await
            .map_err(|e| MetaError::Invalid(format!("etcd endpoints {endpoints}: {e}")))?;
        let store = EtcdStore {
            client,
            options,
            endpoints,
        };
        let deadline = tokio::time::Instant::now() + store.options.connect_timeout;
        let mut backoff = Duration::from_millis(100);
        loop {
            match store
                .call(|mut c| async move { c.get("\0", None).await })
                .await
            {
                Ok(_) => return Ok(store),
                Err(e) if e.is_retryable() && tokio::time::Instant::now() + backoff < deadline => {
                    // say so once the wait is noticeable (a container started before etcd)
                    if backoff >= Duration::from_secs(1) {
                        tracing::info!(endpoints = %store.endpoints, error = %e, "waiting for etcd");
                    } else {
                        tracing::debug!(error = %e, "etcd not ready, retrying");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(MetaError::Unavailable { reason, .. }) => {
                    return Err(MetaError::Unavailable {
                        endpoints: store.endpoints,
                        timeout: store.options.connect_timeout,
                        reason,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs one etcd call with the request timeout and maps its error.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let timeout = self.options.request_timeout;
        match tokio::time::timeout(timeout, f(self.client.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_err(e)),
            Err(_) => Err(self.unavailable("no answer".into())),
        }
    }

    fn unavailable(&self, reason: String) -> MetaError {
        MetaError::Unavailable {
            endpoints: self.endpoints.clone(),
            timeout: self.options.request_timeout,
            reason,
        }
    }

    fn map_err(&self, e: etcd_client::Error) -> MetaError {
        use etcd_client::Error as E;
        use tonic::Code;
        match e {
            E::GRpcStatus(s) => {
                let msg = s.message();
                if msg.contains("requested lease not found") {
                    MetaError::Backend("lease not found".into())
                } else if matches!(
                    s.code(),
                    Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
                ) {
                    self.unavailable(format!("{:?}: {msg}", s.code()))
                } else {
                    MetaError::Backend(format!("{:?}: {msg}", s.code()))
                }
            }
            E::LeaseKeepAliveError(m) if m.contains("not found") => {
                MetaError::Backend("lease not found".into())
            }
            E::TransportError(t) => self.unavailable(t.to_string()),
            E::IoError(io) => self.unavailable(io.to_string()),
            other => MetaError::Backend(other.to_string()),
        }
    }

    /// Maps "lease not found" to `LeaseExpired` for calls that name a lease.
    fn lease_err(e: MetaError, lease: LeaseId) -> MetaError {
        match e {
            MetaError::Backend(m) if m == "lease not found" => MetaError::LeaseExpired { lease },
            other => other,
        }
    }

    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    pub(crate) fn options(&self) -> &EtcdOptions {
        &self.options
    }
}

fn to_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = kv
        .key_str()
        .map_err(|_| MetaError::Corrupt {
            location: format!("etcd key {:?}", String::from_utf8_lossy(kv.key())),
            reason: "key is not UTF-8".into(),
        })?
        .to_owned();
    Ok(KeyValue {
        key,
        value: Bytes::copy_from_slice(kv.value()),
        version: Version(kv.mod_revision() as u64),
        create_revision: Revision(kv.create_revision() as u64),
        lease: (kv.lease() != 0).then_some(LeaseId(kv.lease())),
    })
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Revision {
    Revision(h.map_or(0, |h| h.revision()) as u64)
}

/// Finds the first compare that fails against the keys read in a failed txn's else-branch.
fn failed_compare(txn: &Txn, responses: &[TxnOpResponse]) -> MetaError {
    for (c, resp) in txn.compares.iter().zip(responses) {
        let current = match resp {
            TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.mod_revision() as u64),
            _ => None,
        };
        match (c.expect, current) {
            (Expect::Absent, Some(_)) => {
                return MetaError::AlreadyExists { key: c.key.clone() };
            }
            (Expect::Version(v), cur) if cur != Some(v.0) => {
                return MetaError::BadVersion {
                    key: c.key.clone(),
                    expected: v.to_string(),
                };
            }
            _ => {}
        }
    }
    // Every compare holds on re-read: the key changed back and forth in between.
    MetaError::BadVersion {
        key: txn
            .compares
            .first()
            .map(|c| c.key.clone())
            .unwrap_or_default(),
        expected: "the compared versions".into(),
    }
}

#[async_trait]
impl MetadataStore for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .call(|mut c| async move { c.get(key, None).await })
            .await?;
        resp.kvs().first().map(to_kv).transpose()
    }

    async fn put(
        &self,
        key: &str,
        value: Bytes,
        condition: PutCondition,
        lease: Option<LeaseId>,
    ) -> Result<Version> {
        let txn = Txn::conditional_put(key, value, condition, lease);
        self.txn(txn).await.map(|r| Version(r.0))
    }

    async fn delete(&self, key: &str, expected: Option<Version>) -> Result<()> {
        let mut txn = Txn::new();
        if let Some(v) = expected {
            txn = txn.if_version(key, v);
        }
        let key_owned = key.to_owned();
        let resp = self
            .call(|mut c| async move {
                let t = EtcdTxn::new()
                    .when(to_etcd_compares(&txn))
                    .and_then(vec![EtcdOp::delete(key_owned.as_str(), None)])
                    .or_else(vec![EtcdOp::get(key_owned.as_str(), None)]);
                c.txn(t).await.map(|r| (txn, r))
            })
            .await?;
        let (txn, resp) = resp;
        if !resp.succeeded() {
            return Err(match resp.op_responses().first() {
                Some(TxnOpResponse::Get(g)) if g.kvs().is_empty() => MetaError::NotFound {
                    key: key.to_owned(),
                },
                _ => failed_compare(&txn, &resp.op_responses()),
            });
        }
        match resp.op_responses().first() {
            Some(TxnOpResponse::Delete(d)) if d.deleted() > 0 => Ok(()),
            _ => Err(MetaError::NotFound {
                key: key.to_owned(),
            }),
        }
    }

    async fn range(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<RangePage> {
        if limit == 0 {
            return Err(MetaError::Invalid("range limit must be > 0".into()));
        }
        let start: Vec<u8> = match start_after {
            Some(after) if after >= prefix => {
                let mut k = after.as_bytes().to_vec();
                k.push(0);
                k
            }
            _ => prefix.as_bytes().to_vec(),
        };
        let opts = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_limit(limit as i64);
        let resp = self
            .call(|mut c| async move { c.get(start, Some(opts)).await })
            .await?;
        Ok(RangePage {
            kvs: resp.kvs().iter().map(to_kv).collect::<Result<_>>()?,
            more: resp.more(),
            revision: header_revision(resp.header()),
        })
    }

    async fn txn(&self, txn: Txn) -> Result<Revision> {
        let lease = txn.ops.iter().find_map(|op| match op {
            TxnOp::Put { lease, .. } => *lease,
            TxnOp::Delete { .. } => None,
        });
        let resp = self
            .call(|mut c| async move {
                let ops: Vec<EtcdOp> = txn
                    .ops
                    .iter()
                    .map(|op| match op {
                        TxnOp::Put { key, value, lease } => {
                            let opts = lease.map(|l| PutOptions::new().with_lease(l.0));
                            EtcdOp::put(key.as_str(), value.to_vec(), opts)
                        }
                        TxnOp::Delete { key } => EtcdOp::delete(key.as_str(), None),
                    })
                    .collect();
                let reads: Vec<EtcdOp> = txn
                    .compares
                    .iter()
                    .map(|c| EtcdOp::get(c.key.as_str(), None))
                    .collect();
                let t = EtcdTxn::new()
                    .when(to_etcd_compares(&txn))
                    .and_then(ops)
                    .or_else(reads);
                c.txn(t).await.map(|r| (txn, r))
            })
            .await;
        let (txn, resp) = match (resp, lease) {
            (Err(e), Some(l)) => return Err(Self::lease_err(e, l)),
            (r, _) => r?,
        };
        if resp.succeeded() {
            Ok(header_revision(resp.header()))
        } else {
            Err(failed_compare(&txn, &resp.op_responses()))
        }
    }

    async fn watch(&self, prefix: &str, from: Option<Revision>) -> Result<Watcher> {
        watch::start(self.clone(), prefix.to_owned(), from).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let opts = CompactionOptions::new().with_physical();
        self.call(|mut c| async move { c.compact(revision.0 as i64, Some(opts)).await })
            .await
            .map(drop)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId> {
        // etcd counts whole seconds; round up so the lease never lives shorter than asked.
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let secs = secs.max(1) as i64;
        let resp = self
            .call(|mut c| async move { c.lease_grant(secs, None).await })
            .await?;
        Ok(LeaseId(resp.id()))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<Duration> {
        let resp = self
            .call(|mut c| async move {
                let (mut keeper, mut stream) = c.lease_keep_alive(lease.0).await?;
                keeper.keep_alive().await?;
                stream.message().await
            })
            .await
            .map_err(|e| Self::lease_err(e, lease))?;
        match resp {
            Some(r) if r.ttl() > 0 => Ok(Duration::from_secs(r.ttl() as u64)),
            Some(_) => Err(MetaError::LeaseExpired { lease }),
            None => Err(self.unavailable("keep-alive stream closed".into())),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        self.call(|mut c| async move { c.lease_revoke(lease.0).await })
            .await
            .map(drop)
            .map_err(|e| Self::lease_err(e, lease))
    }
}

fn to_etcd_compares(txn: &Txn) -> Vec<EtcdCompare> {
    txn.compares
        .iter()
        .map(|c| match c.expect {
            Expect::Absent => EtcdCompare::create_revision(c.key.as_str(), CompareOp::Equal, 0),
            Expect::Version(v) => {
                EtcdCompare::mod_revision(c.key.as_str(), CompareOp::Equal, v.0 as i64)
            }
        })
        .collect()
}
