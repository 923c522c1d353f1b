//! Bookie registration (`bookies/available/<id>`, `bookies/readonly/<id>`, lease-bound),
//! cookies (`bookies/cookies/<id>`) and the cluster instance id (`cluster`).
//!
//! A bookie is listed under exactly one of available / read-only: moving between them is one
//! transaction. Both keys are bound to the bookie's lease, so a dead bookie disappears from
//! placement once its lease expires.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use common::BookieId;
use proto::meta::{BookieServiceInfo, ClusterInfo, Cookie};

use crate::error::{MetaError, Result};
use crate::keys::KeyLayout;
use crate::records::{decode, encode};
use crate::store::{LeaseId, MetadataStore, PutCondition, Txn, Version, range_all};

/// Which registrations to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookieState {
    /// Accepting writes.
    Available,
    /// Serving reads only (disk nearly full).
    ReadOnly,
}

/// Typed access to bookie registrations and cookies.
#[derive(Debug, Clone)]
pub struct BookieRegistry {
    store: Arc<dyn MetadataStore>,
    keys: KeyLayout,
}

const PAGE: usize = 500;

impl BookieRegistry {
    /// Registrations in `store` under `keys`.
    pub fn new(store: Arc<dyn MetadataStore>, keys: KeyLayout) -> Self {
        BookieRegistry { store, keys }
    }

    fn bookie_id(info: &BookieServiceInfo) -> Result<BookieId> {
        BookieId::new(info.bookie_id.clone()).map_err(|e| MetaError::Invalid(e.to_string()))
    }

    /// Registers (or moves) a bookie under `state`, bound to `lease`, removing its other
    /// registration in the same transaction.
    pub async fn register(
        &self,
        info: &BookieServiceInfo,
        state: BookieState,
        lease: LeaseId,
    ) -> Result<()> {
        let id = Self::bookie_id(info)?;
        let (target, other) = match state {
            BookieState::Available => (
                self.keys.bookie_available(&id),
                self.keys.bookie_readonly(&id),
            ),
            BookieState::ReadOnly => (
                self.keys.bookie_readonly(&id),
                self.keys.bookie_available(&id),
            ),
        };
        let mut info = info.clone();
        let txn = Txn::new()
            .put_with_lease(target, encode(&mut info), lease)
            .delete(other);
        self.store.txn(txn).await.map(drop)
    }

    /// Removes both registrations of a bookie (graceful shutdown).
    pub async fn unregister(&self, id: &BookieId) -> Result<()> {
        let txn = Txn::new()
            .delete(self.keys.bookie_available(id))
            .delete(self.keys.bookie_readonly(id));
        self.store.txn(txn).await.map(drop)
    }

    /// Registered bookies in `state`, in id order.
    pub async fn list(&self, state: BookieState) -> Result<Vec<BookieServiceInfo>> {
        let prefix = match state {
            BookieState::Available => self.keys.bookies_available_prefix(),
            BookieState::ReadOnly => self.keys.bookies_readonly_prefix(),
        };
        let (kvs, _) = range_all(self.store.as_ref(), &prefix, PAGE).await?;
        kvs.iter().map(|kv| decode(&kv.key, &kv.value)).collect()
    }

    /// The cookie stored for a bookie, with its version.
    pub async fn cookie(&self, id: &BookieId) -> Result<Option<(Cookie, Version)>> {
        let key = self.keys.cookie(id);
        match self.store.get(&key).await? {
            Some(kv) => Ok(Some((decode(&key, &kv.value)?, kv.version))),
            None => Ok(None),
        }
    }

    /// Writes a bookie's cookie under `condition` (`Absent` on first start).
    pub async fn put_cookie(&self, cookie: &Cookie, condition: PutCondition) -> Result<Version> {
        let id = BookieId::new(cookie.bookie_id.clone())
            .map_err(|e| MetaError::Invalid(e.to_string()))?;
        let mut cookie = cookie.clone();
        self.store
            .put(&self.keys.cookie(&id), encode(&mut cookie), condition, None)
            .await
    }

    /// Removes a bookie's cookie (decommissioning).
    pub async fn delete_cookie(&self, id: &BookieId, expected: Option<Version>) -> Result<()> {
        self.store.delete(&self.keys.cookie(id), expected).await
    }

    /// The cluster's instance id, created on first use. Cookies embed it, so a bookie cannot
    /// join a different cluster with old data.
    pub async fn instance_id(&self) -> Result<String> {
        let key = self.keys.cluster();
        loop {
            if let Some(kv) = self.store.get(&key).await? {
                let info: ClusterInfo = decode(&key, &kv.value)?;
                return Ok(info.instance_id);
            }
            let mut info = ClusterInfo {
                instance_id: format!("{:032x}", rand::random::<u128>()),
                ctime_ms: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                ..Default::default()
            };
            match self
                .store
                .put(&key, encode(&mut info), PutCondition::Absent, None)
                .await
            {
                Ok(_) => return Ok(info.instance_id),
                Err(MetaError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
