//! `/admin/v2/namespaces`: list a tenant's namespaces, create (Pulsar's Policies body: bundle
//! count — each namespace keeps its own, which decides its topics' bundles — replication
//! clusters), get policies, delete (refused while it has topics, unless
//! `force`, which deletes them). Each policy's own endpoints: [`super::namespace_policies`].

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proto::meta::NamespacePolicies;

use super::namespace_policies::{
    auto_creation_json, backlog_quota_map, dedup_json, persistence_json, retention_json,
};
use super::{check_names, either, error, meta_error, parse_body, reason};
use crate::service::BrokerService;

/// The most bundles a namespace may have (Pulsar's `maxNumBundles` default is larger, but
/// a bundle is the unit of ownership: more than this only adds records).
const MAX_BUNDLES: u64 = 1024;

pub(super) fn routes() -> Router<Arc<BrokerService>> {
    Router::new()
        .route("/admin/v2/namespaces/{tenant}", get(list))
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}",
            get(policies).put(create).delete(remove),
        )
        .merge(super::namespace_policies::routes())
}

/// `?force=true`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct Force {
    pub force: bool,
}

async fn tenant_exists(s: &BrokerService, tenant: &str) -> Result<(), Response> {
    match s.namespaces.tenant(tenant).await.map_err(meta_error)? {
        Some(_) => Ok(()),
        None => Err(reason(StatusCode::NOT_FOUND, "Tenant does not exist")),
    }
}

/// 404 unless the namespace `tenant/namespace` exists; its policies otherwise.
pub(super) async fn existing(
    s: &BrokerService,
    ns: &str,
) -> Result<(NamespacePolicies, meta::Version), Response> {
    s.namespaces
        .namespace(ns)
        .await
        .map_err(meta_error)?
        .ok_or_else(|| reason(StatusCode::NOT_FOUND, "Namespace does not exist"))
}

async fn list(State(s): State<Arc<BrokerService>>, Path(tenant): Path<String>) -> Response {
    either(
        async {
            tenant_exists(&s, &tenant).await?;
            let names = s.namespaces.namespaces(&tenant).await.map_err(meta_error)?;
            Ok(axum::Json(names).into_response())
        }
        .await,
    )
}

async fn create(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    either(
        async {
            check_names(&[&tenant, &namespace])?;
            let body: serde_json::Value = parse_body(&body)?;
            tenant_exists(&s, &tenant).await?;
            let configured = s
                .ownership
                .as_ref()
                .map_or(crate::ownership::bundles::DEFAULT_BUNDLES, |o| o.bundles());
            // Pulsar's Policies body: `{"bundles": {"numBundles": N}}` (or the boundaries, whose
            // count is one more than the bundles'); the broker's `[ownership] bundles` otherwise.
            let asked = body
                .pointer("/bundles/numBundles")
                .and_then(|v| v.as_u64())
                .or_else(|| {
                    body.pointer("/bundles/boundaries")
                        .and_then(|v| v.as_array())
                        .map(|b| b.len().saturating_sub(1) as u64)
                });
            let bundles = match asked {
                None => configured,
                Some(n) if (1..=MAX_BUNDLES).contains(&n) => n as u32,
                Some(n) => {
                    return Err(reason(
                        StatusCode::PRECONDITION_FAILED,
                        format!("{n} bundles: a namespace has between 1 and {MAX_BUNDLES}"),
                    ));
                }
            };
            let clusters: Vec<String> = body
                .get("replication_clusters")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_else(|| vec![s.cluster.clone()]);
            if let Some(c) = clusters.iter().find(|c| **c != s.cluster) {
                return Err(reason(
                    StatusCode::PRECONDITION_FAILED,
                    format!("cluster {c} does not exist (this one is {})", s.cluster),
                ));
            }
            let mut policies = NamespacePolicies {
                bundles,
                replication_clusters: clusters,
                ..Default::default()
            };
            // Pulsar's Policies body may carry grants (`auth_policies`) and the mode.
            if let Some(auth) = body.get("auth_policies") {
                super::permissions::read_auth_policies(auth, &mut policies)
                    .map_err(|e| reason(StatusCode::BAD_REQUEST, e))?;
            }
            if body.get("subscription_auth_mode").and_then(|m| m.as_str()) == Some("Prefix") {
                policies.subscription_auth_mode = 1;
            }
            let ns = format!("{tenant}/{namespace}");
            match s.namespaces.create_namespace(&ns, policies).await {
                Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
                Err(meta::MetaError::AlreadyExists { .. }) => {
                    Err(reason(StatusCode::CONFLICT, "Namespace already exists"))
                }
                Err(e) => Err(meta_error(e)),
            }
        }
        .await,
    )
}

async fn policies(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    either(
        async {
            let (p, _) = existing(&s, &format!("{tenant}/{namespace}")).await?;
            let boundaries = crate::ownership::bundles::boundaries(p.bundles);
            Ok(axum::Json(serde_json::json!({
                "bundles": { "boundaries": boundaries, "numBundles": p.bundles },
                "replication_clusters": p.replication_clusters,
                "persistence": p.persistence.as_ref().map(persistence_json),
                "retention_policies": p.retention.as_ref().map(retention_json),
                "deduplicationEnabled": dedup_json(p.deduplication),
                "message_ttl_in_seconds": p.message_ttl_seconds,
                "max_producers_per_topic": p.max_producers_per_topic,
                "max_consumers_per_topic": p.max_consumers_per_topic,
                "max_consumers_per_subscription": p.max_consumers_per_subscription,
                "backlog_quota_map": backlog_quota_map(&p),
                "subscription_expiration_time_minutes": p.subscription_expiration_minutes,
                "max_unacked_messages_per_consumer": p.max_unacked_messages_per_consumer,
                "schema_compatibility_strategy": if p.schema_compatibility_strategy.is_empty() { "UNDEFINED" } else { p.schema_compatibility_strategy.as_str() },
                "autoTopicCreationOverride": p.auto_topic_creation.as_ref().map(auto_creation_json),
                "auth_policies": super::permissions::auth_policies_json(&p),
                "subscription_auth_mode": super::permissions::mode_name(p.subscription_auth_mode),
            }))
            .into_response())
        }
        .await,
    )
}

async fn remove(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
    Query(q): Query<Force>,
) -> Response {
    either(
        async {
            let ns = format!("{tenant}/{namespace}");
            existing(&s, &ns).await?;
            let topics = s.namespaces.topics(&ns).await.map_err(meta_error)?;
            let partitioned = s
                .namespaces
                .partitioned_topics(&ns)
                .await
                .map_err(meta_error)?;
            if !(q.force || topics.is_empty() && partitioned.is_empty()) {
                let mut all = topics.clone();
                all.extend(partitioned.iter().cloned());
                return Err(reason(
                    StatusCode::CONFLICT,
                    format!("Cannot delete non empty namespace: {}", all.join(", ")),
                ));
            }
            for t in &topics {
                let name = format!("persistent://{ns}/{t}");
                if let Err(e) = super::topics::delete_here(&s, &name, true).await {
                    return Err(error(&e));
                }
            }
            for p in &partitioned {
                s.namespaces
                    .delete_partitioned(&ns, p)
                    .await
                    .map_err(meta_error)?;
            }
            s.namespaces
                .delete_namespace(&ns)
                .await
                .map_err(meta_error)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}
