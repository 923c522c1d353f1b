//! Authentication of HTTP requests (admin, lookup): a layer in front of every route but the
//! ones probes and scrapers call (`/metrics`, `/status`, the health checks), answering 401
//! "Authentication required" as Pulsar's AuthenticationFilter does.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::service::BrokerService;

/// Paths served without authentication (Pulsar: `authenticateMetricsEndpoint=false`; probes).
const OPEN: [&str; 4] = [
    "/metrics",
    "/status",
    "/admin/v2/brokers/health",
    "/admin/v2/brokers/ready",
];

/// The role a request authenticated as, for the handlers (none when authentication is off).
#[derive(Debug, Clone)]
pub struct HttpRole(pub Option<String>);

/// The layer (`axum::middleware::from_fn_with_state`).
pub async fn authenticate(
    State(s): State<Arc<BrokerService>>,
    mut req: Request,
    next: Next,
) -> Response {
    if !s.authenticator.enabled() || OPEN.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<crate::tls::listener::HttpPeer>>()
        .map(|ConnectInfo(p)| p.clone());
    let verdict = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        s.authenticator.http(
            header("x-pulsar-auth-method-name"),
            header("authorization"),
            peer.as_ref().and_then(|p| p.cert.as_deref()),
        )
    };
    match verdict {
        Ok(role) => {
            req.extensions_mut().insert(HttpRole(role));
            next.run(req).await
        }
        Err(e) => {
            tracing::warn!(
                peer = ?peer.map(|p| p.addr),
                path = req.uri().path(),
                reason = %e,
                "HTTP authentication failed"
            );
            crate::admin::reason(StatusCode::UNAUTHORIZED, "Authentication required")
        }
    }
}
