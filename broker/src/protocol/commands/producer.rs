//! PRODUCER → PRODUCER_SUCCESS with a broker-generated unique name (when the client gave
//! none). Loading the topic fences its previous owner. A re-sent create for an id that
//! already exists (a client retrying after a timeout) gets the same answer again, unless
//! its topic was unloaded or it was fenced since (then it is created again, under the rules).
//! Access modes as in Pulsar (see `Topic::add_producer`): Shared, Exclusive,
//! ExclusiveWithFencing; WaitForExclusive on a busy topic gets PRODUCER_SUCCESS with
//! `producer_ready = false` and a second one (ready) once the topic is free.

use tokio::sync::mpsc;

use crate::connection::{Connection, ProducerState};
use crate::error::Result;
use crate::protocol::pb::base_command::Type;
use crate::protocol::pb::{BaseCommand, CommandProducer, CommandProducerSuccess, ServerError};
use crate::protocol::{cmd, commands::send};
use crate::topic::AccessMode;

/// Handles PRODUCER.
pub async fn handle(conn: &mut Connection, c: CommandProducer) -> Result<()> {
    if let Some(p) = conn.producers.get(&c.producer_id) {
        if !p.topic.is_closed() && p.topic.has_producer((conn.id, c.producer_id)) {
            let name = p.name.clone();
            let last = p.topic.last_sequence_id(&name);
            let version = p.schema_version.clone();
            return conn.send(success(c.request_id, name, last, version)).await;
        }
        // Its topic was unloaded, or it was fenced (the client was told to reconnect):
        // create it afresh, under the access rules.
        conn.producers.remove(&c.producer_id);
    }
    if let Err(e) = crate::service::check_client_name(
        "producer",
        c.producer_name.as_deref().unwrap_or(""),
        false,
    ) {
        return conn
            .send(cmd::error(c.request_id, e.server_error(), e.to_string()))
            .await;
    }
    let topic = match conn.service.topic(&c.topic).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(topic = c.topic, error = %e, "cannot load topic for a producer");
            return conn
                .send(cmd::error(c.request_id, e.server_error(), e.to_string()))
                .await;
        }
    };
    let name = match c.producer_name.filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => topic.next_producer_name("magnetar"),
    };
    if topic.ml.terminated_at().is_some() {
        let e = crate::error::BrokerError::TopicTerminated(topic.name.clone());
        return conn
            .send(cmd::error(c.request_id, e.server_error(), e.to_string()))
            .await;
    }
    let limits = conn.service.limits(&topic.name).await;
    match crate::topic::backlog_quota::blocking(&topic, &limits.quotas).await {
        Ok(Some(policy)) => {
            let (code, msg) = crate::topic::backlog_quota::refusal(policy);
            tracing::info!(topic = c.topic, producer = name, "producer refused: {msg}");
            return conn.send(cmd::error(c.request_id, code, msg)).await;
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(topic = c.topic, error = %e, "cannot check the backlog quota"),
    }
    let limit = limits.producers_per_topic;
    if crate::service::reached(topic.producers().len(), limit) {
        let msg = format!("Topic reached max producers limit ({limit})");
        tracing::info!(topic = c.topic, producer = name, "producer refused: {msg}");
        return conn
            .send(cmd::error(c.request_id, ServerError::ProducerBusy, msg))
            .await;
    }
    // Its schema: the version of an identical one, or a new version if compatible.
    let schema_version = match c.schema.as_ref().filter(|s| crate::schema::is_schema(s)) {
        None => None,
        Some(s) => {
            let registered = conn.service.register_schema(&topic.name, s).await;
            match registered {
                Ok(v) => Some(crate::schema::version_bytes(v)),
                Err(e) => {
                    tracing::info!(topic = c.topic, producer = name, error = %e, "producer's schema refused");
                    return conn
                        .send(cmd::error(c.request_id, e.server_error(), e.to_string()))
                        .await;
                }
            }
        }
    };
    // `initial_subscription_name` (a dead-letter producer's): a durable subscription from
    // here on, created with the producer, as Pulsar does, so nothing it publishes is missed.
    if let Some(sub) = c
        .initial_subscription_name
        .as_deref()
        .filter(|s| !s.is_empty())
        && topic.existing_subscription(sub).await.is_none()
    {
        let mark = topic.ml.last_position();
        match topic.create_subscription(sub, mark).await {
            Ok(())
            | Err(crate::error::BrokerError::Meta(meta::MetaError::AlreadyExists { .. })) => {}
            Err(e) => {
                return conn
                    .send(cmd::error(c.request_id, e.server_error(), e.to_string()))
                    .await;
            }
        }
    }
    let mode = AccessMode::from_wire(c.producer_access_mode.unwrap_or(0));
    let added = match topic.add_producer(
        (conn.id, c.producer_id),
        name.clone(),
        mode,
        conn.out.clone(),
        c.request_id,
    ) {
        Ok(a) => a,
        Err(e) => {
            tracing::info!(topic = c.topic, producer = name, error = %e, "producer refused");
            return conn
                .send(cmd::error(c.request_id, e.server_error(), e.to_string()))
                .await;
        }
    };
    let (fenced, waiting) = match added {
        crate::topic::Added::Ready(f) => (f, false),
        crate::topic::Added::Waiting(f) => (f, true),
    };
    let (tx, rx) = mpsc::channel(4096);
    tokio::spawn(send::receipts(
        c.producer_id,
        topic.clone(),
        rx,
        conn.out.clone(),
    ));
    conn.producers.insert(
        c.producer_id,
        ProducerState {
            topic,
            name: name.clone(),
            receipts: tx,
            fenced,
            schema_version: schema_version.clone(),
        },
    );
    let last = conn.producers[&c.producer_id].topic.last_sequence_id(&name);
    let mut answer = success(c.request_id, name, last, schema_version);
    if waiting && let Some(s) = answer.producer_success.as_mut() {
        // Not ready: the client waits for the second PRODUCER_SUCCESS (the topic's
        // `grant_waiter`).
        s.producer_ready = Some(false);
    }
    conn.send(answer).await
}

fn success(
    request_id: u64,
    producer_name: String,
    last_sequence_id: i64,
    schema_version: Option<bytes::Bytes>,
) -> BaseCommand {
    BaseCommand {
        r#type: Type::ProducerSuccess as i32,
        producer_success: Some(CommandProducerSuccess {
            request_id,
            producer_name,
            last_sequence_id: Some(last_sequence_id),
            schema_version,
            ..Default::default()
        }),
        ..Default::default()
    }
}
