//! PARTITIONED_METADATA (the partition count of a partitioned topic, else 0) and LOOKUP: Connect when this broker
//! owns (or takes) the topic's bundle, Redirect to its owner, or to the least-loaded broker
//! for an unowned bundle (authoritative: that broker then takes it, so no redirect loop).

use crate::connection::Connection;
use crate::error::{BrokerError, Result};
use crate::ownership::LookupAnswer;
use crate::protocol::pb::base_command::Type;
use crate::protocol::pb::command_lookup_topic_response::LookupType;
use crate::protocol::pb::command_partitioned_topic_metadata_response::LookupType as MetaType;
use crate::protocol::pb::{
    BaseCommand, CommandLookupTopic, CommandLookupTopicResponse, CommandPartitionedTopicMetadata,
    CommandPartitionedTopicMetadataResponse, ServerError,
};
use crate::service::normalize_topic;

/// Handles PARTITIONED_METADATA.
pub async fn partitioned_metadata(
    conn: &mut Connection,
    c: CommandPartitionedTopicMetadata,
) -> Result<()> {
    let resp = match conn.service.partitions(&c.topic).await {
        Ok(n) => CommandPartitionedTopicMetadataResponse {
            partitions: Some(n),
            request_id: c.request_id,
            response: Some(MetaType::Success as i32),
            ..Default::default()
        },
        Err(e) => CommandPartitionedTopicMetadataResponse {
            request_id: c.request_id,
            response: Some(MetaType::Failed as i32),
            error: Some(e.server_error() as i32),
            message: Some(e.to_string()),
            ..Default::default()
        },
    };
    conn.send(BaseCommand {
        r#type: Type::PartitionedMetadataResponse as i32,
        partition_metadata_response: Some(resp),
        ..Default::default()
    })
    .await
}

/// Handles LOOKUP.
pub async fn lookup(conn: &mut Connection, c: CommandLookupTopic) -> Result<()> {
    // A client asking for a named listener (advertisedListeners): this broker has only its
    // one unnamed listener, and answers as Pulsar does for a listener it lacks.
    let listener = c
        .advertised_listener_name
        .as_deref()
        .filter(|l| !l.is_empty());
    let answer = match normalize_topic(&c.topic) {
        Ok(_) if listener.is_some() => Err((
            ServerError::ServiceNotReady,
            format!(
                "the broker do not have {} listener",
                listener.unwrap_or_default()
            ),
        )),
        Ok(_) if conn.service.is_draining() => Err((
            ServerError::ServiceNotReady,
            "this broker is shutting down; look up again".to_owned(),
        )),
        Ok(name) => match &conn.service.ownership {
            Some(o) => match conn.service.lookup_permits.clone().try_acquire_owned() {
                // Pulsar's maxConcurrentLookupRequest: past it the client backs off.
                Err(_) => {
                    metrics::counter!("pulsar_broker_lookup_rejected_total").increment(1);
                    Err((
                        ServerError::TooManyRequests,
                        "Failed due to too many pending lookup requests".to_owned(),
                    ))
                }
                Ok(_permit) => o
                    .lookup(&name, c.authoritative.unwrap_or(false))
                    .await
                    .map_err(|e| match e {
                        BrokerError::TopicNotFound(m) => (ServerError::TopicNotFound, m),
                        e => (ServerError::ServiceNotReady, e.to_string()),
                    }),
            },
            None => Ok(LookupAnswer::Connect),
        },
        Err(e) => Err((ServerError::InvalidTopicName, e.to_string())),
    };
    let resp = match answer {
        Ok(LookupAnswer::Connect) => CommandLookupTopicResponse {
            broker_service_url: Some(conn.service.service_url.clone()),
            // A client on TLS connects to this one (`brokerServiceUrlTls`).
            broker_service_url_tls: Some(conn.service.service_url_tls.clone())
                .filter(|u| !u.is_empty()),
            response: Some(LookupType::Connect as i32),
            request_id: c.request_id,
            authoritative: Some(true),
            ..Default::default()
        },
        Ok(LookupAnswer::Redirect {
            service_url,
            service_url_tls,
            ..
        }) => CommandLookupTopicResponse {
            broker_service_url: Some(service_url),
            broker_service_url_tls: Some(service_url_tls).filter(|u| !u.is_empty()),
            response: Some(LookupType::Redirect as i32),
            request_id: c.request_id,
            authoritative: Some(true),
            ..Default::default()
        },
        Err((error, message)) => CommandLookupTopicResponse {
            response: Some(LookupType::Failed as i32),
            request_id: c.request_id,
            error: Some(error as i32),
            message: Some(message),
            ..Default::default()
        },
    };
    conn.send(BaseCommand {
        r#type: Type::LookupResponse as i32,
        lookup_topic_response: Some(resp),
        ..Default::default()
    })
    .await
}
