//! Request commands the broker does not serve yet — transactions — answered with the command's own error response,
//! so the client sees a clear error for that call and keeps its connection (closing it would
//! look like a network fault and fail every producer and consumer on it).

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::pb::base_command::Type;
use crate::protocol::pb::{
    BaseCommand, CommandNewTxnResponse, CommandTcClientConnectResponse, ServerError,
};

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
