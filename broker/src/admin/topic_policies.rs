//! A topic's own policies over its namespace's (`topic-policies/<tenant>/<ns>/<topic>`), on
//! the topic's owner (other brokers redirect): `GET|POST|DELETE
//! /admin/v2/persistent/{tenant}/{namespace}/{topic}/maxUnackedMessagesOnConsumer`. The
//! owner applies a change to the loaded topic at once; a topic loads its policies with it.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proto::meta::TopicPolicies;

use super::topics::{full_name, served_topic};
use super::{either, meta_error, reason};
use crate::service::BrokerService;

pub(super) fn routes() -> Router<Arc<BrokerService>> {
    Router::new().route(
        "/admin/v2/persistent/{tenant}/{namespace}/{topic}/maxUnackedMessagesOnConsumer",
        get(get_max_unacked)
            .post(set_max_unacked)
            .delete(remove_max_unacked),
    )
}

type Params = (String, String, String);

/// `GET`: the topic's own limit, or null (it follows its namespace).
async fn get_max_unacked(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<Params>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            let t = served_topic(&s, &name, &uri).await?;
            Ok(axum::Json(t.topic_max_unacked()).into_response())
        }
        .await,
    )
}

/// `POST` with a non-negative integer (0: unlimited).
async fn set_max_unacked(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<Params>,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    either(
        async {
            let n: i64 = serde_json::from_slice(&body).map_err(|e| {
                reason(StatusCode::BAD_REQUEST, format!("expected an integer: {e}"))
            })?;
            let n = u32::try_from(n).map_err(|_| {
                reason(
                    StatusCode::PRECONDITION_FAILED,
                    format!("maxUnackedMessagesOnConsumer must be at least 0, not {n}"),
                )
            })?;
            let name = full_name(&tenant, &namespace, &topic)?;
            let t = served_topic(&s, &name, &uri).await?;
            change(&s, &name, |p| p.max_unacked_messages_on_consumer = Some(n)).await?;
            t.set_max_unacked(true, Some(n)).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn remove_max_unacked(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<Params>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            let t = served_topic(&s, &name, &uri).await?;
            change(&s, &name, |p| p.max_unacked_messages_on_consumer = None).await?;
            t.set_max_unacked(true, None).await;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

/// Changes the stored policies by compare-and-set, re-reading on a conflict.
async fn change(
    s: &BrokerService,
    topic: &str,
    edit: impl Fn(&mut TopicPolicies),
) -> Result<(), Response> {
    for _ in 0..5 {
        let (mut p, version) = match s
            .namespaces
            .topic_policies(topic)
            .await
            .map_err(meta_error)?
        {
            Some((p, v)) => (p, Some(v)),
            None => (TopicPolicies::default(), None),
        };
        edit(&mut p);
        match s.namespaces.put_topic_policies(topic, p, version).await {
            Ok(()) => return Ok(()),
            Err(meta::MetaError::BadVersion { .. } | meta::MetaError::AlreadyExists { .. }) => {}
            Err(e) => return Err(meta_error(e)),
        }
    }
    Err(reason(
        StatusCode::CONFLICT,
        "the topic's policies kept changing; try again",
    ))
}
