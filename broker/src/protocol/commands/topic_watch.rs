//! WATCH_TOPIC_LIST: a regex consumer's standing question "which topics of this namespace
//! match my pattern?". The broker answers at once (WATCH_TOPIC_LIST_SUCCESS: the matching
//! persistent topics and their hash) and then tells every change as it happens
//! (WATCH_TOPIC_UPDATE: new and deleted topics, and the hash of the whole matching list), so a
//! pattern consumer subscribes to a new topic without polling. As Pulsar's TopicListService:
//! a pattern longer than `subscription_pattern_max_length` is refused with `NotAllowed` (the
//! client then polls GET_TOPICS_OF_NAMESPACE), a repeated WATCH_TOPIC_LIST for a watcher that
//! exists is answered again, WATCH_TOPIC_LIST_CLOSE is answered SUCCESS, and the watcher ends
//! with its connection.
//!
//! Changes come from the metadata store (a watch on the namespace's managed-ledger and
//! partitioned-topic records), so topics created through any broker of the cluster are seen.
//! On each change the list is read again and compared with what the client was told: the
//! client never misses a change that fell between its listing and its watch, and a watch the
//! store ended (compaction, an outage) is started again and the difference sent.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::cmd;
use crate::protocol::commands::get_topics::{TopicsPattern, namespace_of, topics_hash, topics_of};
use crate::protocol::frame;
use crate::protocol::pb::base_command::Type;
use crate::protocol::pb::{
    BaseCommand, CommandWatchTopicList, CommandWatchTopicListClose, CommandWatchTopicListSuccess,
    CommandWatchTopicUpdate, ServerError,
};
use crate::service::BrokerService;

/// How long changes are gathered before the list is read again: creating a partitioned
/// topic writes several records at once.
const SETTLE: Duration = Duration::from_millis(50);

/// How long to wait before watching again after the store ended a watch.
const RETRY: Duration = Duration::from_secs(1);

/// A watcher running for a connection; dropping it stops the watch.
pub struct TopicWatcher {
    namespace: String,
    pattern: TopicsPattern,
    /// What the client was last told, shared with the task.
    told: Arc<std::sync::Mutex<BTreeSet<String>>>,
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

/// WATCH_TOPIC_LIST_SUCCESS answering `c` with `topics` (none when the client already has
/// the list: it sent its hash).
fn success(c: &CommandWatchTopicList, topics: Vec<String>, hash: String) -> BaseCommand {
    let known = c.topics_hash.as_deref() == Some(hash.as_str());
    BaseCommand {
        r#type: Type::WatchTopicListSuccess as i32,
        watch_topic_list_success: Some(CommandWatchTopicListSuccess {
            request_id: c.request_id,
            watcher_id: c.watcher_id,
            topic: if known { Vec::new() } else { topics },
            topics_hash: hash,
        }),
        ..Default::default()
    }
}

/// Topic list watchers one connection may hold (a client has one per regex consumer).
pub const MAX_WATCHERS_PER_CONNECTION: usize = 100;

/// Handles WATCH_TOPIC_LIST.
pub async fn watch(conn: &mut Connection, c: CommandWatchTopicList) -> Result<()> {
    let refuse = |error: ServerError, msg: String| cmd::error(c.request_id, error, msg);
    let Some(ns) = namespace_of(&c.namespace) else {
        let msg = format!("invalid namespace {:?}", c.namespace);
        return conn.send(refuse(ServerError::MetadataError, msg)).await;
    };
    if !conn.topic_watchers.contains_key(&c.watcher_id)
        && conn.topic_watchers.len() >= MAX_WATCHERS_PER_CONNECTION
    {
        // Each watcher holds two metadata watches and re-lists its namespace on changes.
        let msg =
            format!("a connection may watch at most {MAX_WATCHERS_PER_CONNECTION} topic lists");
        return conn.send(refuse(ServerError::NotAllowedError, msg)).await;
    }
    if let Some(w) = conn.topic_watchers.get(&c.watcher_id) {
        // The client timed out and asked again: the same watcher, told again.
        let topics: Vec<String> = w
            .told
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let hash = topics_hash(&topics);
        tracing::info!(conn = conn.id, watcher = c.watcher_id, namespace = %w.namespace, "topic list watcher asked for again");
        return conn.send(success(&c, topics, hash)).await;
    }
    let max = conn.service.subscription_pattern_max_length;
    let pattern = match TopicsPattern::new(&c.topics_pattern, max) {
        Ok(p) => p,
        Err(why) => {
            let msg = format!("Unable to create topic list watcher: {why}");
            return conn.send(refuse(ServerError::NotAllowedError, msg)).await;
        }
    };
    // Watch first, then list: a change after the listing is then never missed.
    let listed = async {
        let watch = conn.service.namespaces.watch_topic_list(&ns).await?;
        let topics = pattern.filter(topics_of(&conn.service, &ns).await?);
        Ok::<_, crate::error::BrokerError>((watch, topics))
    };
    let (watch, topics) = match listed.await {
        Ok(x) => x,
        Err(e) => {
            let msg = format!("Unable to create topic list watcher: {e}");
            return conn.send(refuse(e.server_error(), msg)).await;
        }
    };
    let hash = topics_hash(&topics);
    let told = Arc::new(std::sync::Mutex::new(
        topics.iter().cloned().collect::<BTreeSet<_>>(),
    ));
    // The answer is queued before the task can queue any update.
    conn.send(success(&c, topics, hash)).await?;
    let task = tokio::spawn(follow(
        conn.service.clone(),
        conn.out.clone(),
        ns.clone(),
        pattern.clone(),
        c.watcher_id,
        told.clone(),
        watch,
    ));
    tracing::debug!(conn = conn.id, watcher = c.watcher_id, namespace = %ns, pattern = %c.topics_pattern, "topic list watcher created");
    metrics::gauge!("pulsar_topic_list_watchers").increment(1.0);
    conn.topic_watchers.insert(
        c.watcher_id,
        TopicWatcher {
            namespace: ns,
            pattern,
            told,
            _task: tokio_util::task::AbortOnDropHandle::new(task),
        },
    );
    Ok(())
}

/// Handles WATCH_TOPIC_LIST_CLOSE: the watcher stops (an unknown one too) and SUCCESS.
pub async fn close(conn: &mut Connection, c: CommandWatchTopicListClose) -> Result<()> {
    forget(conn, c.watcher_id);
    conn.send(cmd::success(c.request_id)).await
}

/// Stops watcher `id` of the connection, if it has one.
pub fn forget(conn: &mut Connection, id: u64) {
    if let Some(w) = conn.topic_watchers.remove(&id) {
        tracing::debug!(conn = conn.id, watcher = id, namespace = %w.namespace, pattern = ?w.pattern, "topic list watcher closed");
        metrics::gauge!("pulsar_topic_list_watchers").decrement(1.0);
    }
}

/// The watcher's task: on every change of the namespace's topic records, the matching list
/// is read again and what differs from what the client was told goes out as an update.
async fn follow(
    service: Arc<BrokerService>,
    out: crate::outbound::Outbound,
    ns: String,
    pattern: TopicsPattern,
    watcher_id: u64,
    told: Arc<std::sync::Mutex<BTreeSet<String>>>,
    mut watch: meta::TopicListWatch,
) {
    loop {
        // Wait for a change that may alter the list.
        let relevant = loop {
            match watch.next().await {
                Some(Ok(meta::TopicListChange::TopicWritten(name))) => {
                    // A known topic rolling a ledger over changes nothing.
                    let full = format!("persistent://{ns}/{name}");
                    if pattern.matches(&full)
                        && !told
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .contains(&full)
                    {
                        break true;
                    }
                }
                Some(Ok(meta::TopicListChange::TopicDeleted(name))) => {
                    if pattern.matches(&format!("persistent://{ns}/{name}")) {
                        break true;
                    }
                }
                Some(Ok(meta::TopicListChange::PartitionedChanged)) => break true,
                Some(Err(e)) => {
                    tracing::info!(namespace = %ns, error = %e, "topic list watch ended; watching again");
                    break false;
                }
                None => return,
            }
        };
        if !relevant {
            // Watch again, then compare a fresh listing with what the client knows.
            loop {
                tokio::time::sleep(RETRY).await;
                match service.namespaces.watch_topic_list(&ns).await {
                    Ok(w) => {
                        watch = w;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(namespace = %ns, error = %e, "cannot watch the topic list")
                    }
                }
            }
        }
        tokio::time::sleep(SETTLE).await;
        let now: BTreeSet<String> = match topics_of(&service, &ns).await {
            Ok(t) => pattern.filter(t).into_iter().collect(),
            Err(e) => {
                // Listed again at the next change (or the next watch).
                tracing::warn!(namespace = %ns, error = %e, "cannot list the topics for a watcher");
                continue;
            }
        };
        let update = {
            let mut told = told.lock().unwrap_or_else(|p| p.into_inner());
            let new: Vec<String> = now.difference(&told).cloned().collect();
            let deleted: Vec<String> = told.difference(&now).cloned().collect();
            if new.is_empty() && deleted.is_empty() {
                continue;
            }
            *told = now;
            let all: Vec<String> = told.iter().cloned().collect();
            BaseCommand {
                r#type: Type::WatchTopicUpdate as i32,
                watch_topic_update: Some(CommandWatchTopicUpdate {
                    watcher_id,
                    new_topics: new,
                    deleted_topics: deleted,
                    topics_hash: topics_hash(&all),
                }),
                ..Default::default()
            }
        };
        let mut buf = BytesMut::new();
        frame::encode(&update, &mut buf);
        if out.send(buf.freeze()).await.is_err() {
            return; // the connection is gone
        }
    }
}
