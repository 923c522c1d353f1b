//! Authorization of binary-protocol commands: before a command that touches a topic or a
//! namespace runs, the connection's role is checked, and a denial is answered in that
//! command's own response with Pulsar's error code (`AuthorizationError`) and message
//! (`../shared/reference/security.md` §3.1). Commands on existing producers and consumers
//! (SEND, ACK, SEEK, UNSUBSCRIBE, …) were authorized when those were created.

use crate::auth::authorization::TopicOp;
use crate::connection::Connection;
use crate::protocol::cmd;
use crate::protocol::pb::base_command::Type;
use crate::protocol::pb::{
    BaseCommand, CommandGetOrCreateSchemaResponse, CommandGetSchemaResponse,
    CommandLookupTopicResponse, CommandPartitionedTopicMetadataResponse, ServerError,
    command_lookup_topic_response, command_partitioned_topic_metadata_response,
};
use crate::service::normalize_topic;

/// The denial to send instead of running `c`, if its role may not.
pub async fn check(conn: &Connection, t: Type, c: &BaseCommand) -> Option<BaseCommand> {
    if !conn.service.authorizer.enabled {
        return None;
    }
    let role = conn.role.as_deref()?;
    let svc = &conn.service;
    let deny = ServerError::AuthorizationError as i32;
    // Topic commands: (topic, operation, answer on denial).
    let (topic, op, answer): (
        &str,
        TopicOp<'_>,
        Box<dyn FnOnce(String) -> BaseCommand + Send>,
    ) = match t {
        Type::PartitionedMetadata => {
            let m = c.partition_metadata.as_ref()?;
            let request_id = m.request_id;
            (
                &m.topic,
                TopicOp::Lookup,
                Box::new(move |_| BaseCommand {
                    r#type: Type::PartitionedMetadataResponse as i32,
                    partition_metadata_response: Some(CommandPartitionedTopicMetadataResponse {
                        request_id,
                        response: Some(
                            command_partitioned_topic_metadata_response::LookupType::Failed as i32,
                        ),
                        error: Some(deny),
                        message: Some("Client is not authorized to Get Partition Metadata".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            )
        }
        Type::Lookup => {
            let m = c.lookup_topic.as_ref()?;
            let request_id = m.request_id;
            (
                &m.topic,
                TopicOp::Lookup,
                Box::new(move |_| BaseCommand {
                    r#type: Type::LookupResponse as i32,
                    lookup_topic_response: Some(CommandLookupTopicResponse {
                        request_id,
                        response: Some(command_lookup_topic_response::LookupType::Failed as i32),
                        error: Some(deny),
                        message: Some("Client is not authorized to Lookup".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            )
        }
        Type::Producer => {
            let m = c.producer.as_ref()?;
            let request_id = m.request_id;
            (
                &m.topic,
                TopicOp::Produce,
                Box::new(move |_| {
                    cmd::error(
                        request_id,
                        ServerError::AuthorizationError,
                        "Client is not authorized to Produce".into(),
                    )
                }),
            )
        }
        Type::Subscribe => {
            let m = c.subscribe.as_ref()?;
            let request_id = m.request_id;
            (
                &m.topic,
                TopicOp::Consume(Some(&m.subscription)),
                Box::new(move |why: String| {
                    // The subscription rules say what is wrong; a missing grant, Pulsar's words.
                    let message = if why.contains("subscription") {
                        why
                    } else {
                        "Client is not authorized to subscribe".into()
                    };
                    cmd::error(request_id, ServerError::AuthorizationError, message)
                }),
            )
        }
        Type::GetSchema => {
            let m = c.get_schema.as_ref()?;
            let request_id = m.request_id;
            (
                &m.topic,
                TopicOp::Lookup,
                Box::new(move |_| BaseCommand {
                    r#type: Type::GetSchemaResponse as i32,
                    get_schema_response: Some(CommandGetSchemaResponse {
                        request_id,
                        error_code: Some(deny),
                        error_message: Some("Client is not authorized to get schema".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            )
        }
        Type::GetOrCreateSchema => {
            let m = c.get_or_create_schema.as_ref()?;
            let request_id = m.request_id;
            (
                &m.topic,
                TopicOp::Produce,
                Box::new(move |_| BaseCommand {
                    r#type: Type::GetOrCreateSchemaResponse as i32,
                    get_or_create_schema_response: Some(CommandGetOrCreateSchemaResponse {
                        request_id,
                        error_code: Some(deny),
                        error_message: Some("Client is not authorized to create schema".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            )
        }
        Type::GetTopicsOfNamespace | Type::WatchTopicList => {
            let (request_id, namespace) = match t {
                Type::GetTopicsOfNamespace => {
                    let m = c.get_topics_of_namespace.as_ref()?;
                    (m.request_id, m.namespace.as_str())
                }
                _ => {
                    let m = c.watch_topic_list.as_ref()?;
                    (m.request_id, m.namespace.as_str())
                }
            };
            let tenant_name = namespace.split('/').next().unwrap_or_default();
            let tenant = svc.namespaces.tenant(tenant_name).await.ok().flatten();
            let policies = svc.namespaces.namespace(namespace).await.ok().flatten();
            let a = &svc.authorizer;
            if a.allow_list_topics(
                role,
                tenant.as_ref().map(|(t, _)| t),
                policies.as_ref().map(|(p, _)| p),
            ) {
                return None;
            }
            refused(conn, role, namespace);
            // Pulsar says "Proxy Client" to every client here.
            return Some(cmd::error(
                request_id,
                ServerError::AuthorizationError,
                "Proxy Client is not authorized to GetTopicsOfNamespace".into(),
            ));
        }
        _ => return None,
    };
    // A malformed name is the handler's to report; so is a namespace that does not exist
    // (TopicNotFound, as Pulsar answers it to any role: there is nothing to protect).
    let name = normalize_topic(topic).ok()?;
    let ns = crate::ownership::bundles::namespace_of(&name);
    if matches!(svc.namespaces.namespace(ns).await, Ok(None)) {
        return None;
    }
    match svc.authorize_topic(role, &name, op).await {
        Ok(()) => None,
        Err(d) => {
            refused(conn, role, &name);
            Some(answer(d.0))
        }
    }
}

fn refused(conn: &Connection, role: &str, what: &str) {
    tracing::warn!(conn = conn.id, peer = ?conn.peer, role, what, "command not authorized");
    metrics::counter!("pulsar_authorization_failures_total").increment(1);
}
