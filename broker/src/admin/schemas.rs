//! `/admin/v2/schemas/{tenant}/{namespace}/{topic}/…`: a topic's schema versions, as
//! `pulsar-admin schemas get|upload|delete` use them: `GET …/schema` (latest),
//! `GET …/schema/{version}`, `GET …/schemas` (all), `POST …/schema` (register, under the
//! namespace's compatibility strategy: 409 when it refuses), `DELETE …/schema`. Schemas live
//! in the metadata store, so any broker answers.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use proto::meta::StoredSchema;

use super::topics::full_name;
use super::{either, error, parse_body, reason};
use crate::protocol::pb::schema::Type as SchemaType;
use crate::service::BrokerService;

const BASE: &str = "/admin/v2/schemas/{tenant}/{namespace}/{topic}";

pub(super) fn routes() -> Router<Arc<BrokerService>> {
    Router::new()
        .route(
            &format!("{BASE}/schema"),
            get(latest).post(upload).delete(remove),
        )
        .route(&format!("{BASE}/schema/{{version}}"), get(version))
        .route(&format!("{BASE}/schemas"), get(all))
}

fn type_name(t: i32) -> String {
    SchemaType::try_from(t).map_or_else(|_| t.to_string(), |t| t.as_str_name().to_uppercase())
}

fn type_of(name: &str) -> Option<i32> {
    (0..=22).find(|t| type_name(*t).eq_ignore_ascii_case(name))
}

/// Pulsar's GetSchemaResponse JSON.
fn json(s: &StoredSchema) -> serde_json::Value {
    serde_json::json!({
        "version": s.version,
        "type": type_name(s.schema_type),
        "timestamp": s.timestamp_ms,
        "data": String::from_utf8_lossy(&s.data),
        "properties": s.properties,
    })
}

fn not_found() -> Response {
    reason(StatusCode::NOT_FOUND, "Schema not found")
}

async fn latest(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            match s.schemas.get(&name, None).await.map_err(|e| error(&e))? {
                Some(found) => Ok(axum::Json(json(&found)).into_response()),
                None => Err(not_found()),
            }
        }
        .await,
    )
}

async fn version(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic, version)): Path<(String, String, String, u64)>,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            match s
                .schemas
                .get(&name, Some(version))
                .await
                .map_err(|e| error(&e))?
            {
                Some(found) => Ok(axum::Json(json(&found)).into_response()),
                None => Err(not_found()),
            }
        }
        .await,
    )
}

async fn all(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            let versions = s.schemas.all(&name).await.map_err(|e| error(&e))?;
            let list: Vec<serde_json::Value> = versions.iter().map(json).collect();
            Ok(axum::Json(serde_json::json!({ "getSchemaResponses": list })).into_response())
        }
        .await,
    )
}

/// Pulsar's PostSchemaPayload.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Upload {
    #[serde(rename = "type")]
    schema_type: String,
    schema: String,
    properties: std::collections::HashMap<String, String>,
}

async fn upload(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            let ns = format!("{tenant}/{namespace}");
            if s.namespaces
                .namespace(&ns)
                .await
                .map_err(|e| error(&e.into()))?
                .is_none()
            {
                return Err(reason(StatusCode::NOT_FOUND, "Namespace does not exist"));
            }
            let u: Upload = parse_body(&body)?;
            let Some(t) = type_of(&u.schema_type) else {
                return Err(reason(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown schema type {:?} (AVRO, JSON, PROTOBUF, STRING, …)",
                        u.schema_type
                    ),
                ));
            };
            let schema = crate::protocol::pb::Schema {
                name: name.clone(),
                schema_data: Bytes::from(u.schema),
                r#type: t,
                properties: u
                    .properties
                    .into_iter()
                    .map(|(key, value)| crate::protocol::pb::KeyValue { key, value })
                    .collect(),
            };
            let v = s
                .register_schema(&name, &schema)
                .await
                .map_err(|e| error(&e))?;
            Ok(axum::Json(serde_json::json!({ "version": { "version": v } })).into_response())
        }
        .await,
    )
}

async fn remove(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
) -> Response {
    either(
        async {
            let name = full_name(&tenant, &namespace, &topic)?;
            let last = s.schemas.get(&name, None).await.map_err(|e| error(&e))?;
            let Some(last) = last else {
                return Err(not_found());
            };
            s.schemas.delete(&name).await.map_err(|e| error(&e))?;
            Ok(axum::Json(serde_json::json!({ "version": last.version })).into_response())
        }
        .await,
    )
}
