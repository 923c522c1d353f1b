//! Reading a topic's messages over REST without consuming them, as `pulsar-admin topics
//! peek-messages / examine-messages / get-message-by-id / last-message-id` do:
//! `GET …/subscription/{sub}/position/{n}` (the n-th unacknowledged entry of a subscription),
//! `GET …/examinemessage?initialPosition=earliest|latest&messagePosition=n`,
//! `GET …/ledger/{l}/entry/{e}` and `GET …/lastMessageId` — and `POST …/terminate`, which
//! answers the last message id too.
//!
//! An entry answers with Pulsar's headers (`X-Pulsar-Message-ID`, `X-Pulsar-publish-time`,
//! `X-Pulsar-num-batch-message`, `X-Pulsar-PROPERTY` as a JSON object, …) and the entry's body
//! after its metadata — for a batch, the batch as the producer wrote it (each message's
//! SingleMessageMetadata then payload), which the admin client splits. A compressed body is
//! returned as stored, named by `X-Pulsar-compression` (the broker carries no codecs).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{EntryId, LedgerId, Position};

use super::subscriptions::{plain_topic, topic_and_sub};
use super::{either, error, reason};
use crate::managed_ledger::ack_set::AckSet;
use crate::protocol::frame::inspect_entry;
use crate::protocol::pb::CompressionType;
use crate::service::BrokerService;
use crate::topic::Topic;

const BASE: &str = "/admin/v2/persistent/{tenant}/{namespace}/{topic}";

pub(super) fn routes() -> Router<Arc<BrokerService>> {
    let r = |p: &str| format!("{BASE}{p}");
    Router::new()
        .route(&r("/subscription/{sub}/position/{n}"), get(peek))
        .route(&r("/examinemessage"), get(examine))
        .route(&r("/ledger/{ledger}/entry/{entry}"), get(by_id))
        .route(&r("/lastMessageId"), get(last_message_id))
        .route(&r("/terminate"), axum::routing::post(terminate))
}

/// `POST …/terminate`: no message is published to the topic again; answers the last
/// message's id (`-1:-1` for an empty topic), as Pulsar does.
async fn terminate(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let t = plain_topic(&s, (&tenant, &namespace, &topic), &uri).await?;
            let last = t.terminate().await.map_err(|e| error(&e))?;
            let (ledger, entry) = last.map_or((-1, -1), |p| (p.ledger.0 as i64, p.entry.0 as i64));
            tracing::info!(topic = t.name, ledger, entry, "topic terminated");
            Ok(axum::Json(serde_json::json!({
                "ledgerId": ledger,
                "entryId": entry,
                "partitionIndex": partition_index(&topic),
            }))
            .into_response())
        }
        .await,
    )
}

fn not_found() -> Response {
    reason(StatusCode::NOT_FOUND, "Message not found")
}

/// The answer for the entry at `p`: Pulsar's headers and the body.
async fn entry_response(t: &Topic, p: Position) -> Result<Response, Response> {
    let payload = t.ml.read(p).await.map_err(|e| error(&e))?;
    let info = inspect_entry(&payload).map_err(|e| {
        reason(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored entry {p} is unreadable: {e}"),
        )
    })?;
    let m = &info.metadata;
    let body = payload.slice(info.body_offset..);
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_bytes(value.as_bytes()) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    put(
        "x-pulsar-message-id",
        format!("{}:{}", p.ledger.0, p.entry.0),
    );
    put("x-pulsar-publish-time", rfc3339(m.publish_time));
    if let Some(t) = m.event_time.filter(|t| *t != 0) {
        put("x-pulsar-event-time", rfc3339(t));
    }
    if let Some(t) = m.deliver_at_time {
        put("x-pulsar-deliver-at-time", rfc3339(t as u64));
    }
    put("x-pulsar-producer-name", m.producer_name.clone());
    put("x-pulsar-sequence-id", m.sequence_id.to_string());
    if let Some(n) = m.num_messages_in_batch {
        put("x-pulsar-num-batch-message", n.to_string());
        put("x-pulsar-batch-size", body.len().to_string());
    }
    if let Some(k) = &m.partition_key {
        put("x-pulsar-key", k.clone());
    }
    if !m.properties.is_empty() {
        let props: serde_json::Map<String, serde_json::Value> = m
            .properties
            .iter()
            .map(|kv| (kv.key.clone(), serde_json::Value::String(kv.value.clone())))
            .collect();
        put(
            "x-pulsar-property",
            serde_json::Value::Object(props).to_string(),
        );
    }
    let codec = m.compression();
    if codec != CompressionType::None {
        put("x-pulsar-compression", codec.as_str_name().to_owned());
        put(
            "x-pulsar-uncompressed-size",
            m.uncompressed_size.unwrap_or(0).to_string(),
        );
    }
    h.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok((StatusCode::OK, h, body).into_response())
}

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds), as Pulsar's DateFormatter.
/// The time comes from the producer: past year 9999 (which RFC 3339 cannot write, and
/// humantime's `Display` fails on, panicking `to_string`) the raw number is given instead.
fn rfc3339(ms: u64) -> String {
    /// 9999-12-31T23:59:59.999Z.
    const LAST: u64 = 253_402_300_799_999;
    if ms > LAST {
        return ms.to_string();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// `GET …/subscription/{sub}/position/{n}`: the n-th (1-based) unacknowledged entry.
async fn peek(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic, sub, n)): Path<(String, String, String, String, u64)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let (t, found) = topic_and_sub(&s, (&tenant, &namespace, &topic), &sub, &uri).await?;
            if n == 0 {
                return Err(reason(
                    StatusCode::PRECONDITION_FAILED,
                    "the message position starts at 1",
                ));
            }
            let p = found.nth_unacked(n).ok_or_else(not_found)?;
            entry_response(&t, p).await
        }
        .await,
    )
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Examine {
    #[serde(default = "latest")]
    initial_position: String,
    #[serde(default = "one")]
    message_position: u64,
}

fn latest() -> String {
    "latest".into()
}

fn one() -> u64 {
    1
}

/// `GET …/examinemessage`: the n-th entry from the start (`earliest`) or the end (`latest`).
async fn examine(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    Query(q): Query<Examine>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let t = plain_topic(&s, (&tenant, &namespace, &topic), &uri).await?;
            if q.message_position == 0 {
                return Err(reason(
                    StatusCode::PRECONDITION_FAILED,
                    "the message position starts at 1",
                ));
            }
            let ledgers = t.ml.ledger_entries();
            let total: u64 = ledgers.iter().map(|(_, n)| n).sum();
            let n = match q.initial_position.as_str() {
                "earliest" => q.message_position,
                "latest" if q.message_position <= total => total - q.message_position + 1,
                "latest" => return Err(not_found()),
                other => {
                    return Err(reason(
                        StatusCode::PRECONDITION_FAILED,
                        format!("initialPosition is earliest or latest, not {other:?}"),
                    ));
                }
            };
            let p = AckSet::default()
                .nth_absent(&ledgers, None, n)
                .ok_or_else(not_found)?;
            entry_response(&t, p).await
        }
        .await,
    )
}

/// `GET …/ledger/{l}/entry/{e}`: 404 unless the topic still holds that entry.
async fn by_id(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic, ledger, entry)): Path<(String, String, String, u64, u64)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let t = plain_topic(&s, (&tenant, &namespace, &topic), &uri).await?;
            let held =
                t.ml.ledger_entries()
                    .iter()
                    .any(|(l, n)| l.0 == ledger && entry < *n);
            if !held {
                return Err(not_found());
            }
            entry_response(&t, Position::new(LedgerId(ledger), EntryId(entry))).await
        }
        .await,
    )
}

/// `GET …/lastMessageId`: `{"ledgerId", "entryId", "partitionIndex"}` of the last durable
/// entry (entry -1 of the current ledger when the topic is empty).
async fn last_message_id(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let t = plain_topic(&s, (&tenant, &namespace, &topic), &uri).await?;
            let (ledger, entry) = match t.ml.last_position() {
                Some(p) => (p.ledger.0 as i64, p.entry.0 as i64),
                None => {
                    let current = t.ml.stats().await.map_err(|e| error(&e))?.current;
                    (current.map_or(-1, |l| l.0 as i64), -1)
                }
            };
            Ok(axum::Json(serde_json::json!({
                "ledgerId": ledger,
                "entryId": entry,
                "partitionIndex": partition_index(&topic),
            }))
            .into_response())
        }
        .await,
    )
}

/// The partition index in a `…-partition-N` name; -1 otherwise.
fn partition_index(topic: &str) -> i64 {
    topic
        .rsplit_once("-partition-")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    /// Review finding 18: a producer's `publish_time` of u64::MAX made peek panic.
    #[test]
    fn times_past_year_9999_are_written_as_numbers() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339(253_402_300_799_999),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(super::rfc3339(u64::MAX), u64::MAX.to_string());
    }
}
