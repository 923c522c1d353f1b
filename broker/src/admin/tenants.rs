//! `/admin/v2/tenants`: list, create, get, update, delete (refused while the tenant has
//! namespaces).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proto::meta::TenantInfo;
use serde::{Deserialize, Serialize};

use super::{check_names, either, meta_error, parse_body, reason};
use crate::service::BrokerService;

pub(super) fn routes() -> Router<Arc<BrokerService>> {
    Router::new().route("/admin/v2/tenants", get(list)).route(
        "/admin/v2/tenants/{tenant}",
        get(one).put(create).post(update).delete(remove),
    )
}

/// Pulsar's TenantInfo JSON.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct TenantJson {
    admin_roles: Vec<String>,
    allowed_clusters: Vec<String>,
}

impl TenantJson {
    fn record(self, s: &BrokerService) -> Result<TenantInfo, Response> {
        if let Some(c) = self.allowed_clusters.iter().find(|c| **c != s.cluster) {
            return Err(reason(
                StatusCode::PRECONDITION_FAILED,
                format!("cluster {c} does not exist (this one is {})", s.cluster),
            ));
        }
        let clusters = if self.allowed_clusters.is_empty() {
            vec![s.cluster.clone()]
        } else {
            self.allowed_clusters
        };
        Ok(TenantInfo {
            admin_roles: self.admin_roles,
            allowed_clusters: clusters,
            ..Default::default()
        })
    }
}

async fn list(State(s): State<Arc<BrokerService>>) -> Response {
    match s.namespaces.tenants().await {
        Ok(t) => axum::Json(t).into_response(),
        Err(e) => meta_error(e),
    }
}

async fn one(State(s): State<Arc<BrokerService>>, Path(tenant): Path<String>) -> Response {
    match s.namespaces.tenant(&tenant).await {
        Ok(Some((t, _))) => axum::Json(TenantJson {
            admin_roles: t.admin_roles,
            allowed_clusters: t.allowed_clusters,
        })
        .into_response(),
        Ok(None) => reason(StatusCode::NOT_FOUND, "Tenant does not exist"),
        Err(e) => meta_error(e),
    }
}

async fn create(
    State(s): State<Arc<BrokerService>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    either(
        async {
            check_names(&[&tenant])?;
            let info = parse_body::<TenantJson>(&body)?.record(&s)?;
            match s.namespaces.create_tenant(&tenant, info).await {
                Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
                Err(meta::MetaError::AlreadyExists { .. }) => {
                    Err(reason(StatusCode::CONFLICT, "Tenant already exists"))
                }
                Err(e) => Err(meta_error(e)),
            }
        }
        .await,
    )
}

async fn update(
    State(s): State<Arc<BrokerService>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    either(
        async {
            let info = parse_body::<TenantJson>(&body)?.record(&s)?;
            let Some((_, version)) = s.namespaces.tenant(&tenant).await.map_err(meta_error)? else {
                return Err(reason(StatusCode::NOT_FOUND, "Tenant does not exist"));
            };
            s.namespaces
                .update_tenant(&tenant, info, version)
                .await
                .map_err(meta_error)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn remove(State(s): State<Arc<BrokerService>>, Path(tenant): Path<String>) -> Response {
    either(
        async {
            if s.namespaces
                .tenant(&tenant)
                .await
                .map_err(meta_error)?
                .is_none()
            {
                return Err(reason(StatusCode::NOT_FOUND, "Tenant does not exist"));
            }
            let namespaces = s.namespaces.namespaces(&tenant).await.map_err(meta_error)?;
            if !namespaces.is_empty() {
                return Err(reason(
                    StatusCode::CONFLICT,
                    format!("The tenant still has namespaces: {}", namespaces.join(", ")),
                ));
            }
            s.namespaces
                .delete_tenant(&tenant)
                .await
                .map_err(meta_error)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}
