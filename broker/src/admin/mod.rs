//! The broker's `/admin/v2` REST API, with Pulsar's paths, status codes and JSON field names
//! (`../shared/reference/ecosystem.md` §1.1): brokers (list, leader, health), clusters, tenants, namespaces, persistent
//! topics (plain and partitioned), their subscriptions (create, delete, skip, clear, reset,
//! expire), reading messages without consuming them (peek, examine, by id), schemas and
//! unloading. One file per resource. A call about a topic
//! or bundle another broker owns answers `307 Temporary Redirect` to it, as Pulsar does.
//! Errors answer `{"reason": "…"}` with Pulsar's status: 400 malformed body, 404 missing,
//! 409 already exists or not empty, 412 invalid name, 503 not ready.

// Handlers return `Result<Response, Response>`: the error is the answer, built once per
// request and handed straight to axum, so its size costs nothing worth boxing for.
#![allow(clippy::result_large_err)]

pub mod access;
mod brokers;
mod clusters;
mod compaction;
mod messages;
mod namespace_policies;
mod namespaces;
mod permissions;
mod schemas;
mod subscriptions;
mod tenants;
mod topic_policies;
mod topics;
mod unload;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::BrokerError;
use crate::service::BrokerService;

/// Every admin route.
pub fn routes(service: Arc<BrokerService>) -> Router {
    Router::new()
        .merge(brokers::routes())
        .merge(clusters::routes())
        .merge(tenants::routes())
        .merge(namespaces::routes())
        .merge(permissions::routes())
        .merge(topics::routes())
        .merge(subscriptions::routes())
        .merge(messages::routes())
        .merge(schemas::routes())
        .merge(topic_policies::routes())
        .merge(compaction::routes())
        .merge(unload::routes())
        .with_state(service)
}

/// An error answer: `status` with `{"reason": …}`.
pub(crate) fn reason(status: StatusCode, reason: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "reason": reason.into() })),
    )
        .into_response()
}

/// The answer for a failed call.
pub(crate) fn error(e: &BrokerError) -> Response {
    let status = match e {
        BrokerError::InvalidTopic(_) => StatusCode::PRECONDITION_FAILED,
        BrokerError::TopicNotFound(_) | BrokerError::NotFound(_) => StatusCode::NOT_FOUND,
        BrokerError::ConsumerBusy(_) => StatusCode::CONFLICT,
        BrokerError::TopicTerminated(_) => StatusCode::CONFLICT,
        BrokerError::IncompatibleSchema(_) => StatusCode::CONFLICT,
        BrokerError::InvalidSchema(_) => StatusCode::UNPROCESSABLE_ENTITY,
        BrokerError::NotAllowed(_) => StatusCode::PRECONDITION_FAILED,
        BrokerError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
        BrokerError::NotOwner(_) | BrokerError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        BrokerError::Meta(meta::MetaError::AlreadyExists { .. }) => StatusCode::CONFLICT,
        BrokerError::Meta(meta::MetaError::BadVersion { .. }) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::warn!(error = %e, status = status.as_u16(), "admin call failed");
    }
    reason(status, e.to_string())
}

/// `307` to the same path on `owner_http`.
pub(crate) fn redirect(owner_http: &str, uri: &axum::http::Uri) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("{}{path}", owner_http.trim_end_matches('/'));
    (
        StatusCode::TEMPORARY_REDIRECT,
        [(header::LOCATION, location)],
    )
        .into_response()
}

/// Parses a JSON body; an empty body is `T::default()`. Malformed: 400 with the reason.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
) -> Result<T, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        reason(
            StatusCode::BAD_REQUEST,
            format!("malformed request body: {e}"),
        )
    })
}

/// 412 unless every name is a valid tenant/namespace/cluster name.
pub(crate) fn check_names(names: &[&str]) -> Result<(), Response> {
    match names.iter().find(|n| !crate::service::is_valid_entity(n)) {
        Some(bad) => Err(reason(
            StatusCode::PRECONDITION_FAILED,
            format!("invalid name {bad:?}: use letters, digits and _ . : = -"),
        )),
        None => Ok(()),
    }
}

/// Turns a `Result<Response, Response>` into its response.
pub(crate) fn either(r: Result<Response, Response>) -> Response {
    r.unwrap_or_else(|e| e)
}

/// A metadata failure as an answer.
pub(crate) fn meta_error(e: meta::MetaError) -> Response {
    error(&BrokerError::Meta(e))
}
