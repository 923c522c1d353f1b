//! Request commands the broker does not serve yet — GET_SCHEMA (no topic has a schema
//! yet), GET_OR_CREATE_SCHEMA, transactions — answered with the command's own error response,
//! so the client sees a clear error for that call and keeps its connection (closing it would
//! look like a network fault and fail every producer and consumer on it).

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::pb::base_command::Type;
use crate::protocol::pb::{
    BaseCommand, CommandGetOrCreateSchemaResponse, CommandGetSchemaResponse, CommandNewTxnResponse,
    CommandTcClientConnectResponse, ServerError,
};

/// GET_SCHEMA: no topic has a schema yet, which Pulsar answers as below.
pub async fn get_schema(conn: &mut Connection, request_id: u64) -> Result<()> {
    conn.send(BaseCommand {
        r#type: Type::GetSchemaResponse as i32,
        get_schema_response: Some(CommandGetSchemaResponse {
            request_id,
            error_code: Some(ServerError::TopicNotFound as i32),
            error_message: Some("Topic not found or no-schema".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
}

/// GET_OR_CREATE_SCHEMA: schemas are not stored yet.
pub async fn get_or_create_schema(conn: &mut Connection, request_id: u64) -> Result<()> {
    conn.send(BaseCommand {
        r#type: Type::GetOrCreateSchemaResponse as i32,
        get_or_create_schema_response: Some(CommandGetOrCreateSchemaResponse {
            request_id,
            error_code: Some(ServerError::NotAllowedError as i32),
            error_message: Some("schemas are not supported by this broker yet".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
}

/// NEW_TXN: no transaction coordinator.
pub async fn new_txn(conn: &mut Connection, request_id: u64) -> Result<()> {
    conn.send(BaseCommand {
        r#type: Type::NewTxnResponse as i32,
        new_txn_response: Some(CommandNewTxnResponse {
            request_id,
            error: Some(ServerError::TransactionCoordinatorNotFound as i32),
            message: Some("transactions are not supported by this broker".into()),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
}

/// TC_CLIENT_CONNECT_REQUEST: no transaction coordinator.
pub async fn tc_client_connect(conn: &mut Connection, request_id: u64) -> Result<()> {
    conn.send(BaseCommand {
        r#type: Type::TcClientConnectResponse as i32,
        tc_client_connect_response: Some(CommandTcClientConnectResponse {
            request_id,
            error: Some(ServerError::TransactionCoordinatorNotFound as i32),
            message: Some("transactions are not supported by this broker".into()),
        }),
        ..Default::default()
    })
    .await
}
