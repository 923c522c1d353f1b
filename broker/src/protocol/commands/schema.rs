//! GET_SCHEMA (a version, or the latest, of a topic's schema: clients fetch the version a
//! message names to decode it) and GET_OR_CREATE_SCHEMA (register a schema as a producer
//! would, answer its version). See [`crate::schema`].

use crate::connection::Connection;
use crate::error::{BrokerError, Result};
use crate::protocol::pb::base_command::Type;
use crate::protocol::pb::{
    BaseCommand, CommandGetOrCreateSchema, CommandGetOrCreateSchemaResponse, CommandGetSchema,
    CommandGetSchemaResponse, ServerError,
};
use crate::schema::{to_wire, version_bytes, version_of};
use crate::service::normalize_topic;

/// Handles GET_SCHEMA.
pub async fn get_schema(conn: &mut Connection, c: CommandGetSchema) -> Result<()> {
    let found = async {
        let topic = normalize_topic(&c.topic)?;
        let version = match c.schema_version.as_deref() {
            None | Some([]) => None,
            Some(b) => Some(version_of(b).ok_or_else(|| {
                BrokerError::Protocol(format!("schema version of {} bytes", b.len()))
            })?),
        };
        Ok::<_, BrokerError>((conn.service.schemas.get(&topic, version).await?, topic))
    }
    .await;
    let mut resp = CommandGetSchemaResponse {
        request_id: c.request_id,
        ..Default::default()
    };
    match found {
        Ok((Some(s), topic)) => {
            resp.schema_version = Some(version_bytes(s.version));
            resp.schema = Some(to_wire(&s, &topic));
        }
        Ok((None, _)) => {
            resp.error_code = Some(ServerError::TopicNotFound as i32);
            resp.error_message = Some("Topic not found or no-schema".into());
        }
        Err(e) => {
            resp.error_code = Some(e.server_error() as i32);
            resp.error_message = Some(e.to_string());
        }
    }
    conn.send(BaseCommand {
        r#type: Type::GetSchemaResponse as i32,
        get_schema_response: Some(resp),
        ..Default::default()
    })
    .await
}

/// Handles GET_OR_CREATE_SCHEMA.
pub async fn get_or_create_schema(
    conn: &mut Connection,
    c: CommandGetOrCreateSchema,
) -> Result<()> {
    let result = async {
        // As Pulsar: the topic must be one this broker serves (loaded, or loadable under the
        // namespace's rules). A schema for any well-formed name would let anyone write
        // metadata for namespaces that do not exist.
        let topic = conn.service.topic(&normalize_topic(&c.topic)?).await?;
        conn.service.register_schema(&topic.name, &c.schema).await
    }
    .await;
    let mut resp = CommandGetOrCreateSchemaResponse {
        request_id: c.request_id,
        ..Default::default()
    };
    match result {
        Ok(v) => resp.schema_version = Some(version_bytes(v)),
        Err(e) => {
            resp.error_code = Some(e.server_error() as i32);
            resp.error_message = Some(e.to_string());
        }
    }
    conn.send(BaseCommand {
        r#type: Type::GetOrCreateSchemaResponse as i32,
        get_or_create_schema_response: Some(resp),
        ..Default::default()
    })
    .await
}
