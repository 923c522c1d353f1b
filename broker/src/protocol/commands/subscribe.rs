//! SUBSCRIBE → SUCCESS: attach a consumer to a (durable) subscription, created at the
//! requested initial position if new. A re-sent subscribe for an existing consumer id
//! succeeds again.

use common::{EntryId, LedgerId, Position};

use crate::connection::{Connection, ConsumerState};
use crate::error::Result;
use crate::protocol::cmd;
use crate::protocol::pb::CommandSubscribe;
use crate::protocol::pb::command_subscribe::{InitialPosition, SubType};
use crate::topic::subscription::ConsumerHandle;

/// Handles SUBSCRIBE.
pub async fn handle(conn: &mut Connection, c: CommandSubscribe) -> Result<()> {
    if let Some(existing) = conn.consumers.get(&c.consumer_id) {
        if !existing.topic.is_closed()
            && existing.subscription.has_consumer((conn.id, c.consumer_id))
        {
            return conn.send(cmd::success(c.request_id)).await;
        }
        // Its topic was unloaded, or a SEEK detached it (the client was told to reconnect):
        // subscribe afresh.
        conn.consumers.remove(&c.consumer_id);
    }
    let sub_type = SubType::try_from(c.sub_type).unwrap_or(SubType::Exclusive);
    let served = sub_type;
    let initial = InitialPosition::try_from(c.initial_position.unwrap_or(0))
        .unwrap_or(InitialPosition::Latest);
    let result = async {
        crate::service::check_subscribe_names(&c)?;
        let topic = conn.service.topic(&c.topic).await?;
        // A reader: non-durable, from its start message id. Pulsar's "earliest" is -1:-1
        // (u64::MAX on the wire) and "latest" i64::MAX: both mean "use the initial position".
        let durable = c.durable.unwrap_or(true);
        let start = c
            .start_message_id
            .as_ref()
            .filter(|m| m.ledger_id < i64::MAX as u64)
            .map(|m| Position::new(LedgerId(m.ledger_id), EntryId(m.entry_id)));
        let initial = match &c.start_message_id {
            Some(m) if m.ledger_id == u64::MAX => InitialPosition::Earliest,
            Some(m) if m.ledger_id >= i64::MAX as u64 => InitialPosition::Latest,
            _ => initial,
        };
        // Its schema: one of the topic's versions, or one that can read the latest (the
        // first schema of a topic is registered).
        if let Some(s) = c.schema.as_ref().filter(|s| crate::schema::is_schema(s)) {
            conn.service.check_consumer_schema(&topic.name, s).await?;
        }
        let limits = conn.service.limits(&topic.name).await;
        let on_topic: usize = topic
            .subscriptions()
            .await
            .iter()
            .map(|s| s.consumer_count())
            .sum();
        if crate::service::reached(on_topic, limits.consumers_per_topic) {
            return Err(crate::error::BrokerError::ConsumerBusy(format!(
                "Topic reached max consumers limit ({})",
                limits.consumers_per_topic
            )));
        }
        let max_subs = conn.service.max_subscriptions_per_topic;
        if max_subs > 0 {
            let subs = topic.subscriptions().await;
            if subs.len() >= max_subs && !subs.iter().any(|s| s.name == c.subscription) {
                return Err(crate::error::BrokerError::NotAllowed(format!(
                    "Exceed the maximum number of subscriptions of the topic: {}",
                    topic.name
                )));
            }
        }
        let sub = topic
            .subscription(&c.subscription, served, initial, durable, start)
            .await?;
        if crate::service::reached(sub.consumer_count(), limits.consumers_per_subscription) {
            return Err(crate::error::BrokerError::ConsumerBusy(format!(
                "Subscription reached max consumers limit ({})",
                limits.consumers_per_subscription
            )));
        }
        let handle = ConsumerHandle::new(conn, &c);
        if c.read_compacted == Some(true)
            && let Some(view) = topic.compacted_view().await?
        {
            sub.read_compacted(view);
        }
        sub.add_consumer(handle, served)?;
        Ok::<_, crate::error::BrokerError>((topic, sub))
    }
    .await;
    match result {
        Ok((topic, subscription)) => {
            conn.consumers.insert(
                c.consumer_id,
                ConsumerState {
                    topic,
                    subscription,
                },
            );
            conn.send(cmd::success(c.request_id)).await
        }
        Err(e) => {
            tracing::info!(topic = c.topic, subscription = c.subscription, error = %e, "subscribe refused");
            conn.send(cmd::error(c.request_id, e.server_error(), e.to_string()))
                .await
        }
    }
}
