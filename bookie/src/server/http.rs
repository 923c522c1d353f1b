//! The bookie's HTTP endpoint: `/metrics` (Prometheus), `/api/v1/bookie/state` and
//! `/api/v1/bookie/is_ready` (BookKeeper's shapes, for probes).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::telemetry::PrometheusHandle;

use super::Shared;

#[derive(Clone)]
struct HttpState {
    shared: Arc<Shared>,
    metrics: Option<PrometheusHandle>,
}

/// The router.
pub fn router(shared: Arc<Shared>, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/api/v1/bookie/state", get(state))
        .route("/api/v1/bookie/is_ready", get(is_ready))
        .with_state(HttpState { shared, metrics })
}

async fn metrics_text(State(s): State<HttpState>) -> Response {
    match &s.metrics {
        Some(h) => h.render().into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
    }
}

async fn state(State(s): State<HttpState>) -> Response {
    let engine = &s.shared.engine;
    axum::Json(serde_json::json!({
        "running": !engine.is_shutting_down(),
        "readOnly": engine.is_read_only(),
        "shuttingDown": engine.is_shutting_down(),
        "availableForHighPriorityWrites": !engine.is_shutting_down(),
        "state": s.shared.state_name(),
    }))
    .into_response()
}

async fn is_ready(State(s): State<HttpState>) -> Response {
    if s.shared.engine.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (StatusCode::OK, "OK\n").into_response()
    }
}
