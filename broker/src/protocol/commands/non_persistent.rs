//! The commands of producers and consumers on non-persistent topics
//! ([`crate::nonpersistent`]): PRODUCER, SEND (delivered at once, receipted `-1:-1`),
//! CLOSE_PRODUCER, SUBSCRIBE, FLOW, ACK (nothing to acknowledge), REDELIVER (nothing to
//! redeliver), UNSUBSCRIBE, CLOSE_CONSUMER; the connection routes a command here when its
//! topic, producer or consumer is non-persistent.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use common::{EntryId, LedgerId, Position};

use crate::connection::{Connection, NpConsumer};
use crate::error::{BrokerError, Result};
use crate::protocol::cmd;
use crate::protocol::pb::command_subscribe::SubType;
use crate::protocol::pb::{
    BaseCommand, CommandProducer, CommandProducerSuccess, CommandSend, CommandSubscribe,
    base_command::Type,
};
use crate::service::normalize_topic;
use crate::topic::subscription::ConsumerHandle;

/// The receipt id Pulsar gives a non-persistent message.
fn no_position() -> Position {
    Position::new(LedgerId(u64::MAX), EntryId(u64::MAX))
}

/// Checks the topic may be used here: its namespace exists and this broker owns its bundle.
async fn check(conn: &Connection, name: &str) -> Result<()> {
    let ns = crate::ownership::bundles::namespace_of(name);
    if conn.service.namespaces.namespace(ns).await?.is_none() {
        return Err(BrokerError::TopicNotFound(format!(
            "namespace {ns} of {name} does not exist"
        )));
    }
    if let Some(o) = &conn.service.ownership {
        o.acquire(name).await?;
    }
    Ok(())
}

/// PRODUCER on a non-persistent topic.
pub async fn producer(conn: &mut Connection, c: CommandProducer) -> Result<()> {
    // An id used again replaces its producer: the old one is detached first, not leaked (it
    // would keep its topic alive for good).
    if let Some(old) = conn.np_producers.remove(&c.producer_id) {
        old.remove_producer((conn.id, c.producer_id));
        conn.service.non_persistent.release_if_idle(&old);
    }
    let result = async {
        let name = normalize_topic(&c.topic)?;
        check(conn, &name).await?;
        let topic = conn.service.non_persistent.get_or_create(&name);
        let producer_name = c
            .producer_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("magnetar-np-{}-{}", conn.id, c.producer_id));
        topic.add_producer((conn.id, c.producer_id), producer_name.clone())?;
        Ok::<_, BrokerError>((topic, producer_name))
    }
    .await;
    match result {
        Ok((topic, producer_name)) => {
            conn.np_producers.insert(c.producer_id, topic);
            conn.send(BaseCommand {
                r#type: Type::ProducerSuccess as i32,
                producer_success: Some(CommandProducerSuccess {
                    request_id: c.request_id,
                    producer_name,
                    last_sequence_id: Some(-1),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
        }
        Err(e) => {
            conn.send(cmd::error(c.request_id, e.server_error(), e.to_string()))
                .await
        }
    }
}

/// SEND on a non-persistent producer: delivered (or dropped) now, then receipted.
pub async fn send(conn: &mut Connection, c: CommandSend, payload: Option<Bytes>) -> Result<()> {
    let Some(topic) = conn.np_producers.get(&c.producer_id).cloned() else {
        return Ok(());
    };
    let highest = c.highest_sequence_id.unwrap_or(c.sequence_id);
    let result = match &payload {
        Some(p) => topic.publish(p),
        None => Err(BrokerError::Protocol("SEND without a payload".into())),
    };
    match result {
        Ok(()) => {
            conn.send(cmd::send_receipt(
                c.producer_id,
                c.sequence_id,
                highest,
                no_position(),
            ))
            .await
        }
        Err(e) => {
            conn.send(cmd::send_error(
                c.producer_id,
                c.sequence_id,
                e.server_error(),
                e.to_string(),
            ))
            .await
        }
    }
}

/// CLOSE_PRODUCER of a non-persistent producer.
pub async fn close_producer(
    conn: &mut Connection,
    producer_id: u64,
    request_id: u64,
) -> Result<()> {
    if let Some(topic) = conn.np_producers.remove(&producer_id) {
        topic.remove_producer((conn.id, producer_id));
        conn.service.non_persistent.release_if_idle(&topic);
    }
    conn.send(cmd::success(request_id)).await
}

/// SUBSCRIBE to a non-persistent topic.
pub async fn subscribe(conn: &mut Connection, c: CommandSubscribe) -> Result<()> {
    let sub_type = SubType::try_from(c.sub_type).unwrap_or(SubType::Exclusive);
    // An id used again replaces its consumer: the old one is detached first (its handle
    // holds the connection's queue, which would keep the connection's writer task and socket
    // alive after the client leaves).
    detach(conn, c.consumer_id);
    let result = async {
        crate::service::check_subscribe_names(&c)?;
        let name = normalize_topic(&c.topic)?;
        check(conn, &name).await?;
        let topic = conn.service.non_persistent.get_or_create(&name);
        let sub = topic.subscription(&c.subscription, sub_type);
        let handle = ConsumerHandle::new(conn, &c);
        if let Err(e) = sub.add_consumer(handle.clone(), sub_type) {
            topic.release(&c.subscription);
            conn.service.non_persistent.release_if_idle(&topic);
            return Err(e);
        }
        Ok::<_, BrokerError>(NpConsumer {
            topic,
            subscription: sub,
            handle,
        })
    }
    .await;
    match result {
        Ok(consumer) => {
            conn.np_consumers.insert(c.consumer_id, consumer);
            conn.send(cmd::success(c.request_id)).await
        }
        Err(e) => {
            conn.send(cmd::error(c.request_id, e.server_error(), e.to_string()))
                .await
        }
    }
}

/// FLOW: permits for a non-persistent consumer.
pub fn flow(conn: &Connection, consumer_id: u64, permits: u32) {
    if let Some(c) = conn.np_consumers.get(&consumer_id) {
        c.handle
            .permits
            .fetch_add(i64::from(permits), Ordering::SeqCst);
    }
}

/// CLOSE_CONSUMER or UNSUBSCRIBE of a non-persistent consumer: detached, its subscription
/// gone with its last consumer.
pub async fn close_consumer(
    conn: &mut Connection,
    consumer_id: u64,
    request_id: u64,
) -> Result<()> {
    detach(conn, consumer_id);
    conn.send(cmd::success(request_id)).await
}

/// Detaches a non-persistent consumer (also on disconnect).
pub fn detach(conn: &mut Connection, consumer_id: u64) {
    if let Some(c) = conn.np_consumers.remove(&consumer_id) {
        if c.subscription.remove_consumer((conn.id, consumer_id)) {
            c.topic.release(&c.subscription.name);
        }
        conn.service.non_persistent.release_if_idle(&c.topic);
    }
}
