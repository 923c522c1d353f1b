//! `PUT /admin/v2/persistent/{tenant}/{namespace}/{topic}/compaction` starts compacting the
//! topic on its owner (409 while one runs); `GET` of the same path answers Pulsar's
//! LongRunningProcessStatus (`{"status": "RUNNING"|"SUCCESS"|"ERROR"|"NOT_RUN",
//! "lastError": …}`). See [`crate::topic::compaction`].

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::subscriptions::plain_topic;
use super::{either, reason};
use crate::service::BrokerService;
use crate::topic::compaction::Status;

pub(super) fn routes() -> Router<Arc<BrokerService>> {
    Router::new().route(
        "/admin/v2/persistent/{tenant}/{namespace}/{topic}/compaction",
        get(status).put(start),
    )
}

async fn start(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let t = plain_topic(&s, (&tenant, &namespace, &topic), &uri).await?;
            {
                let mut st = t
                    .compaction_status
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if *st == Status::Running {
                    return Err(reason(
                        StatusCode::CONFLICT,
                        "Compaction already in progress",
                    ));
                }
                *st = Status::Running;
            }
            tokio::spawn(t.compact(s.default_quorums()));
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn status(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let t = plain_topic(&s, (&tenant, &namespace, &topic), &uri).await?;
            let st = t
                .compaction_status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            Ok(axum::Json(st.json()).into_response())
        }
        .await,
    )
}
