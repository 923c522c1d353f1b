//! SEEK: reset a consumer's subscription to a message id (the entry is delivered again from
//! its first message; the client skips what precedes a batch index) or to a publish time (the
//! first entry published at or after it, found by binary search over the topic's entries).
//! As in Pulsar, the subscription's consumers are told to reconnect (CLOSE_CONSUMER) and
//! receive from the new position; SUCCESS follows.

use common::{EntryId, Position};

use crate::connection::Connection;
use crate::error::{BrokerError, Result};
use crate::managed_ledger::ManagedLedger;
use crate::protocol::cmd;
use crate::protocol::frame::inspect_entry;
use crate::protocol::pb::{CommandSeek, ServerError};
use crate::topic::before;

/// The entry at global index `i` (0 = the topic's first entry).
fn position_at(ledgers: &[(common::LedgerId, u64)], mut i: u64) -> Option<Position> {
    for (l, n) in ledgers {
        if i < *n {
            return Some(Position::new(*l, EntryId(i)));
        }
        i -= n;
    }
    None
}

/// When the entry at `p` was published (ms), as TTL, time-based backlog quotas and
/// seek-by-time count it: the broker's own time of receipt (its broker entry metadata), so no
/// producer's clock or forged `publish_time` decides what expires; the producer's
/// `publish_time` only for entries stored before brokers stamped them.
pub async fn publish_time(ml: &ManagedLedger, p: Position) -> Result<u64> {
    let payload = ml.read(p).await?;
    let info = inspect_entry(&payload)
        .map_err(|e| BrokerError::Protocol(format!("stored entry {p} unreadable: {e}")))?;
    Ok(info.broker_timestamp.unwrap_or(info.metadata.publish_time))
}

/// The first entry published at or after `t` (ms), if any. Publish times grow along a topic
/// (one producer's clock per entry; across producers nearly so), so a binary search finds it
/// in log2(entries) reads.
pub async fn first_published_at_or_after(ml: &ManagedLedger, t: u64) -> Result<Option<Position>> {
    let ledgers = ml.ledger_entries();
    let total: u64 = ledgers.iter().map(|(_, n)| n).sum();
    let (mut lo, mut hi) = (0u64, total);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let p = position_at(&ledgers, mid).ok_or_else(|| BrokerError::NotFound("entry".into()))?;
        if publish_time(ml, p).await? >= t {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(position_at(&ledgers, lo))
}

/// Handles SEEK.
pub async fn handle(conn: &mut Connection, c: CommandSeek) -> Result<()> {
    let Some(cs) = conn.consumers.get(&c.consumer_id) else {
        let msg = format!("no consumer {} on this connection", c.consumer_id);
        return conn
            .send(cmd::error(c.request_id, ServerError::ConsumerNotFound, msg))
            .await;
    };
    let (ml, sub) = (cs.topic.ml.clone(), cs.subscription.clone());
    let mark = match (&c.message_id, c.message_publish_time) {
        // Pulsar's "earliest" (-1:-1) and "latest" (Long.MAX) message ids.
        (Some(m), _) if m.ledger_id == u64::MAX => Ok(None),
        (Some(m), _) if m.ledger_id >= i64::MAX as u64 => Ok(ml.last_position()),
        (Some(m), _) => Ok(before(Position::new(
            common::LedgerId(m.ledger_id),
            EntryId(m.entry_id),
        ))),
        (None, Some(t)) => match first_published_at_or_after(&ml, t).await {
            Ok(Some(p)) => Ok(before(p)),
            Ok(None) => Ok(ml.last_position()),
            Err(e) => Err(e),
        },
        (None, None) => Err(BrokerError::Protocol(
            "SEEK without a message id or a publish time".into(),
        )),
    };
    // A message id past the topic's end resets to its end (receive what comes next): a mark
    // beyond the last entry would skip every message published after it.
    let mark = mark.map(|m| match (m, ml.last_position()) {
        (Some(m), last) if last.is_none_or(|l| m > l) => last,
        (m, _) => m,
    });
    let result = match mark {
        Ok(mark) => sub.reset(mark).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            tracing::info!(
                subscription = sub.name,
                topic = ml.name(),
                "subscription reset by SEEK"
            );
            conn.send(cmd::success(c.request_id)).await
        }
        Err(e) => {
            conn.send(cmd::error(c.request_id, e.server_error(), e.to_string()))
                .await
        }
    }
}
