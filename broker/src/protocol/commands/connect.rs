//! CONNECT → CONNECTED, at protocol version min(client, ours).

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::pb::CommandConnect;
use crate::protocol::{MAX_PROTOCOL_VERSION, cmd};

/// Handles CONNECT.
pub async fn handle(conn: &mut Connection, c: CommandConnect) -> Result<()> {
    let version = c
        .protocol_version
        .unwrap_or(0)
        .clamp(1, MAX_PROTOCOL_VERSION);
    conn.protocol_version = version;
    conn.broker_entry_metadata = c
        .feature_flags
        .as_ref()
        .and_then(|f| f.supports_broker_entry_metadata)
        .unwrap_or(false);
    tracing::debug!(
        conn = conn.id,
        client = c.client_version,
        version,
        "client connected"
    );
    conn.send(cmd::connected(version, conn.max_message_size as i32))
        .await
}
