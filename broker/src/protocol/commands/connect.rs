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
        Ok(role) => {
            conn.role = role;
            conn.auth_expires = conn.service.authenticator.expires_at(&method, &data);
            conn.auth_method = method.clone();
        }
        Err(e) => {
            tracing::warn!(conn = conn.id, peer = ?conn.peer, method, reason = %e, "authentication failed");
            return Err(refuse_credentials(conn, format!("authentication failed: {e}")).await);
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
    conn.supports_auth_refresh = c
        .feature_flags
        .as_ref()
        .and_then(|f| f.supports_auth_refresh)
        .unwrap_or(false);
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

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The periodic check of PIP-55 (Pulsar's ServerCnx.refreshAuthenticationCredentials):
/// credentials past their expiry are challenged once; a client that cannot answer
/// challenges, or left the previous one unanswered, is disconnected (`Err`).
pub async fn check_expiry(conn: &mut Connection) -> Result<()> {
    let Some(expires) = conn.auth_expires else {
        return Ok(());
    };
    if now_secs() < expires {
        return Ok(());
    }
    if !conn.supports_auth_refresh {
        return Err(crate::error::BrokerError::Protocol(
            "credentials expired and the client cannot refresh them".into(),
        ));
    }
    if conn.auth_challenge_pending {
        return Err(crate::error::BrokerError::Protocol(
            "credentials expired and the refresh challenge went unanswered".into(),
        ));
    }
    conn.auth_challenge_pending = true;
    metrics::counter!("pulsar_authentication_refresh_challenges_total").increment(1);
    conn.send(crate::protocol::pb::BaseCommand {
        r#type: crate::protocol::pb::base_command::Type::AuthChallenge as i32,
        auth_challenge: Some(crate::protocol::pb::CommandAuthChallenge {
            server_version: Some(format!("Magnetar-{}", env!("CARGO_PKG_VERSION"))),
            challenge: Some(crate::protocol::pb::AuthData {
                auth_method_name: Some(conn.auth_method.clone()),
                auth_data: Some(bytes::Bytes::from_static(b"PulsarAuthRefresh")),
            }),
            protocol_version: Some(conn.protocol_version),
        }),
        ..Default::default()
    })
    .await
}

/// AUTH_RESPONSE: new credentials for the same role keep the connection; anything else
/// (bad credentials, another role, an unasked answer with a new role) ends it.
pub async fn auth_response(
    conn: &mut Connection,
    c: crate::protocol::pb::CommandAuthResponse,
) -> Result<()> {
    let data = c.response.unwrap_or_default();
    let method = data
        .auth_method_name
        .unwrap_or_else(|| conn.auth_method.clone());
    let bytes = data.auth_data.unwrap_or_default();
    let cert = conn.peer_cert.clone();
    let refused =
        |why: String| crate::error::BrokerError::Protocol(format!("refresh refused: {why}"));
    match conn
        .service
        .authenticator
        .connect(&method, &bytes, cert.as_deref())
    {
        Ok(role) if role == conn.role => {
            conn.auth_expires = conn.service.authenticator.expires_at(&method, &bytes);
            conn.auth_method = method;
            conn.auth_challenge_pending = false;
            tracing::debug!(conn = conn.id, "credentials refreshed");
            Ok(())
        }
        Ok(role) => {
            tracing::warn!(conn = conn.id, peer = ?conn.peer, old = ?conn.role, new = ?role, "refresh with another role");
            Err(refused("the role changed".into()))
        }
        Err(e) => {
            tracing::warn!(conn = conn.id, peer = ?conn.peer, method, reason = %e, "credential refresh failed");
            Err(refuse_credentials(conn, format!("refresh refused: {e}")).await)
        }
    }
}

/// Pulsar's answer to credentials that do not verify (`AuthenticationError`, "Failed to
/// authenticate", never the reason): the error that closes the connection.
async fn refuse_credentials(conn: &Connection, why: String) -> crate::error::BrokerError {
    let _ = conn
        .send(cmd::error(
            u64::MAX,
            crate::protocol::pb::ServerError::AuthenticationError,
            "Failed to authenticate".into(),
        ))
        .await;
    crate::error::BrokerError::Protocol(why)
}
