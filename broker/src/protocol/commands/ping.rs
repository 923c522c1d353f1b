//! PING → PONG, promptly (clients drop connections that stay silent).

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::cmd;

/// Handles PING.
pub async fn handle(conn: &mut Connection) -> Result<()> {
    conn.send(cmd::pong()).await
}
