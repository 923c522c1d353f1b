//! `/admin/v2/namespaces/{tenant}/{namespace}/<policy>`: each namespace policy's GET, set
//! (POST, or PUT where Pulsar uses it) and DELETE — de-duplication, retention, persistence,
//! message TTL, max producers / consumers per topic and consumers per subscription, max
//! unacked messages per consumer, subscription expiration, backlog quotas, auto topic
//! creation, schema compatibility strategy. Every change is a compare-and-set on the
//! namespace's record, re-read on a conflict; loaded topics pick it up within a stats period.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proto::meta::NamespacePolicies;

use super::namespaces::existing;
use super::{either, error, meta_error, parse_body, reason};
use crate::service::BrokerService;

pub(super) fn routes() -> Router<Arc<BrokerService>> {
    Router::new()
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/deduplication",
            get(get_dedup).post(set_dedup).delete(remove_dedup),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/retention",
            get(get_retention)
                .post(set_retention)
                .delete(remove_retention),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/persistence",
            get(get_persistence)
                .post(set_persistence)
                .delete(remove_persistence),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/backlogQuotaMap",
            get(get_backlog_quotas),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/backlogQuota",
            axum::routing::post(set_backlog_quota).delete(remove_backlog_quota),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/autoTopicCreation",
            get(get_auto_creation)
                .post(set_auto_creation)
                .delete(remove_auto_creation),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/schemaCompatibilityStrategy",
            get(get_schema_strategy)
                .put(set_schema_strategy)
                .post(set_schema_strategy),
        )
        .route(
            "/admin/v2/namespaces/{tenant}/{namespace}/{policy}",
            get(get_number).post(set_number).delete(remove_number),
        )
}

/// `GET …/schemaCompatibilityStrategy`: the namespace's strategy (`UNDEFINED`: the broker's,
/// FULL).
async fn get_schema_strategy(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    show_policy(&s, &format!("{tenant}/{namespace}"), |p| {
        if p.schema_compatibility_strategy.is_empty() {
            "UNDEFINED".to_owned()
        } else {
            p.schema_compatibility_strategy.clone()
        }
    })
    .await
}

/// `PUT …/schemaCompatibilityStrategy` with a JSON string (`"FORWARD"`).
async fn set_schema_strategy(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let name: String = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return reason(
                StatusCode::BAD_REQUEST,
                format!("expected a strategy name as a JSON string: {e}"),
            );
        }
    };
    let Some(strategy) = crate::schema::compat::Strategy::parse(&name) else {
        return reason(
            StatusCode::BAD_REQUEST,
            format!("unknown schema compatibility strategy {name:?}"),
        );
    };
    let stored = strategy.map_or(String::new(), |st| st.name().to_owned());
    change_policy(&s, &format!("{tenant}/{namespace}"), |p| {
        p.schema_compatibility_strategy = stored.clone();
    })
    .await
}

/// Pulsar's AutoTopicCreationOverride JSON.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AutoCreationJson {
    allow_auto_topic_creation: bool,
    topic_type: Option<String>,
    default_num_partitions: Option<u32>,
}

pub(super) fn auto_creation_json(a: &proto::meta::AutoTopicCreation) -> serde_json::Value {
    let mut v = serde_json::json!({
        "allowAutoTopicCreation": a.allow,
        "topicType": if a.partitioned { "partitioned" } else { "non-partitioned" },
    });
    if a.partitioned {
        v["defaultNumPartitions"] = a.default_partitions.into();
    }
    v
}

/// `GET …/autoTopicCreation`: the namespace's override, or null (the broker's setting).
async fn get_auto_creation(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    show_policy(&s, &format!("{tenant}/{namespace}"), |p| {
        p.auto_topic_creation.as_ref().map(auto_creation_json)
    })
    .await
}

/// `POST …/autoTopicCreation` with `{"allowAutoTopicCreation", "topicType",
/// "defaultNumPartitions"}`.
async fn set_auto_creation(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    either(
        async {
            let j: AutoCreationJson = parse_body(&body)?;
            let partitioned = match j.topic_type.as_deref() {
                None | Some("non-partitioned") => false,
                Some("partitioned") => true,
                Some(other) => {
                    return Err(reason(
                        StatusCode::BAD_REQUEST,
                        format!("topicType is partitioned or non-partitioned, not {other:?}"),
                    ));
                }
            };
            let default_partitions = j.default_num_partitions.unwrap_or(0);
            // The same bound as a partitioned topic's: every topic listing would otherwise
            // name billions of partitions.
            if default_partitions > super::topics::MAX_PARTITIONS {
                return Err(reason(
                    StatusCode::PRECONDITION_FAILED,
                    format!(
                        "[defaultNumPartitions] cannot be more than {}",
                        super::topics::MAX_PARTITIONS
                    ),
                ));
            }
            if partitioned && j.allow_auto_topic_creation && default_partitions == 0 {
                return Err(reason(
                    StatusCode::PRECONDITION_FAILED,
                    "[defaultNumPartitions] cannot be less than 1 for partition type.",
                ));
            }
            let policy = proto::meta::AutoTopicCreation {
                allow: j.allow_auto_topic_creation,
                partitioned,
                default_partitions,
            };
            Ok(change_policy(&s, &format!("{tenant}/{namespace}"), |p| {
                p.auto_topic_creation = Some(policy);
            })
            .await)
        }
        .await,
    )
}

async fn remove_auto_creation(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    change_policy(&s, &format!("{tenant}/{namespace}"), |p| {
        p.auto_topic_creation = None
    })
    .await
}

/// `?backlogQuotaType=destination_storage|message_age` (the first by default).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct QuotaType {
    backlog_quota_type: Option<String>,
}

impl QuotaType {
    /// Whether it is the age quota; 400 for an unknown type.
    fn is_age(&self) -> Result<bool, Response> {
        match self.backlog_quota_type.as_deref() {
            None | Some("destination_storage") => Ok(false),
            Some("message_age") => Ok(true),
            Some(other) => Err(reason(
                StatusCode::BAD_REQUEST,
                format!("backlogQuotaType is destination_storage or message_age, not {other:?}"),
            )),
        }
    }
}

/// Pulsar's BacklogQuota JSON (`limit` is the old name of `limitSize`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct BacklogQuotaJson {
    limit: Option<i64>,
    limit_size: Option<i64>,
    limit_time: Option<i64>,
    policy: Option<String>,
}

pub(super) fn backlog_quota_map(p: &NamespacePolicies) -> serde_json::Value {
    use crate::topic::backlog_quota::Policy;
    let mut map = serde_json::Map::new();
    if let Some(q) = &p.backlog_quota_size {
        map.insert(
            "destination_storage".into(),
            serde_json::json!({
                "limit": q.limit, "limitSize": q.limit, "limitTime": -1,
                "policy": Policy::from_stored(q.policy).name(),
            }),
        );
    }
    if let Some(q) = &p.backlog_quota_age {
        map.insert(
            "message_age".into(),
            serde_json::json!({
                "limit": -1, "limitSize": -1, "limitTime": q.limit,
                "policy": Policy::from_stored(q.policy).name(),
            }),
        );
    }
    serde_json::Value::Object(map)
}

/// `GET …/backlogQuotaMap`.
async fn get_backlog_quotas(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    show_policy(&s, &format!("{tenant}/{namespace}"), backlog_quota_map).await
}

/// `POST …/backlogQuota?backlogQuotaType=…` with `{"limitSize"|"limitTime", "policy"}`.
async fn set_backlog_quota(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
    Query(t): Query<QuotaType>,
    body: Bytes,
) -> Response {
    use crate::topic::backlog_quota::Policy;
    either(
        async {
            let age = t.is_age()?;
            let j: BacklogQuotaJson = parse_body(&body)?;
            let policy = match j.policy.as_deref() {
                Some(name) => Policy::parse(name).ok_or_else(|| {
                    reason(
                        StatusCode::BAD_REQUEST,
                        format!("unknown backlog quota policy {name:?}: producer_request_hold, producer_exception or consumer_backlog_eviction"),
                    )
                })?,
                None => {
                    return Err(reason(StatusCode::BAD_REQUEST, "the backlog quota needs a policy"));
                }
            };
            let limit = if age { j.limit_time } else { j.limit_size.or(j.limit) };
            let limit = match limit {
                Some(l) if l > 0 => l,
                _ => {
                    let field = if age { "limitTime (seconds)" } else { "limitSize (bytes)" };
                    return Err(reason(
                        StatusCode::PRECONDITION_FAILED,
                        format!("{field} must be greater than 0"),
                    ));
                }
            };
            let ns = format!("{tenant}/{namespace}");
            let (current, _) = existing(&s, &ns).await?;
            if let Some(r) = current.retention.as_ref().filter(|_| !age)
                && r.size_mb > 0
                && limit >= r.size_mb << 20
            {
                return Err(reason(
                    StatusCode::PRECONDITION_FAILED,
                    "Backlog Quota exceeds configured retention quota for namespace. Please increase retention quota and retry",
                ));
            }
            let quota = proto::meta::BacklogQuota {
                limit,
                policy: policy.stored(),
            };
            Ok(change_policy(&s, &ns, |p| {
                if age {
                    p.backlog_quota_age = Some(quota);
                } else {
                    p.backlog_quota_size = Some(quota);
                }
            })
            .await)
        }
        .await,
    )
}

/// `DELETE …/backlogQuota?backlogQuotaType=…`.
async fn remove_backlog_quota(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
    Query(t): Query<QuotaType>,
) -> Response {
    match t.is_age() {
        Ok(age) => {
            change_policy(&s, &format!("{tenant}/{namespace}"), |p| {
                if age {
                    p.backlog_quota_age = None;
                } else {
                    p.backlog_quota_size = None;
                }
            })
            .await
        }
        Err(answer) => answer,
    }
}

/// The policies that are one number, by their REST path segment: message TTL (seconds) and
/// the producer/consumer limits (0: unlimited), subscription expiration (minutes).
fn number_field(policy: &str) -> Option<fn(&mut NamespacePolicies) -> &mut Option<u32>> {
    Some(match policy {
        "messageTTL" => |p| &mut p.message_ttl_seconds,
        "maxProducersPerTopic" => |p| &mut p.max_producers_per_topic,
        "maxConsumersPerTopic" => |p| &mut p.max_consumers_per_topic,
        "maxConsumersPerSubscription" => |p| &mut p.max_consumers_per_subscription,
        "subscriptionExpirationTime" => |p| &mut p.subscription_expiration_minutes,
        "maxUnackedMessagesPerConsumer" => |p| &mut p.max_unacked_messages_per_consumer,
        _ => return None,
    })
}

fn unknown_policy(policy: &str) -> Response {
    reason(
        StatusCode::NOT_FOUND,
        format!("no such namespace policy: {policy}"),
    )
}

/// `GET …/{messageTTL|maxProducersPerTopic|…}`: the number, or null when unset.
async fn get_number(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, policy)): Path<(String, String, String)>,
) -> Response {
    let Some(field) = number_field(&policy) else {
        return unknown_policy(&policy);
    };
    show_policy(&s, &format!("{tenant}/{namespace}"), |p| {
        let mut p = p.clone();
        *field(&mut p)
    })
    .await
}

/// `POST …/{messageTTL|…}` with a non-negative integer body.
async fn set_number(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, policy)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let Some(field) = number_field(&policy) else {
        return unknown_policy(&policy);
    };
    let n: i64 = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return reason(
                StatusCode::BAD_REQUEST,
                format!("{policy}: expected an integer: {e}"),
            );
        }
    };
    let Ok(n) = u32::try_from(n) else {
        return reason(
            StatusCode::PRECONDITION_FAILED,
            format!("{policy} must be between 0 and {}, not {n}", u32::MAX),
        );
    };
    change_policy(&s, &format!("{tenant}/{namespace}"), |p| {
        *field(p) = Some(n);
    })
    .await
}

/// `DELETE …/{messageTTL|…}`: back to the broker's default.
async fn remove_number(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, policy)): Path<(String, String, String)>,
) -> Response {
    let Some(field) = number_field(&policy) else {
        return unknown_policy(&policy);
    };
    change_policy(&s, &format!("{tenant}/{namespace}"), |p| *field(p) = None).await
}

/// Changes a namespace's policies by compare-and-set, re-reading on a conflict.
pub(super) async fn update_policies(
    s: &BrokerService,
    ns: &str,
    change: impl Fn(&mut NamespacePolicies),
) -> Result<(), Response> {
    for _ in 0..5 {
        let (mut p, version) = existing(s, ns).await?;
        change(&mut p);
        match s.namespaces.update_namespace(ns, p, version).await {
            Ok(()) => return Ok(()),
            Err(meta::MetaError::BadVersion { .. }) => continue,
            Err(e) => return Err(meta_error(e)),
        }
    }
    Err(reason(
        StatusCode::CONFLICT,
        "the namespace's policies kept changing; try again",
    ))
}

/// `GET` of one policy: what `show` picks from the namespace's policies, as JSON (null when
/// unset); 404 without the namespace.
async fn show_policy<T: serde::Serialize>(
    s: &BrokerService,
    ns: &str,
    show: impl FnOnce(&NamespacePolicies) -> T,
) -> Response {
    match existing(s, ns).await {
        Ok((p, _)) => axum::Json(show(&p)).into_response(),
        Err(answer) => answer,
    }
}

/// A change of the namespace's policies (compare-and-set, re-read on conflict): 204.
async fn change_policy(
    s: &BrokerService,
    ns: &str,
    change: impl Fn(&mut NamespacePolicies),
) -> Response {
    match update_policies(s, ns, change).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(answer) => answer,
    }
}

/// The stored de-duplication setting (0 unset, 1 on, 2 off) as Pulsar shows it.
pub(super) fn dedup_json(v: u32) -> Option<bool> {
    match v {
        1 => Some(true),
        2 => Some(false),
        _ => None,
    }
}

/// Pulsar's PersistencePolicies JSON.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct PersistenceJson {
    bookkeeper_ensemble: u32,
    bookkeeper_write_quorum: u32,
    bookkeeper_ack_quorum: u32,
    managed_ledger_max_mark_delete_rate: f64,
}

pub(super) fn persistence_json(p: &proto::meta::PersistencePolicy) -> serde_json::Value {
    serde_json::json!(PersistenceJson {
        bookkeeper_ensemble: p.ensemble,
        bookkeeper_write_quorum: p.write_quorum,
        bookkeeper_ack_quorum: p.ack_quorum,
        managed_ledger_max_mark_delete_rate: p.mark_delete_rate,
    })
}

/// `GET …/deduplication`: the namespace's setting, or null when it follows the broker.
async fn get_dedup(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    show_policy(&s, &format!("{tenant}/{namespace}"), |p| {
        dedup_json(p.deduplication)
    })
    .await
}

/// `POST …/deduplication` with `true` or `false`: applied to loaded topics within one stats
/// period, to topics loaded later at once.
async fn set_dedup(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    either(
        async {
            let on: bool = serde_json::from_slice(&body).map_err(|e| {
                reason(
                    StatusCode::BAD_REQUEST,
                    format!("expected true or false: {e}"),
                )
            })?;
            let value = if on { 1 } else { 2 };
            Ok(change_policy(&s, &format!("{tenant}/{namespace}"), |p| {
                p.deduplication = value;
            })
            .await)
        }
        .await,
    )
}

async fn remove_dedup(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    change_policy(&s, &format!("{tenant}/{namespace}"), |p| {
        p.deduplication = 0
    })
    .await
}

/// Pulsar's RetentionPolicies JSON.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RetentionJson {
    retention_time_in_minutes: i64,
    #[serde(rename = "retentionSizeInMB")]
    retention_size_in_mb: i64,
}

pub(super) fn retention_json(r: &proto::meta::RetentionPolicy) -> serde_json::Value {
    serde_json::json!(RetentionJson {
        retention_time_in_minutes: r.time_minutes,
        retention_size_in_mb: r.size_mb,
    })
}

async fn get_retention(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    show_policy(&s, &format!("{tenant}/{namespace}"), |p| {
        p.retention.as_ref().map(retention_json)
    })
    .await
}

async fn set_retention(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    either(
        async {
            let j: RetentionJson = parse_body(&body)?;
            if j.retention_time_in_minutes < -1 || j.retention_size_in_mb < -1 {
                return Err(reason(
                    StatusCode::PRECONDITION_FAILED,
                    "retention time and size are >= 0, or -1 for unlimited",
                ));
            }
            let policy = proto::meta::RetentionPolicy {
                time_minutes: j.retention_time_in_minutes,
                size_mb: j.retention_size_in_mb,
            };
            Ok(change_policy(&s, &format!("{tenant}/{namespace}"), |p| {
                p.retention = Some(policy);
            })
            .await)
        }
        .await,
    )
}

async fn remove_retention(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    change_policy(&s, &format!("{tenant}/{namespace}"), |p| p.retention = None).await
}

async fn get_persistence(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    show_policy(&s, &format!("{tenant}/{namespace}"), |p| {
        p.persistence.as_ref().map(persistence_json)
    })
    .await
}

async fn set_persistence(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    either(
        async {
            let j: PersistenceJson = parse_body(&body)?;
            let (e, w, a) = (
                j.bookkeeper_ensemble as usize,
                j.bookkeeper_write_quorum as usize,
                j.bookkeeper_ack_quorum as usize,
            );
            if let Err(err) = bookie::client::distribution::check_quorums(e, w, a) {
                return Err(reason(
                    StatusCode::PRECONDITION_FAILED,
                    format!(
                        "Bookkeeper Ensemble >= WriteQuorum >= AckQuorum > 0 does not hold: {err}"
                    ),
                ));
            }
            let writable = s.writable_bookies().await.map_err(|e| error(&e))?;
            if e > writable {
                return Err(reason(
                    StatusCode::PRECONDITION_FAILED,
                    format!("ensemble {e} needs {e} writable bookies; {writable} are registered"),
                ));
            }
            let policy = proto::meta::PersistencePolicy {
                ensemble: j.bookkeeper_ensemble,
                write_quorum: j.bookkeeper_write_quorum,
                ack_quorum: j.bookkeeper_ack_quorum,
                mark_delete_rate: j.managed_ledger_max_mark_delete_rate,
            };
            Ok(change_policy(&s, &format!("{tenant}/{namespace}"), |p| {
                p.persistence = Some(policy);
            })
            .await)
        }
        .await,
    )
}

async fn remove_persistence(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    change_policy(&s, &format!("{tenant}/{namespace}"), |p| {
        p.persistence = None
    })
    .await
}
