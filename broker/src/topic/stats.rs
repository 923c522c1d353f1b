//! A topic's stats as Pulsar's admin API shows them: `stats` (rates, counters, storage and
//! backlog sizes, publishers, subscriptions with their consumers) and `internalStats` (the
//! managed ledger's ledgers and the cursors). Field names are Pulsar's (TopicStats,
//! PersistentTopicInternalStats) so tools that read them work unchanged. Rates are over the
//! broker's stats period (5 s), updated by `crate::stats`.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::Position;
use serde_json::{Value, json};

use super::Topic;
use crate::error::Result;
use crate::protocol::pb::command_subscribe::SubType;

/// Rates of a topic over the last stats period.
#[derive(Debug, Default, Clone)]
pub struct Rates {
    at: Option<Instant>,
    last: [u64; 4],
    /// Messages/s and bytes/s in, then out.
    pub per_sec: [f64; 4],
}

impl Rates {
    /// Takes the counters' current values (msg in, bytes in, msg out, bytes out).
    pub fn update(&mut self, now: [u64; 4]) {
        let t = Instant::now();
        if let Some(at) = self.at {
            let secs = t.duration_since(at).as_secs_f64().max(1e-3);
            for (i, rate) in self.per_sec.iter_mut().enumerate() {
                *rate = now[i].saturating_sub(self.last[i]) as f64 / secs;
            }
        }
        self.at = Some(t);
        self.last = now;
    }
}

/// Pulsar's name of a subscription type.
pub fn type_name(t: SubType) -> &'static str {
    match t {
        SubType::Exclusive => "Exclusive",
        SubType::Shared => "Shared",
        SubType::Failover => "Failover",
        SubType::KeyShared => "Key_Shared",
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `GET …/stats`.
pub async fn stats(t: &Topic) -> Result<Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let ml = t.ml.stats().await?;
    let entries = ml.entries();
    let size = ml.size();
    let avg_entry = if entries > 0 {
        size as f64 / entries as f64
    } else {
        0.0
    };
    let subs = t.subscriptions().await;
    let mut out_msgs = 0;
    let mut out_bytes = 0;
    let mut subscriptions = serde_json::Map::new();
    let mut backlog_bytes_max = 0u64;
    for s in &subs {
        let v = s.view();
        // Every acknowledged run counts (the view lists at most 1,000 of them).
        let backlog = s.backlog();
        let backlog_size = (backlog as f64 * avg_entry) as u64;
        backlog_bytes_max = backlog_bytes_max.max(backlog_size);
        let (m, b) = (s.msg_out.load(Relaxed), s.bytes_out.load(Relaxed));
        out_msgs += m;
        out_bytes += b;
        let consumers: Vec<Value> = v
            .consumers
            .iter()
            .map(|(key, name, permits, unacked)| {
                let mut c = json!({
                    "consumerName": name,
                    "availablePermits": permits,
                    "unackedMessages": unacked,
                });
                // Key_Shared: the hash ranges it owns, as Pulsar prints them.
                if let Some(ks) = &v.key_shared
                    && let Some((_, r)) = ks.ranges.iter().find(|(k, _)| k == key)
                {
                    c["keyHashRanges"] = r.iter().map(|(a, b)| format!("[{a}, {b}]")).collect();
                }
                c
            })
            .collect();
        let mut sub = json!({
            "msgOutCounter": m,
            "bytesOutCounter": b,
            "msgBacklog": backlog,
            "backlogSize": backlog_size,
            "unackedMessages": v.unacked,
            "totalMsgExpired": s.expired.load(Relaxed),
            "type": type_name(v.sub_type),
            "isDurable": v.durable,
            "consumers": consumers,
        });
        if let Some(ks) = &v.key_shared {
            sub["keySharedMode"] = json!(ks.mode);
            sub["allowOutOfOrderDelivery"] = json!(ks.allow_out_of_order);
        }
        subscriptions.insert(s.name.clone(), sub);
    }
    let publishers: Vec<Value> = t
        .producers()
        .into_iter()
        .map(|(id, name, since)| {
            json!({
                "producerId": id,
                "producerName": name,
                "connectedSinceMs": millis(since),
            })
        })
        .collect();
    let rates = t.rates.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(json!({
        "msgRateIn": rates.per_sec[0],
        "msgThroughputIn": rates.per_sec[1],
        "msgRateOut": rates.per_sec[2],
        "msgThroughputOut": rates.per_sec[3],
        "msgInCounter": t.msg_in.load(Relaxed),
        "bytesInCounter": t.bytes_in.load(Relaxed),
        "msgOutCounter": out_msgs,
        "bytesOutCounter": out_bytes,
        "averageMsgSize": avg_entry,
        "storageSize": size,
        "backlogSize": backlog_bytes_max,
        "publishers": publishers,
        "subscriptions": subscriptions,
    }))
}

fn position(p: Option<Position>, first_ledger: Option<u64>) -> String {
    match (p, first_ledger) {
        (Some(p), _) => p.to_string(),
        (None, Some(l)) => format!("{l}:-1"),
        (None, None) => "-1:-1".to_owned(),
    }
}

/// `GET …/internalStats`.
pub async fn internal_stats(t: &Topic) -> Result<Value> {
    let ml = t.ml.stats().await?;
    let first = ml.ledgers.first().map(|l| l.0.0);
    let (current_entries, current_size) = ml
        .ledgers
        .iter()
        .find(|l| Some(l.0) == ml.current)
        .map_or((0, 0), |l| (l.1, l.2));
    let ledgers: Vec<Value> = ml
        .ledgers
        .iter()
        .map(|(id, entries, size)| {
            json!({ "ledgerId": id.0, "entries": entries, "size": size, "offloaded": false })
        })
        .collect();
    let mut cursors = serde_json::Map::new();
    for s in t.subscriptions().await {
        let v = s.view();
        let deleted: Vec<String> = v
            .acked_runs
            .iter()
            .map(|(l, f, e)| format!("({l}:{}..{l}:{e}]", *f as i64 - 1))
            .collect();
        cursors.insert(
            s.name.clone(),
            json!({
                "markDeletePosition": position(v.mark_delete, first),
                "readPosition": position(v.read_position, first),
                "individuallyDeletedMessages": format!("[{}]", deleted.join(", ")),
                "state": "Open",
                "durable": v.durable,
            }),
        );
    }
    Ok(json!({
        "entriesAddedCounter": ml.entries_added,
        "numberOfEntries": ml.entries(),
        "totalSize": ml.size(),
        "currentLedgerEntries": current_entries,
        "currentLedgerSize": current_size,
        "lastConfirmedEntry": position(t.ml.last_position(), first),
        "state": ml.state,
        "ledgers": ledgers,
        "cursors": cursors,
    }))
}
