//! Ledger metadata records (`ledgers/<id>`) and the ledger-id allocator (`ledgers/ids`).
//!
//! Ids are reserved by compare-and-set on the counter, so concurrent allocators in different
//! processes never hand out the same id, and a crashed allocator only leaves a gap. By default
//! one id per trip: ids then increase in the order ledgers are created, cluster-wide, which a
//! topic moving between brokers relies on (Pulsar's positions, and its clients' message ids,
//! order by ledger id). Tools that create many throwaway ledgers may reserve blocks.

use std::ops::Range;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use common::LedgerId;
use proto::meta::{LedgerIdCounter, LedgerMetadata};

use crate::error::{MetaError, Result};
use crate::keys::KeyLayout;
use crate::records::{decode, encode};
use crate::store::{MetadataStore, PutCondition, Version};

/// The first ledger id a cluster hands out (0 is never used, so it can mean "none").
pub const FIRST_LEDGER_ID: u64 = 1;
/// Ids reserved per compare-and-set on the counter: one, so ids increase cluster-wide in
/// creation order (a block per process would let a topic's next ledger, created by the
/// process that owned it before, get a smaller id than the ledgers another owner added).
pub const DEFAULT_ID_BLOCK: u64 = 1;
/// A CAS loop gives up after this many lost rounds (only under absurd contention).
const MAX_CAS_ROUNDS: usize = 10_000;

/// Typed access to ledger metadata.
#[derive(Debug)]
pub struct LedgerStore {
    store: Arc<dyn MetadataStore>,
    keys: KeyLayout,
    block: u64,
    reserved: tokio::sync::Mutex<Range<u64>>,
}

impl LedgerStore {
    /// Ledger metadata in `store` under `keys`.
    pub fn new(store: Arc<dyn MetadataStore>, keys: KeyLayout) -> Self {
        LedgerStore {
            store,
            keys,
            block: DEFAULT_ID_BLOCK,
            reserved: tokio::sync::Mutex::new(0..0),
        }
    }

    /// Reserves `block` ids per trip to the counter (at least 1). Ids are then no longer
    /// ordered by creation across processes: only for ledgers no topic orders.
    pub fn with_id_block(mut self, block: u64) -> Self {
        self.block = block.max(1);
        self
    }

    /// A ledger id no other allocator has handed out or will.
    pub async fn next_id(&self) -> Result<LedgerId> {
        let mut reserved = self.reserved.lock().await;
        if reserved.is_empty() {
            *reserved = self.reserve_block().await?;
        }
        let id = reserved.start;
        reserved.start += 1;
        Ok(LedgerId(id))
    }

    async fn reserve_block(&self) -> Result<Range<u64>> {
        let key = self.keys.ledger_ids();
        for _ in 0..MAX_CAS_ROUNDS {
            let current = self.store.get(&key).await?;
            let (start, condition) = match &current {
                None => (FIRST_LEDGER_ID, PutCondition::Absent),
                Some(kv) => {
                    let counter: LedgerIdCounter = decode(&key, &kv.value)?;
                    (counter.next_id, PutCondition::Version(kv.version))
                }
            };
            let end = start
                .checked_add(self.block)
                .ok_or_else(|| MetaError::Corrupt {
                    location: key.clone(),
                    reason: format!("ledger id counter {start} is about to overflow"),
                })?;
            let mut next = LedgerIdCounter {
                next_id: end,
                ..Default::default()
            };
            match self
                .store
                .put(&key, encode(&mut next), condition, None)
                .await
            {
                Ok(_) => return Ok(start..end),
                Err(MetaError::BadVersion { .. } | MetaError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(MetaError::Backend(format!(
            "could not reserve ledger ids: {MAX_CAS_ROUNDS} compare-and-set rounds lost on {key}"
        )))
    }

    /// Stores metadata for a new ledger under a fresh id; sets `ledger_id` and `ctime_ms`.
    pub async fn create(&self, mut metadata: LedgerMetadata) -> Result<(LedgerId, Version)> {
        let id = self.next_id().await?;
        metadata.ledger_id = id.0;
        if metadata.ctime_ms == 0 {
            metadata.ctime_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
        }
        let key = self.keys.ledger(id);
        let version = self
            .store
            .put(&key, encode(&mut metadata), PutCondition::Absent, None)
            .await?;
        Ok((id, version))
    }

    /// Reads a ledger's metadata and its version (the CAS token for [`LedgerStore::update`]).
    pub async fn get(&self, id: LedgerId) -> Result<(LedgerMetadata, Version)> {
        let key = self.keys.ledger(id);
        let kv = self
            .store
            .get(&key)
            .await?
            .ok_or(MetaError::NotFound { key: key.clone() })?;
        Ok((decode(&key, &kv.value)?, kv.version))
    }

    /// Replaces a ledger's metadata if it is still at `expected`.
    pub async fn update(
        &self,
        id: LedgerId,
        mut metadata: LedgerMetadata,
        expected: Version,
    ) -> Result<Version> {
        let key = self.keys.ledger(id);
        self.store
            .put(
                &key,
                encode(&mut metadata),
                PutCondition::Version(expected),
                None,
            )
            .await
    }

    /// Deletes a ledger's metadata (at `expected` version if given).
    pub async fn delete(&self, id: LedgerId, expected: Option<Version>) -> Result<()> {
        self.store.delete(&self.keys.ledger(id), expected).await
    }

    /// Lists ledger ids after `after`, at most `limit`; the flag says whether more follow.
    pub async fn list(
        &self,
        after: Option<LedgerId>,
        limit: usize,
    ) -> Result<(Vec<LedgerId>, bool)> {
        let prefix = self.keys.ledgers_prefix();
        let after_key = after.map(|id| self.keys.ledger(id));
        let page = self
            .store
            .range(&prefix, after_key.as_deref(), limit)
            .await?;
        let ids = page
            .kvs
            .iter()
            .filter_map(|kv| self.keys.ledger_id_of(&kv.key))
            .collect();
        Ok((ids, page.more))
    }
}
