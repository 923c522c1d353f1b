//! The ledger client (BookKeeper's `LedgerHandle` side): what brokers and `magnetar ledgers`
//! use to write and read ledgers striped across bookies. Depends only on `proto`, `meta`
//! and `common` (and the bookie's entry format) — never on broker types.
//!
//! - [`distribution`]: write sets and quorum coverage (pure);
//! - [`bookies`]: connections by bookie id, resolved from registrations;
//! - [`writer`]: appends with in-order completion, ensemble changes, close;
//! - [`reader`]: reads with speculative retries and checksum checks;
//! - [`recovery`]: fence, read forward, re-add, close — what a new owner runs;
//! - [`replication`]: copying a bookie's fragments elsewhere (decommission).
//!
//! Every operation has a timeout and a typed [`ClientError`].

pub mod bookies;
pub mod distribution;
pub mod error;
pub mod reader;
mod recovery;
pub mod replication;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::LedgerId;
use meta::{BookieRegistry, KeyLayout, LedgerStore, MetaError, MetadataStore};
use proto::bookie::{DeleteLedgerRequest, StatusCode};
use proto::meta::{LedgerMetadata, LedgerState, Segment};
use rand::seq::SliceRandom;

pub use self::error::{ClientError, Result};
pub use self::reader::LedgerReader;
pub use self::writer::{LedgerWriter, PendingAdd};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// An add not acknowledged by a bookie within this triggers an ensemble change.
    pub add_timeout: Duration,
    /// Bound on each read, fence and recovery call to one bookie.
    pub read_timeout: Duration,
    /// A read asks the next replica if the first has not answered by then.
    pub speculative_read_delay: Duration,
    /// Adds in flight per ledger.
    pub window: usize,
    /// With no spare bookie to replace a failed one that is still registered (slow, or its
    /// stream dropped, rather than dead), how often it is tried again — after 200 ms, then
    /// doubling up to 2 s — before the pending adds fail with `NotEnoughBookies`, so the
    /// caller can move on (a broker rolls to a new ledger).
    pub same_bookie_retries: u32,
    /// gRPC over TLS to the bookies (none: plain gRPC).
    pub tls: Option<ClientTls>,
}

/// TLS to bookies: the CA their certificates chain to, and this client's own certificate
/// for bookies that require one (PEM). Pulsar: bookkeeperTLSTrustCertsFilePath,
/// bookkeeperTLSCertificateFilePath, bookkeeperTLSKeyFilePath.
#[derive(Clone)]
pub struct ClientTls {
    /// CA certificates, PEM.
    pub ca: Vec<u8>,
    /// This client's certificate chain and key, PEM.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never reaches a log.
        f.debug_struct("ClientTls")
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Reads the files (`cert` and `key` both or neither).
    pub fn from_files(ca: &str, cert: &str, key: &str) -> std::io::Result<Self> {
        let identity = if cert.is_empty() {
            None
        } else {
            Some((std::fs::read(cert)?, std::fs::read(key)?))
        };
        Ok(ClientTls {
            ca: std::fs::read(ca)?,
            identity,
        })
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            add_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
            speculative_read_delay: Duration::from_millis(50),
            window: 4096,
            same_bookie_retries: 5,
            tls: None,
        }
    }
}

/// Options of a new ledger.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    /// Ensemble size E.
    pub ensemble: usize,
    /// Write quorum Qw.
    pub write_quorum: usize,
    /// Ack quorum Qa.
    pub ack_quorum: usize,
    /// Password writers and recoverers must know (Pulsar uses an empty one).
    pub password: Bytes,
    /// Free-form metadata (the owning topic, say).
    pub custom: HashMap<String, Bytes>,
}

/// The master key bookies check: SHA-256 of the password. The metadata holds its hash, so
/// a recoverer with the wrong password is refused before it fences anything.
pub fn master_key(password: &[u8]) -> Bytes {
    use sha2::Digest;
    Bytes::copy_from_slice(&sha2::Sha256::digest(
        [b"magnetar-ledger:".as_slice(), password].concat(),
    ))
}

fn key_hash(key: &[u8]) -> Bytes {
    use sha2::Digest;
    Bytes::copy_from_slice(&sha2::Sha256::digest(key))
}

/// Creates, opens, recovers, reads and deletes ledgers.
#[derive(Debug, Clone)]
pub struct LedgerClient {
    ledgers: Arc<LedgerStore>,
    bookies: Arc<Bookies>,
    config: ClientConfig,
}

use self::bookies::Bookies;

impl LedgerClient {
    /// A client of the cluster whose keys are `keys` in `store`.
    pub fn new(store: Arc<dyn MetadataStore>, keys: KeyLayout, config: ClientConfig) -> Self {
        let registry = BookieRegistry::new(store.clone(), keys.clone());
        LedgerClient {
            ledgers: Arc::new(LedgerStore::new(store, keys)),
            bookies: Arc::new(
                Bookies::new(registry, config.read_timeout).with_tls(config.tls.clone()),
            ),
            config,
        }
    }

    /// Ledger metadata access.
    pub fn ledgers(&self) -> &LedgerStore {
        &self.ledgers
    }

    /// Bookie registrations.
    pub fn registry(&self) -> &BookieRegistry {
        self.bookies.registry()
    }

    /// How many registered bookies (writable or read-only) answer this client within
    /// `timeout`, of how many are registered. A client cut off from the bookies (while they
    /// stay registered, seen from the metadata store) learns it here, not from stalled adds;
    /// a full disk (read-only bookies, which still serve reads) is not a cut.
    pub async fn reachable_bookies(&self, timeout: std::time::Duration) -> Result<(usize, usize)> {
        let registry = self.bookies.registry();
        let mut ids: Vec<String> = registry
            .list(meta::BookieState::Available)
            .await?
            .into_iter()
            .chain(registry.list(meta::BookieState::ReadOnly).await?)
            .map(|b| b.bookie_id)
            .collect();
        ids.sort();
        ids.dedup();
        let calls = ids.iter().map(|id| {
            self.bookies
                .call(id, timeout, "bookie info", |mut c| async move {
                    c.bookie_info(proto::bookie::BookieInfoRequest {}).await
                })
        });
        let answered = futures_util::future::join_all(calls)
            .await
            .iter()
            .filter(|r| r.is_ok())
            .count();
        Ok((answered, ids.len()))
    }

    /// Creates a ledger on E writable bookies chosen at random and opens it for writing.
    pub async fn create(&self, opts: CreateOptions) -> Result<LedgerWriter> {
        distribution::check_quorums(opts.ensemble, opts.write_quorum, opts.ack_quorum)
            .map_err(ClientError::Invalid)?;
        let mut writable = self.bookies.writable().await?;
        if writable.len() < opts.ensemble {
            return Err(ClientError::NotEnoughBookies {
                needed: opts.ensemble,
                available: writable.len(),
            });
        }
        writable.shuffle(&mut rand::rng());
        writable.truncate(opts.ensemble);
        let key = master_key(&opts.password);
        let meta = LedgerMetadata {
            state: LedgerState::Open as i32,
            ensemble_size: opts.ensemble as u32,
            write_quorum: opts.write_quorum as u32,
            ack_quorum: opts.ack_quorum as u32,
            segments: vec![Segment {
                first_entry_id: 0,
                bookies: writable,
            }],
            last_entry_id: -1,
            password_hash: key_hash(&key),
            custom_metadata: opts.custom,
            ..Default::default()
        };
        let (id, version) = self.ledgers.create(meta).await?;
        let (meta, _) = self.ledgers.get(id).await?;
        tracing::debug!(ledger = %id, bookies = ?meta.segments[0].bookies, "ledger created");
        Ok(LedgerWriter::spawn(writer::WriterState::new(
            id,
            meta,
            version,
            self.ledgers.clone(),
            self.bookies.clone(),
            key,
            &self.config,
        )))
    }

    async fn metadata(&self, id: LedgerId) -> Result<LedgerMetadata> {
        self.ledgers
            .get(id)
            .await
            .map(|(m, _)| m)
            .map_err(|e| match e {
                MetaError::NotFound { .. } => ClientError::NoSuchLedger(id),
                e => e.into(),
            })
    }

    /// Opens a ledger with recovery (what a new owner does): fences the old writer out and
    /// closes the ledger at its true end. Returns the closed metadata.
    pub async fn recover(&self, id: LedgerId, password: &[u8]) -> Result<LedgerMetadata> {
        let meta = self.metadata(id).await?;
        let key = master_key(password);
        if meta.password_hash != key_hash(&key) {
            return Err(ClientError::Unauthorized(id));
        }
        recovery::Recovery {
            id,
            ledgers: &self.ledgers,
            bookies: &self.bookies,
            master_key: key,
            timeout: self.config.read_timeout,
            speculative: self.config.speculative_read_delay,
        }
        .run()
        .await
    }

    /// Opens a ledger for reading without recovery: reads up to its last confirmed entry.
    pub async fn open_reader(&self, id: LedgerId) -> Result<LedgerReader> {
        let meta = self.metadata(id).await?;
        Ok(LedgerReader::new(
            id,
            meta,
            self.bookies.clone(),
            self.config.read_timeout,
            self.config.speculative_read_delay,
        ))
    }

    /// Reads an entry from one bookie only (`None` if that bookie does not have it), with the
    /// checksum verified: for inspecting a single replica.
    pub async fn read_from_bookie(
        &self,
        bookie: &str,
        id: LedgerId,
        entry: u64,
    ) -> Result<Option<crate::entry::Entry>> {
        match reader::read_from(
            &self.bookies,
            bookie,
            id,
            entry,
            None,
            self.config.read_timeout,
        )
        .await
        {
            reader::ReplicaRead::Found(e, _) => Ok(Some(e)),
            reader::ReplicaRead::Absent => Ok(None),
            reader::ReplicaRead::Failed(m) => Err(ClientError::Bookie {
                bookie: bookie.to_owned(),
                status: StatusCode::Io,
                message: m,
            }),
        }
    }

    /// Deletes a ledger: metadata first (so no one opens it again), then its data on every
    /// bookie that held a segment (best effort, logged).
    pub async fn delete(&self, id: LedgerId) -> Result<()> {
        let meta = self.metadata(id).await?;
        self.ledgers.delete(id, None).await?;
        let mut bookies: Vec<String> = meta
            .segments
            .iter()
            .flat_map(|s| s.bookies.clone())
            .collect();
        bookies.sort();
        bookies.dedup();
        for b in bookies {
            let res = async {
                let req = DeleteLedgerRequest { ledger_id: id.0 };
                let r = self
                    .bookies
                    .call(&b, self.config.read_timeout, "delete", |mut c| async move {
                        c.delete_ledger(req).await
                    })
                    .await?;
                if r.status() == StatusCode::Ok {
                    Ok(())
                } else {
                    Err(ClientError::Bookie {
                        bookie: b.clone(),
                        status: r.status(),
                        message: r.message,
                    })
                }
            }
            .await;
            if let Err(e) = res {
                tracing::warn!(ledger = %id, bookie = b, error = %e, "could not delete ledger data on a bookie; its GC will");
            }
        }
        Ok(())
    }
}
