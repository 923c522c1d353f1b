//! `/admin/v2/persistent`: list a namespace's topics and partitioned topics; create, update
//! (increase only), read and delete a partitioned topic's metadata; create and delete a
//! topic. A call about a topic another broker owns is redirected to it (307). Deleting a
//! partitioned topic deletes the partitions this broker owns (or can own), then redirects to
//! the owner of the next one; the last broker in that chain deletes the metadata.

use std::sync::Arc;

/// Most partitions a partitioned topic (or a namespace's auto-created default) may have.
pub const MAX_PARTITIONS: u32 = 10_000;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};

use super::namespaces::{Force, existing};
use super::{either, error, meta_error, parse_body, reason, redirect};
use crate::error::{BrokerError, Result};
use crate::service::{BrokerService, normalize_topic};

pub(super) fn routes() -> Router<Arc<BrokerService>> {
    Router::new()
        .route("/admin/v2/persistent/{tenant}/{namespace}", get(list))
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/partitioned",
            get(list_partitioned),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/{topic}/partitions",
            get(partitions)
                .put(create_partitioned)
                .post(update_partitioned)
                .delete(delete_partitioned),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/{topic}",
            put(create).delete(remove),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/{topic}/stats",
            get(stats),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/{topic}/internalStats",
            get(internal_stats),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/{topic}/subscriptions",
            get(subscriptions),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/{topic}/partitioned-stats",
            get(partitioned_stats),
        )
        .route(
            "/admin/v2/persistent/{tenant}/{namespace}/{topic}/bundle",
            get(bundle_range),
        )
}

/// `GET …/bundle`: the bundle the topic hashes into among its namespace's bundles
/// (`0x00000000_0x20000000`), as `pulsar-admin topics bundle-range` prints it.
async fn bundle_range(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            existing(&s, &format!("{tenant}/{namespace}")).await?;
            let bundle = match &s.ownership {
                Some(o) => {
                    let key = o.key_of(&name).await.map_err(|e| error(&e))?;
                    key.rsplit('/').next().unwrap_or_default().to_owned()
                }
                None => crate::ownership::bundles::bundle_of(
                    &name,
                    crate::ownership::bundles::DEFAULT_BUNDLES,
                ),
            };
            Ok(axum::Json(bundle).into_response())
        }
        .await,
    )
}

/// The loaded topic `name` on this broker, or the answer: 307 to its owner, 404 when it
/// does not exist.
pub(super) async fn served_topic(
    s: &BrokerService,
    name: &str,
    uri: &axum::http::Uri,
) -> std::result::Result<Arc<crate::topic::Topic>, Response> {
    if let Some(http) = owned_elsewhere(s, name).await.map_err(|e| error(&e))? {
        return Err(redirect(&http, uri));
    }
    if !s.topic_exists(name).await.map_err(|e| error(&e))? {
        return Err(reason(
            StatusCode::NOT_FOUND,
            format!("Topic {name} not found"),
        ));
    }
    s.topic(name).await.map_err(|e| error(&e))
}

async fn stats(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            let t = served_topic(&s, &name, &uri).await?;
            let mut v = crate::topic::stats::stats(&t)
                .await
                .map_err(|e| error(&e))?;
            v["ownerBroker"] = serde_json::json!(s.service_url.trim_start_matches("pulsar://"));
            Ok(axum::Json(v).into_response())
        }
        .await,
    )
}

async fn internal_stats(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            let t = served_topic(&s, &name, &uri).await?;
            let v = crate::topic::stats::internal_stats(&t)
                .await
                .map_err(|e| error(&e))?;
            Ok(axum::Json(v).into_response())
        }
        .await,
    )
}

async fn subscriptions(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            let t = served_topic(&s, &name, &uri).await?;
            let names: Vec<String> = t
                .subscriptions()
                .await
                .iter()
                .map(|s| s.name.clone())
                .collect();
            Ok(axum::Json(names).into_response())
        }
        .await,
    )
}

/// `GET …/partitioned-stats`: every partition's stats summed (rates, counters, sizes,
/// backlogs per subscription), with `partitions{}` when `perPartition=true`. A partition
/// served by another broker is not summed (the broker has no HTTP client to ask it): it is
/// named under `partitionsServedElsewhere`, never guessed.
async fn partitioned_stats(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    Query(q): Query<PerPartition>,
) -> Response {
    either(async {
        let name = full_name(&tenant, &namespace, &topic)?;
        let ns = format!("{tenant}/{namespace}");
        let Some((p, _)) = s
            .namespaces
            .partitioned(&ns, &topic)
            .await
            .map_err(meta_error)?
        else {
            return Err(reason(StatusCode::NOT_FOUND, "Partitioned topic does not exist"));
        };
        let mut total = serde_json::json!({
            "msgRateIn": 0.0, "msgThroughputIn": 0.0, "msgRateOut": 0.0, "msgThroughputOut": 0.0,
            "msgInCounter": 0, "bytesInCounter": 0, "msgOutCounter": 0, "bytesOutCounter": 0,
            "storageSize": 0, "backlogSize": 0, "publishers": [], "subscriptions": {},
        });
        let mut per = serde_json::Map::new();
        let mut elsewhere = Vec::new();
        for i in 0..p.partitions {
            let part = partition_name(&name, i);
            if owned_elsewhere(&s, &part).await.map_err(|e| error(&e))?.is_some() {
                elsewhere.push(part);
                continue;
            }
            if !s.topic_exists(&part).await.map_err(|e| error(&e))? {
                continue;
            }
            let t = s.topic(&part).await.map_err(|e| error(&e))?;
            let v = crate::topic::stats::stats(&t).await.map_err(|e| error(&e))?;
            add_stats(&mut total, &v);
            per.insert(part, v);
        }
        total["metadata"] = serde_json::json!({ "partitions": p.partitions });
        if q.per_partition {
            total["partitions"] = serde_json::Value::Object(per);
        }
        if !elsewhere.is_empty() {
            total["partitionsServedElsewhere"] = serde_json::json!(elsewhere);
        }
        Ok(axum::Json(total).into_response())
    }
    .await)
}

/// `?perPartition=true`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PerPartition {
    per_partition: bool,
}

/// Adds one partition's stats into the running total.
fn add_stats(total: &mut serde_json::Value, v: &serde_json::Value) {
    for key in [
        "msgRateIn",
        "msgThroughputIn",
        "msgRateOut",
        "msgThroughputOut",
    ] {
        let sum = total[key].as_f64().unwrap_or(0.0) + v[key].as_f64().unwrap_or(0.0);
        total[key] = serde_json::json!(sum);
    }
    for key in [
        "msgInCounter",
        "bytesInCounter",
        "msgOutCounter",
        "bytesOutCounter",
        "storageSize",
        "backlogSize",
    ] {
        let sum = total[key].as_u64().unwrap_or(0) + v[key].as_u64().unwrap_or(0);
        total[key] = serde_json::json!(sum);
    }
    if let (Some(all), Some(these)) = (
        total["publishers"].as_array_mut(),
        v["publishers"].as_array(),
    ) {
        all.extend(these.iter().cloned());
    }
    let Some(subs) = v["subscriptions"].as_object() else {
        return;
    };
    for (name, sub) in subs {
        let entry = &mut total["subscriptions"][name];
        if entry.is_null() {
            *entry = serde_json::json!({
                "msgBacklog": 0, "unackedMessages": 0, "msgOutCounter": 0,
                "type": sub["type"], "consumers": [],
            });
        }
        for key in ["msgBacklog", "unackedMessages", "msgOutCounter"] {
            let sum = entry[key].as_u64().unwrap_or(0) + sub[key].as_u64().unwrap_or(0);
            entry[key] = serde_json::json!(sum);
        }
        if let (Some(all), Some(these)) = (
            entry["consumers"].as_array_mut(),
            sub["consumers"].as_array(),
        ) {
            all.extend(these.iter().cloned());
        }
    }
}

/// The suffix of partition `i`'s topic name, as Pulsar names it.
pub(crate) fn partition_name(topic: &str, i: u32) -> String {
    format!("{topic}-partition-{i}")
}

/// The HTTP URL of the broker that owns `name`'s bundle, if it is another broker.
async fn owned_elsewhere(s: &BrokerService, name: &str) -> Result<Option<String>> {
    let Some(o) = &s.ownership else {
        return Ok(None);
    };
    Ok(match o.owner_of_bundle(&o.key_of(name).await?).await? {
        Some((http, false)) => Some(http),
        _ => None,
    })
}

/// Deletes a topic this broker owns or can own.
pub(super) async fn delete_here(s: &BrokerService, name: &str, force: bool) -> Result<()> {
    if let Some(http) = owned_elsewhere(s, name).await? {
        return Err(BrokerError::NotOwner(format!(
            "{name} is served by {http}; delete it there"
        )));
    }
    s.delete_topic(name, force).await
}

/// The partition count of a create/update body: a JSON number, or a JSON string holding one
/// (`"4"`, as clients that send `json(&n.to_string())` do; Pulsar's JSON reader takes both).
fn parse_count(body: &[u8]) -> std::result::Result<u32, Response> {
    let v: serde_json::Value = parse_body(body)?;
    let n = match &v {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    let Some(n) = n else {
        return Err(reason(
            StatusCode::BAD_REQUEST,
            format!("malformed request body: expected the number of partitions, not {v}"),
        ));
    };
    if n <= 0 || n > i64::from(MAX_PARTITIONS) {
        return Err(reason(
            StatusCode::NOT_ACCEPTABLE,
            format!("the number of partitions must be between 1 and {MAX_PARTITIONS}, not {n}"),
        ));
    }
    Ok(n as u32)
}

pub(super) fn full_name(
    tenant: &str,
    namespace: &str,
    topic: &str,
) -> std::result::Result<String, Response> {
    normalize_topic(&format!("persistent://{tenant}/{namespace}/{topic}")).map_err(|e| error(&e))
}

/// `GET /admin/v2/persistent/{tenant}/{namespace}`: topics with a managed ledger (plain
/// topics and created partitions).
async fn list(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    list_names(&s, &format!("{tenant}/{namespace}"), false).await
}

/// `GET /admin/v2/persistent/{tenant}/{namespace}/partitioned`.
async fn list_partitioned(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    list_names(&s, &format!("{tenant}/{namespace}"), true).await
}

/// The namespace's topics (or partitioned topics) as full names, sorted; 404 without it.
async fn list_names(s: &BrokerService, ns: &str, partitioned: bool) -> Response {
    either(
        async {
            existing(s, ns).await?;
            let names = if partitioned {
                s.namespaces.partitioned_topics(ns).await
            } else {
                s.namespaces.topics(ns).await
            }
            .map_err(meta_error)?;
            let full: Vec<String> = names
                .into_iter()
                .map(|t| format!("persistent://{ns}/{t}"))
                .collect();
            Ok(axum::Json(full).into_response())
        }
        .await,
    )
}

async fn partitions(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
) -> Response {
    either(
        async {
            full_name(&tenant, &namespace, &topic)?;
            let ns = format!("{tenant}/{namespace}");
            existing(&s, &ns).await?;
            let n = s
                .namespaces
                .partitioned(&ns, &topic)
                .await
                .map_err(meta_error)?
                .map_or(0, |(p, _)| p.partitions);
            Ok(
                axum::Json(serde_json::json!({ "partitions": n, "deleted": false }))
                    .into_response(),
            )
        }
        .await,
    )
}

async fn create_partitioned(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            let n = parse_count(&body)?;
            let ns = format!("{tenant}/{namespace}");
            existing(&s, &ns).await?;
            if topic.contains("-partition-") {
                return Err(reason(
                    StatusCode::PRECONDITION_FAILED,
                    "a partitioned topic's name may not contain `-partition-`",
                ));
            }
            let topics = s.namespaces.topics(&ns).await.map_err(meta_error)?;
            let limit = s.max_topics_per_namespace;
            if limit > 0 && topics.len() + n as usize > limit {
                // Pulsar counts a partitioned topic as its partitions.
                return Err(reason(
                    StatusCode::PRECONDITION_FAILED,
                    "Exceed maximum number of topics in namespace.",
                ));
            }
            if topics.contains(&topic) {
                return Err(reason(
                    StatusCode::CONFLICT,
                    format!("{name} already exists as a non-partitioned topic"),
                ));
            }
            match s.namespaces.create_partitioned(&ns, &topic, n).await {
                Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
                Err(meta::MetaError::AlreadyExists { .. }) => Err(reason(
                    StatusCode::CONFLICT,
                    "Partitioned topic already exists",
                )),
                Err(e) => Err(meta_error(e)),
            }
        }
        .await,
    )
}

async fn update_partitioned(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    either(
        async {
            full_name(&tenant, &namespace, &topic)?;
            let n = parse_count(&body)?;
            let ns = format!("{tenant}/{namespace}");
            let Some((p, version)) = s
                .namespaces
                .partitioned(&ns, &topic)
                .await
                .map_err(meta_error)?
            else {
                return Err(reason(
                    StatusCode::NOT_FOUND,
                    "Partitioned topic does not exist",
                ));
            };
            if n <= p.partitions {
                return Err(reason(
                    StatusCode::CONFLICT,
                    format!(
                        "the number of partitions can only be increased ({} now, {n} asked)",
                        p.partitions
                    ),
                ));
            }
            s.namespaces
                .update_partitioned(&ns, &topic, n, version)
                .await
                .map_err(meta_error)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn delete_partitioned(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    Query(q): Query<Force>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            let ns = format!("{tenant}/{namespace}");
            let Some((p, _)) = s
                .namespaces
                .partitioned(&ns, &topic)
                .await
                .map_err(meta_error)?
            else {
                return Err(reason(
                    StatusCode::NOT_FOUND,
                    "Partitioned topic does not exist",
                ));
            };
            let existing_topics = s.namespaces.topics(&ns).await.map_err(meta_error)?;
            let mut elsewhere = None;
            for i in 0..p.partitions {
                let local = partition_name(&topic, i);
                if !existing_topics.contains(&local) {
                    continue;
                }
                let part = partition_name(&name, i);
                match owned_elsewhere(&s, &part).await.map_err(|e| error(&e))? {
                    Some(http) => elsewhere = elsewhere.or(Some(http)),
                    None => s
                        .delete_topic(&part, q.force)
                        .await
                        .map_err(|e| error(&e))?,
                }
            }
            if let Some(http) = elsewhere {
                // The rest is served elsewhere: that broker goes on from here.
                return Ok(redirect(&http, &uri));
            }
            s.namespaces
                .delete_partitioned(&ns, &topic)
                .await
                .map_err(meta_error)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn create(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            let ns = format!("{tenant}/{namespace}");
            existing(&s, &ns).await?;
            if s.namespaces
                .topics(&ns)
                .await
                .map_err(meta_error)?
                .contains(&topic)
                || s.namespaces
                    .partitioned(&ns, &topic)
                    .await
                    .map_err(meta_error)?
                    .is_some()
            {
                return Err(reason(StatusCode::CONFLICT, "This topic already exists"));
            }
            if let Some(http) = owned_elsewhere(&s, &name).await.map_err(|e| error(&e))? {
                return Ok(redirect(&http, &uri));
            }
            s.create_topic(&name).await.map_err(|e| error(&e))?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn remove(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    Query(q): Query<Force>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            if let Some(http) = owned_elsewhere(&s, &name).await.map_err(|e| error(&e))? {
                return Ok(redirect(&http, &uri));
            }
            s.delete_topic(&name, q.force)
                .await
                .map_err(|e| error(&e))?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}
