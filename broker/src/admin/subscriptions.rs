//! A topic's subscriptions over `/admin/v2/persistent/{tenant}/{namespace}/{topic}/…`:
//! create (at earliest, latest or a message id) and delete (refused while consumers are
//! connected, unless `force`), skip N entries, clear the backlog, reset the cursor (to a
//! publish time or a message id), expire messages older than N seconds (one subscription or
//! all). Paths, bodies and status codes are Pulsar's (`PersistentTopics.java`). The topic's
//! owner answers; another broker redirects (307). A partitioned topic's name is refused
//! with a clear reason: these calls go to each partition (`magnetar admin` does that).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use common::{EntryId, LedgerId, Position};

use super::namespaces::Force;
use super::topics::{full_name, served_topic};
use super::{either, error, parse_body, reason};
use crate::service::BrokerService;
use crate::topic::expiry::{cutoff, expire_before};
use crate::topic::subscription::Subscription;
use crate::topic::{Topic, before};

const BASE: &str = "/admin/v2/persistent/{tenant}/{namespace}/{topic}";

pub(super) fn routes() -> Router<Arc<BrokerService>> {
    let r = |p: &str| format!("{BASE}{p}");
    Router::new()
        .route(&r("/subscription/{sub}"), put(create).delete(remove))
        .route(&r("/subscription/{sub}/skip/{n}"), post(skip))
        .route(&r("/subscription/{sub}/skip_all"), post(skip_all))
        .route(
            &r("/subscription/{sub}/resetcursor/{timestamp}"),
            post(reset_to_time),
        )
        .route(&r("/subscription/{sub}/resetcursor"), post(reset_to_id))
        .route(
            &r("/subscription/{sub}/expireMessages/{secs}"),
            post(expire),
        )
        .route(&r("/subscription/{sub}/expireMessages"), post(expire_to_id))
        .route(
            &r("/all_subscription/expireMessages/{secs}"),
            post(expire_all),
        )
}

/// Pulsar's MessageId / ResetCursorData JSON. `ledgerId` -1 is "earliest", `Long.MAX_VALUE`
/// "latest".
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct MessageIdJson {
    ledger_id: Option<i64>,
    entry_id: Option<i64>,
    /// Reset to after the message rather than to it.
    is_excluded: bool,
}

/// Where a message id puts a cursor: `Err(())` for "latest", the mark-delete otherwise.
enum Target {
    Earliest,
    Latest,
    At(Position),
}

impl MessageIdJson {
    fn target(&self) -> Result<Target, Response> {
        match (self.ledger_id, self.entry_id) {
            (None, _) => Ok(Target::Latest),
            (Some(l), _) if l == i64::MAX => Ok(Target::Latest),
            (Some(-1), _) => Ok(Target::Earliest),
            (Some(l), Some(e)) if l >= 0 && e >= 0 => Ok(Target::At(Position::new(
                LedgerId(l as u64),
                EntryId(e as u64),
            ))),
            (Some(l), e) => Err(reason(
                StatusCode::PRECONDITION_FAILED,
                format!("invalid message id {l}:{}", e.unwrap_or(-1)),
            )),
        }
    }

    /// The mark-delete position for this id: delivery starts at the message (or after it
    /// when `isExcluded`); an id past the topic's end means its end.
    fn mark(&self, t: &Topic) -> Result<Option<Position>, Response> {
        let last = t.ml.last_position();
        Ok(match self.target()? {
            Target::Earliest => None,
            Target::Latest => last,
            Target::At(p) if self.is_excluded => Some(p),
            Target::At(p) => before(p),
        }
        .and_then(|m| last.map(|l| m.min(l))))
    }
}

type Params = (String, String, String, String);

/// The topic `tenant/namespace/topic`, served here (307 to its owner, 404 if missing); 405
/// for a partitioned topic's name (these calls go to each partition).
pub(super) async fn plain_topic(
    s: &BrokerService,
    (tenant, namespace, topic): (&str, &str, &str),
    uri: &axum::http::Uri,
) -> Result<Arc<Topic>, Response> {
    let name = full_name(tenant, namespace, topic)?;
    if s.namespaces
        .partitioned(&format!("{tenant}/{namespace}"), topic)
        .await
        .map_err(super::meta_error)?
        .is_some()
    {
        return Err(reason(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{name} is a partitioned topic: call this on each partition ({name}-partition-N)"
            ),
        ));
    }
    served_topic(s, &name, uri).await
}

/// The topic (as [`plain_topic`]) and its subscription `sub` (404 if missing).
pub(super) async fn topic_and_sub(
    s: &BrokerService,
    names: (&str, &str, &str),
    sub: &str,
    uri: &axum::http::Uri,
) -> Result<(Arc<Topic>, Arc<Subscription>), Response> {
    let t = plain_topic(s, names, uri).await?;
    match t.existing_subscription(sub).await {
        Some(found) => Ok((t, found)),
        None => Err(reason(StatusCode::NOT_FOUND, "Subscription not found")),
    }
}

fn done(r: crate::error::Result<impl Sized>) -> Result<Response, Response> {
    r.map(|_| StatusCode::NO_CONTENT.into_response())
        .map_err(|e| error(&e))
}

/// `PUT …/subscription/{sub}` with an optional MessageId body (default: latest).
async fn create(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic, sub)): Path<Params>,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    either(
        async {
            let id: MessageIdJson = parse_body(&body)?;
            if sub.is_empty() {
                return Err(reason(
                    StatusCode::PRECONDITION_FAILED,
                    "empty subscription name",
                ));
            }
            let t = plain_topic(&s, (&tenant, &namespace, &topic), &uri).await?;
            let mark = id.mark(&t)?;
            match t.create_subscription(&sub, mark).await {
                Err(crate::error::BrokerError::Meta(meta::MetaError::AlreadyExists { .. })) => {
                    Err(reason(
                        StatusCode::CONFLICT,
                        "Subscription already exists for topic",
                    ))
                }
                r => done(r),
            }
        }
        .await,
    )
}

/// `DELETE …/subscription/{sub}[?force=true]`: 412 while consumers are connected, unless
/// forced (they are disconnected first).
async fn remove(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic, sub)): Path<Params>,
    Query(q): Query<Force>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let (t, found) = topic_and_sub(&s, (&tenant, &namespace, &topic), &sub, &uri).await?;
            if found.has_consumers() {
                if !q.force {
                    return Err(reason(
                        StatusCode::PRECONDITION_FAILED,
                        "Subscription has active connected consumers",
                    ));
                }
                found.abandon();
            }
            done(t.unsubscribe(&sub).await)
        }
        .await,
    )
}

/// `POST …/subscription/{sub}/skip/{n}`: the next `n` unacknowledged entries count as
/// consumed (all of them when fewer are left).
async fn skip(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic, sub, n)): Path<(String, String, String, String, u64)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let (t, found) = topic_and_sub(&s, (&tenant, &namespace, &topic), &sub, &uri).await?;
            if n == 0 {
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            match found.nth_unacked(n).or_else(|| t.ml.last_position()) {
                Some(p) => done(found.mark_delete_through(p).await),
                None => Ok(StatusCode::NO_CONTENT.into_response()),
            }
        }
        .await,
    )
}

/// `POST …/subscription/{sub}/skip_all`: clear the backlog.
async fn skip_all(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic, sub)): Path<Params>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let (t, found) = topic_and_sub(&s, (&tenant, &namespace, &topic), &sub, &uri).await?;
            match t.ml.last_position() {
                Some(p) => done(found.mark_delete_through(p).await),
                None => Ok(StatusCode::NO_CONTENT.into_response()),
            }
        }
        .await,
    )
}

/// `POST …/subscription/{sub}/resetcursor/{timestamp}`: delivery restarts at the first entry
/// published at or after the time (ms); consumers reconnect, as with SEEK.
async fn reset_to_time(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic, sub, ts)): Path<(String, String, String, String, u64)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let (t, found) = topic_and_sub(&s, (&tenant, &namespace, &topic), &sub, &uri).await?;
            let first = crate::protocol::commands::seek::first_published_at_or_after(&t.ml, ts)
                .await
                .map_err(|e| error(&e))?;
            let mark = match first {
                Some(p) => before(p),
                None => t.ml.last_position(),
            };
            done(found.reset(mark).await)
        }
        .await,
    )
}

/// `POST …/subscription/{sub}/resetcursor` with a ResetCursorData body.
async fn reset_to_id(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic, sub)): Path<Params>,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    either(
        async {
            let id: MessageIdJson = parse_body(&body)?;
            if id.ledger_id.is_none() {
                return Err(reason(
                    StatusCode::BAD_REQUEST,
                    "a message id is required: {\"ledgerId\": L, \"entryId\": E}",
                ));
            }
            let (t, found) = topic_and_sub(&s, (&tenant, &namespace, &topic), &sub, &uri).await?;
            let mark = id.mark(&t)?;
            done(found.reset(mark).await)
        }
        .await,
    )
}

/// `POST …/subscription/{sub}/expireMessages/{secs}`.
async fn expire(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic, sub, secs)): Path<(String, String, String, String, u64)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let (t, found) = topic_and_sub(&s, (&tenant, &namespace, &topic), &sub, &uri).await?;
            done(expire_before(&t.ml, &found, cutoff(secs)).await)
        }
        .await,
    )
}

/// `POST …/subscription/{sub}/expireMessages` with a ResetCursorData body: everything up to
/// the message (before it when `isExcluded`) expires.
async fn expire_to_id(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic, sub)): Path<Params>,
    uri: axum::http::Uri,
    body: Bytes,
) -> Response {
    either(
        async {
            let id: MessageIdJson = parse_body(&body)?;
            let (t, found) = topic_and_sub(&s, (&tenant, &namespace, &topic), &sub, &uri).await?;
            let mark = match id.target()? {
                Target::Earliest => None,
                Target::Latest => t.ml.last_position(),
                Target::At(p) if id.is_excluded => before(p),
                Target::At(p) => Some(p),
            };
            let in_topic = |m: Position| t.ml.first_position().is_some_and(|f| m >= f);
            // Never past the last entry: later messages must not expire before they exist.
            let mark = mark.and_then(|m| t.ml.last_position().map(|l| m.min(l)));
            match mark {
                Some(m) if in_topic(m) && found.mark_delete().is_none_or(|d| d < m) => {
                    done(found.mark_delete_through(m).await)
                }
                _ => Ok(StatusCode::NO_CONTENT.into_response()),
            }
        }
        .await,
    )
}

/// `POST …/all_subscription/expireMessages/{secs}`.
async fn expire_all(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, topic, secs)): Path<(String, String, String, u64)>,
    uri: axum::http::Uri,
) -> Response {
    either(
        async {
            let t = plain_topic(&s, (&tenant, &namespace, &topic), &uri).await?;
            let at = cutoff(secs);
            for sub in t.subscriptions().await {
                expire_before(&t.ml, &sub, at)
                    .await
                    .map_err(|e| error(&e))?;
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}
