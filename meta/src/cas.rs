//! Compare-and-set whose outcome is never assumed. A put can apply in the store and still
//! fail on the way back (a timeout, a dropped connection): the caller's cached version is then
//! stale, and every later CAS would fail as if another process had written — a topic stuck
//! "not owner", a cursor that stops persisting. [`put_checked`] settles every ambiguous
//! failure by reading the key back until it knows whether the write applied.

use std::time::Duration;

use bytes::Bytes;

use crate::error::{MetaError, Result};
use crate::store::{MetadataStore, PutCondition, Version};

/// How long [`put_checked`] keeps re-reading while the store is unreachable.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(120);

/// Whether an error leaves the outcome of a write unknown.
pub fn is_ambiguous(e: &MetaError) -> bool {
    matches!(e, MetaError::Unavailable { .. } | MetaError::Backend(_))
}

/// `store.put(key, value, condition)`, with an ambiguous failure settled by reading the key
/// back: the value is there and the version moved → it applied (its version is returned);
/// the key is as the condition expected → it did not, so the put is tried again; anything
/// else → someone else wrote (`BadVersion`, or `AlreadyExists` for an `Absent` condition).
/// While the store cannot be read, it retries (backing off) up to [`SETTLE_DEADLINE`], then
/// returns the last error: the caller must then treat its cached version as unknown.
pub async fn put_checked(
    store: &dyn MetadataStore,
    key: &str,
    value: Bytes,
    condition: PutCondition,
) -> Result<Version> {
    let deadline = tokio::time::Instant::now() + SETTLE_DEADLINE;
    let mut backoff = Duration::from_millis(20);
    loop {
        let err = match store.put(key, value.clone(), condition, None).await {
            Ok(v) => return Ok(v),
            Err(e) if !is_ambiguous(&e) => return Err(e),
            Err(e) => e,
        };
        // Settle: read until the store answers.
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(err);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            let current = match store.get(key).await {
                Ok(kv) => kv,
                Err(e) if is_ambiguous(&e) => continue,
                Err(e) => return Err(e),
            };
            let untouched = match (&current, condition) {
                (None, PutCondition::Absent) => true,
                (Some(kv), PutCondition::Version(v)) => kv.version == v,
                _ => false,
            };
            if untouched {
                tracing::debug!(key, "ambiguous write did not apply; trying again");
                break; // try the put again
            }
            return match current {
                Some(kv) if kv.value == value => {
                    tracing::debug!(key, "ambiguous write had applied");
                    Ok(kv.version)
                }
                _ if condition == PutCondition::Always => {
                    // No condition: just write again.
                    break;
                }
                Some(_) if condition == PutCondition::Absent => Err(MetaError::AlreadyExists {
                    key: key.to_owned(),
                }),
                _ => Err(MetaError::BadVersion {
                    key: key.to_owned(),
                    expected: match condition {
                        PutCondition::Version(v) => v.0.to_string(),
                        _ => "absent".into(),
                    },
                }),
            };
        }
    }
}
