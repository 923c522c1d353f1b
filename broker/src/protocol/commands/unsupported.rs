//! Request commands the broker does not serve yet — transactions — answered with the
//! command's own error response,
//! so the client sees a clear error for that call and keeps its connection (closing it would
//! look like a network fault and fail every producer and consumer on it).

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::pb::base_command::Type;
use crate::protocol::pb::{
    BaseCommand, CommandNewTxnResponse, CommandTcClientConnectResponse, CommandTxnOperation,
    CommandTxnOperationResponse, ServerError,
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

/// ADD_PARTITION_TO_TXN, ADD_SUBSCRIPTION_TO_TXN, END_TXN, END_TXN_ON_PARTITION and
/// END_TXN_ON_SUBSCRIPTION (a client only sends them after a NEW_TXN, which is refused; a
/// broker-to-broker call in Pulsar): each answered with its own response carrying
/// `TransactionCoordinatorNotFound` (or `NotAllowed` for the broker-side ones) and the
/// transaction id it named.
pub async fn txn_operation(conn: &mut Connection, t: Type, r: CommandTxnOperation) -> Result<()> {
    let error = match t {
        Type::EndTxnOnPartition | Type::EndTxnOnSubscription => ServerError::NotAllowedError,
        _ => ServerError::TransactionCoordinatorNotFound,
    };
    let response = Some(CommandTxnOperationResponse {
        request_id: r.request_id,
        txnid_least_bits: r.txnid_least_bits,
        txnid_most_bits: r.txnid_most_bits,
        error: Some(error as i32),
        message: Some("transactions are not supported by this broker".into()),
    });
    let mut c = BaseCommand::default();
    let (answer, slot) = match t {
        Type::AddPartitionToTxn => (
            Type::AddPartitionToTxnResponse,
            &mut c.add_partition_to_txn_response,
        ),
        Type::AddSubscriptionToTxn => (
            Type::AddSubscriptionToTxnResponse,
            &mut c.add_subscription_to_txn_response,
        ),
        Type::EndTxn => (Type::EndTxnResponse, &mut c.end_txn_response),
        Type::EndTxnOnPartition => (
            Type::EndTxnOnPartitionResponse,
            &mut c.end_txn_on_partition_response,
        ),
        Type::EndTxnOnSubscription => (
            Type::EndTxnOnSubscriptionResponse,
            &mut c.end_txn_on_subscription_response,
        ),
        other => {
            tracing::debug!(command = ?other, "not a transaction operation");
            return Ok(());
        }
    };
    *slot = response;
    c.r#type = answer as i32;
    conn.send(c).await
}
