//! `/admin/v2/clusters`: this broker's one cluster (several clusters and geo-replication are
//! not supported: creating another is refused with a reason).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::reason;
use crate::service::BrokerService;

pub(super) fn routes() -> Router<Arc<BrokerService>> {
    Router::new()
        .route("/admin/v2/clusters", get(list))
        .route("/admin/v2/clusters/{cluster}", get(one).put(create))
}

async fn list(State(s): State<Arc<BrokerService>>) -> Response {
    axum::Json(vec![s.cluster.clone()]).into_response()
}

async fn one(State(s): State<Arc<BrokerService>>, Path(cluster): Path<String>) -> Response {
    if cluster != s.cluster {
        return reason(
            StatusCode::NOT_FOUND,
            format!("cluster {cluster} does not exist"),
        );
    }
    let http = s
        .ownership
        .as_ref()
        .map(|o| o.http_url().to_owned())
        .unwrap_or_default();
    axum::Json(serde_json::json!({
        "serviceUrl": http,
        "brokerServiceUrl": s.service_url,
    }))
    .into_response()
}

async fn create(State(s): State<Arc<BrokerService>>, Path(cluster): Path<String>) -> Response {
    if cluster == s.cluster {
        reason(
            StatusCode::CONFLICT,
            format!("cluster {cluster} already exists"),
        )
    } else {
        reason(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "this broker serves cluster {}; other clusters (geo-replication) are not supported",
                s.cluster
            ),
        )
    }
}
