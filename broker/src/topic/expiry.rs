//! Message expiry: a subscription's messages published before a cut-off count as consumed —
//! `topics expire-messages` and the namespace's message TTL (`set-message-ttl`, applied every
//! stats period), as Pulsar's expiry monitor does. Publish times grow along a topic, so the
//! cut-off is found by binary search and the mark-delete position moves up to the last entry
//! before it; it never moves back, and acknowledged entries after it stay acknowledged.

use std::sync::atomic::Ordering;

use super::before;
use super::subscription::Subscription;
use crate::error::Result;
use crate::managed_ledger::ManagedLedger;
use crate::protocol::commands::seek::first_published_at_or_after;

/// Expires what `sub` has not consumed of the entries published before `cutoff_ms` (ms since
/// the epoch). Returns how many entries expired.
pub async fn expire_before(ml: &ManagedLedger, sub: &Subscription, cutoff_ms: u64) -> Result<u64> {
    let mark = match first_published_at_or_after(ml, cutoff_ms).await? {
        Some(first_kept) => before(first_kept),
        None => ml.last_position(),
    };
    let Some(mark) = mark else {
        return Ok(0);
    };
    // Nothing is older than the cut-off (the mark falls before the topic's first entry), or
    // the subscription is past it already.
    let before_first = ml.first_position().is_none_or(|first| mark < first);
    if before_first || sub.mark_delete().is_some_and(|m| m >= mark) {
        return Ok(0);
    }
    let expired = sub.mark_delete_through(mark).await?;
    if expired > 0 {
        sub.expired.fetch_add(expired, Ordering::Relaxed);
        metrics::counter!("magnetar_messages_expired_total").increment(expired);
        tracing::info!(
            topic = ml.name(),
            subscription = sub.name,
            expired,
            "expired entries published before the cut-off"
        );
    }
    Ok(expired)
}

/// Milliseconds since the epoch, `secs` ago.
pub fn cutoff(secs: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    now.saturating_sub(secs.saturating_mul(1000))
}
