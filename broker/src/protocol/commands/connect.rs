//! CONNECT → CONNECTED, at protocol version min(client, ours).

use crate::connection::Connection;
use crate::error::Result;
use crate::protocol::pb::CommandConnect;
use crate::protocol::{MAX_PROTOCOL_VERSION, cmd};

/// The method name of the legacy `auth_method` enum (Pulsar's AuthMethod: 2 = athenz).
fn legacy_method(m: Option<i32>) -> Option<String> {
    match m {
        Some(2) => Some("athens".into()),
        _ => None,
    }
}

/// Handles CONNECT.
pub async fn handle(conn: &mut Connection, c: CommandConnect) -> Result<()> {
    let version = c
        .protocol_version
        .unwrap_or(0)
        .clamp(1, MAX_PROTOCOL_VERSION);
    // Authentication (Pulsar's ServerCnx.handleConnect): a known method whose data does not
    // verify, or no credential without an anonymous role, is refused and the connection
    // closed; the credential itself is never logged.
    let method = c
        .auth_method_name
        .clone()
        .or_else(|| legacy_method(c.auth_method))
        .unwrap_or_default();
    let data = c.auth_data.clone().unwrap_or_default();
    let cert = conn.peer_cert.clone();
    match conn
        .service
        .authenticator
        .connect(&method, &data, cert.as_deref())
    {
        Ok(role) => conn.role = role,
        Err(e) => {
            tracing::warn!(conn = conn.id, peer = ?conn.peer, method, reason = %e, "authentication failed");
            let _ = conn
                .send(cmd::error(
                    u64::MAX,
                    crate::protocol::pb::ServerError::AuthenticationError,
                    "Failed to authenticate".into(),
                ))
                .await;
            return Err(crate::error::BrokerError::Protocol(format!(
                "authentication failed: {e}"
            )));
        }
    }
    // A proxy must say whom it connects for, and no one else may (Pulsar's
    // isValidOriginalPrincipal).
    if let Some(role) = &conn.role
        && let Err(denied) = conn
            .service
            .authorizer
            .check_proxy(role, c.original_principal.as_deref())
    {
        tracing::warn!(conn = conn.id, peer = ?conn.peer, role, reason = denied.0, "connection refused");
        let _ = conn
            .send(cmd::error(
                u64::MAX,
                crate::protocol::pb::ServerError::AuthorizationError,
                denied.0.clone(),
            ))
            .await;
        return Err(crate::error::BrokerError::Protocol(denied.0));
    }
    // A proxy's client is authorized as itself: the proxy vouched for it.
    if conn.role.as_ref().is_some_and(|r| {
        conn.service.authorizer.enabled && conn.service.authorizer.proxy_roles.contains(r)
    }) {
        conn.role = c.original_principal.clone();
    }
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
