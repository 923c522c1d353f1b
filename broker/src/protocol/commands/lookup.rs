//! PARTITIONED_METADATA (topics are not partitioned: 0) and LOOKUP (this broker serves every
//! topic: Connect to our advertised URL).

use crate::connection::Connection;
use crate::error::Result;
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
    let resp = match normalize_topic(&c.topic) {
        Ok(_) => CommandPartitionedTopicMetadataResponse {
            partitions: Some(0),
            request_id: c.request_id,
            response: Some(MetaType::Success as i32),
            ..Default::default()
        },
        Err(e) => CommandPartitionedTopicMetadataResponse {
            request_id: c.request_id,
            response: Some(MetaType::Failed as i32),
            error: Some(ServerError::InvalidTopicName as i32),
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
    let resp = match normalize_topic(&c.topic) {
        Ok(_) => CommandLookupTopicResponse {
            broker_service_url: Some(conn.service.service_url.clone()),
            response: Some(LookupType::Connect as i32),
            request_id: c.request_id,
            authoritative: Some(true),
            ..Default::default()
        },
        Err(e) => CommandLookupTopicResponse {
            response: Some(LookupType::Failed as i32),
            request_id: c.request_id,
            error: Some(ServerError::InvalidTopicName as i32),
            message: Some(e.to_string()),
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
