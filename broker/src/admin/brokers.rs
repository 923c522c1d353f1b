//! `/admin/v2/brokers`: the live brokers of the cluster, the leader, this broker's health
//! and readiness (what container and Kubernetes probes call), and a graceful shutdown.
//!
//! The leader is the broker whose registration is oldest (lowest etcd create revision), the
//! way an etcd election over one key prefix picks it: every broker computes the same answer
//! from the same registrations, with no extra key to keep.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proto::meta::BrokerInfo;

use super::reason;
use crate::service::BrokerService;

/// Bound on the metadata calls a health check makes: a probe must answer, not hang.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn routes() -> Router<Arc<BrokerService>> {
    Router::new()
        .route("/admin/v2/brokers/health", get(health))
        .route("/admin/v2/brokers/ready", get(ready))
        .route("/admin/v2/brokers/leaderBroker", get(leader))
        .route("/admin/v2/brokers/shutdown", axum::routing::post(shutdown))
        .route("/admin/v2/brokers/{cluster}", get(list))
}

/// Live registrations, oldest first.
async fn registrations(s: &BrokerService) -> Result<Vec<BrokerInfo>, Response> {
    let (store, keys) = s.meta();
    let prefix = keys.brokers_prefix();
    let read = meta::range_all(store.as_ref(), &prefix, 1000);
    let (mut kvs, _) = match tokio::time::timeout(CHECK_TIMEOUT, read).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(reason(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        Err(_) => {
            return Err(reason(
                StatusCode::SERVICE_UNAVAILABLE,
                "the metadata store did not answer within 5 s",
            ));
        }
    };
    kvs.sort_by_key(|kv| kv.create_revision);
    kvs.iter()
        .map(|kv| meta::records::decode::<BrokerInfo>(&kv.key, &kv.value))
        .collect::<Result<_, _>>()
        .map_err(|e| reason(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `host:port` of a broker's HTTP service, as Pulsar lists brokers.
fn web_address(b: &BrokerInfo) -> String {
    let url = if b.http_url.is_empty() {
        &b.broker_id
    } else {
        &b.http_url
    };
    url.trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned()
}

async fn list(State(s): State<Arc<BrokerService>>, Path(cluster): Path<String>) -> Response {
    if cluster != s.cluster {
        return reason(
            StatusCode::NOT_FOUND,
            format!("cluster {cluster} does not exist"),
        );
    }
    match registrations(&s).await {
        Ok(brokers) => {
            axum::Json(brokers.iter().map(web_address).collect::<Vec<_>>()).into_response()
        }
        Err(r) => r,
    }
}

async fn leader(State(s): State<Arc<BrokerService>>) -> Response {
    match registrations(&s).await {
        Ok(brokers) => match brokers.first() {
            Some(b) => axum::Json(serde_json::json!({
                "serviceUrl": b.http_url,
                "brokerId": web_address(b),
            }))
            .into_response(),
            None => reason(StatusCode::NOT_FOUND, "no broker is registered"),
        },
        Err(r) => r,
    }
}

/// `ok` while this broker can serve: not shutting down, enough bookies answering it (the
/// storage watch), registered under a live lease, the metadata store answering, and enough
/// writable bookies for a new ledger's ensemble.
/// Otherwise 503 with what is wrong.
async fn health(State(s): State<Arc<BrokerService>>) -> Response {
    if s.is_draining() {
        return reason(
            StatusCode::SERVICE_UNAVAILABLE,
            "the broker is shutting down",
        );
    }
    if let Some(o) = &s.ownership
        && !o.storage_reachable()
    {
        return reason(
            StatusCode::SERVICE_UNAVAILABLE,
            "too few bookies answer this broker: its bundles were given to other brokers",
        );
    }
    if let Some(o) = &s.ownership
        && !o.has_lease()
    {
        return reason(
            StatusCode::SERVICE_UNAVAILABLE,
            "the broker holds no lease in the metadata store (not registered yet, or lost)",
        );
    }
    let bookies = match tokio::time::timeout(CHECK_TIMEOUT, s.writable_bookies()).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return reason(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(_) => {
            return reason(
                StatusCode::SERVICE_UNAVAILABLE,
                "the metadata store did not answer within 5 s",
            );
        }
    };
    if bookies < s.ensemble_size() {
        return reason(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{bookies} writable bookies registered, new ledgers need {}",
                s.ensemble_size()
            ),
        );
    }
    "ok".into_response()
}

/// `ok` once the broker accepts clients and until it starts shutting down.
async fn ready(State(s): State<Arc<BrokerService>>) -> Response {
    if s.is_draining() {
        reason(
            StatusCode::SERVICE_UNAVAILABLE,
            "the broker is shutting down",
        )
    } else {
        "ok".into_response()
    }
}

/// Starts a graceful shutdown, as SIGTERM does: every owned bundle is handed over (clients
/// told to reconnect, cursors persisted, ledgers closed, ownership released), then the
/// process exits. Answers 204 at once; the caller watches the broker go away.
async fn shutdown(State(s): State<Arc<BrokerService>>) -> Response {
    tracing::info!("shutdown requested over the admin API");
    s.shutdown_requested.cancel();
    StatusCode::NO_CONTENT.into_response()
}
