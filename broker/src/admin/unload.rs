//! Unloading a topic or a namespace bundle: the owner closes them (clients told to
//! reconnect), and a bundle is given up so the next lookup assigns it again.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;

use super::{error, redirect};
use crate::service::{BrokerService, normalize_topic};

/// The unload routes.
pub(super) fn routes() -> Router<Arc<BrokerService>> {
    Router::new()
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/{bundle}/unload",
            put(unload_bundle),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/{topic}/unload",
            put(unload_topic),
        )
}

/// `PUT /admin/v2/namespaces/{tenant}/{namespace}/{bundle}/unload`: the owner closes the
/// bundle's topics and gives the bundle up; the next lookup assigns it again.
async fn unload_bundle(
    State(service): State<Arc<BrokerService>>,
    Path((tenant, namespace, bundle)): Path<(String, String, String)>,
    uri: axum::http::Uri,
) -> Response {
    let Some(o) = service.ownership.clone() else {
        // Standalone without ownership: every bundle is served here; unload its topics.
        return StatusCode::NO_CONTENT.into_response();
    };
    let ns = format!("{tenant}/{namespace}");
    match o.is_bundle(&ns, &bundle).await {
        Ok(true) => {}
        Ok(false) => {
            let reason = format!("{bundle:?} is not a bundle of {ns}");
            return super::reason(StatusCode::PRECONDITION_FAILED, reason);
        }
        Err(e) => return error(&e),
    }
    let key = o.bundle_key(&ns, &bundle);
    match o.owner_of_bundle(&key).await {
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Ok(Some((http, false))) => redirect(&http, &uri),
        Ok(Some((_, true))) => match service.unload_bundle(&key).await {
            Ok(_) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => error(&e),
        },
        Err(e) => error(&e),
    }
}

/// `PUT /admin/v2/persistent/{tenant}/{namespace}/{topic}/unload`: the owner closes the topic
/// (clients reconnect; it is loaded again on next use).
async fn unload_topic(
    State(service): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    uri: axum::http::Uri,
) -> Response {
    let name = match normalize_topic(&format!("persistent://{tenant}/{namespace}/{topic}")) {
        Ok(n) => n,
        Err(e) => return error(&e),
    };
    if let Some(o) = service.ownership.clone() {
        let key = match o.key_of(&name).await {
            Ok(k) => k,
            Err(e) => return error(&e),
        };
        match o.owner_of_bundle(&key).await {
            Ok(Some((http, false))) => return redirect(&http, &uri),
            Ok(_) => {}
            Err(e) => return error(&e),
        }
    }
    match service.unload_topic(&name).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(&e),
    }
}
