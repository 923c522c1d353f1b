//! Authorization of HTTP calls: each admin and lookup route is mapped to what its caller must
//! be allowed ([`classify`], a pure function of the method and path, unit-tested), and a layer
//! checks it against the caller's role before the handler runs, as Pulsar's admin resources do
//! (`../shared/reference/security.md` §3). Denials answer 401 with Pulsar's reason; a route
//! this table does not know needs a super-user (new routes are closed until classified).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::reason;
use crate::auth::authorization::TopicOp;
use crate::auth::http::HttpRole;
use crate::service::BrokerService;

/// What a call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// No check (health, readiness, metrics).
    Open,
    /// Any authenticated role.
    Authenticated,
    /// A super-user.
    SuperUser,
    /// An admin of the tenant (or a super-user).
    TenantAdmin(String),
    /// Listing a namespace's topics: namespace `consume`, or admin.
    ListTopics {
        /// `tenant/namespace`.
        namespace: String,
    },
    /// An operation on a topic.
    Topic {
        /// Its full name.
        topic: String,
        /// What is done.
        op: Op,
    },
}

/// A topic operation, owning its subscription name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Look up, metadata, stats, schema reads.
    Lookup,
    /// Publish (a schema upload).
    Produce,
    /// Act on a subscription (or list them).
    Consume(Option<String>),
    /// Create, delete, terminate, compact, policies, grants.
    Admin,
}

/// What `method` on `path` needs.
pub fn classify(method: &Method, path: &str) -> Access {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let read = *method == Method::GET;
    match parts.as_slice() {
        ["admin", "v2", "brokers", "health" | "ready"] | ["metrics"] | ["status"] => Access::Open,
        ["lookup", "v2", "topic", domain, t, ns, topic] => Access::Topic {
            topic: format!("{domain}://{t}/{ns}/{topic}"),
            op: Op::Lookup,
        },
        ["admin", "v2", "clusters"] if read => Access::Authenticated,
        ["admin", "v2", "clusters", _] if read => Access::Authenticated,
        ["admin", "v2", "tenants", t] if read => Access::TenantAdmin((*t).to_owned()),
        ["admin", "v2", "namespaces", t] if read => Access::TenantAdmin((*t).to_owned()),
        ["admin", "v2", "namespaces", t, ns, "topics"] if read => Access::ListTopics {
            namespace: format!("{t}/{ns}"),
        },
        ["admin", "v2", "namespaces", t, ..] if parts.len() >= 5 => {
            Access::TenantAdmin((*t).to_owned())
        }
        ["admin", "v2", "persistent" | "non-persistent", t, ns] if read => Access::ListTopics {
            namespace: format!("{t}/{ns}"),
        },
        [
            "admin",
            "v2",
            "persistent" | "non-persistent",
            t,
            ns,
            "partitioned",
        ] if read => Access::ListTopics {
            namespace: format!("{t}/{ns}"),
        },
        [
            "admin",
            "v2",
            domain @ ("persistent" | "non-persistent"),
            t,
            ns,
            topic,
            rest @ ..,
        ] => Access::Topic {
            topic: format!("{domain}://{t}/{ns}/{topic}"),
            op: topic_op(method, rest),
        },
        ["admin", "v2", "schemas", t, ns, topic, ..] => Access::Topic {
            topic: format!("persistent://{t}/{ns}/{topic}"),
            op: match *method {
                Method::GET => Op::Lookup,
                // Uploading a schema is what a producer does; so is checking compatibility.
                Method::POST | Method::PUT => Op::Produce,
                _ => Op::Admin,
            },
        },
        _ => Access::SuperUser,
    }
}

fn topic_op(method: &Method, rest: &[&str]) -> Op {
    let read = *method == Method::GET;
    match rest {
        ["partitions" | "stats" | "internalStats" | "partitioned-stats" | "lastMessageId"]
            if read =>
        {
            Op::Lookup
        }
        ["partitioned-internalStats" | "bundle"] if read => Op::Lookup,
        ["subscriptions"] if read => Op::Consume(None),
        ["subscription", sub, ..] => Op::Consume(Some((*sub).to_owned())),
        ["all_subscription", ..] => Op::Consume(None),
        ["examinemessage"] | ["ledger", _, "entry", _] if read => Op::Consume(None),
        _ => Op::Admin,
    }
}

/// The layer (`axum::middleware::from_fn_with_state`), inside authentication.
pub async fn authorize(State(s): State<Arc<BrokerService>>, req: Request, next: Next) -> Response {
    if !s.authorizer.enabled {
        return next.run(req).await;
    }
    let Some(role) = req
        .extensions()
        .get::<HttpRole>()
        .and_then(|HttpRole(r)| r.clone())
    else {
        // Open paths (no authentication ran) need nothing; others cannot get here without a
        // role once authentication is on.
        return match classify(req.method(), req.uri().path()) {
            Access::Open => next.run(req).await,
            _ => reason(
                StatusCode::FORBIDDEN,
                "Need to authenticate to perform the request",
            ),
        };
    };
    let access = classify(req.method(), req.uri().path());
    match decide(&s, &role, &access).await {
        Ok(()) => next.run(req).await,
        Err(why) => {
            tracing::warn!(
                role,
                method = %req.method(),
                path = req.uri().path(),
                reason = why,
                "HTTP call not authorized"
            );
            metrics::counter!("pulsar_authorization_failures_total").increment(1);
            reason(StatusCode::UNAUTHORIZED, why)
        }
    }
}

/// Whether `role` has `access`: the reason when not.
pub async fn decide(s: &BrokerService, role: &str, access: &Access) -> Result<(), String> {
    let a = &s.authorizer;
    if a.is_super_user(role) {
        return Ok(());
    }
    let tenant =
        |t: String| async move { s.namespaces.tenant(&t).await.ok().flatten().map(|(i, _)| i) };
    match access {
        Access::Open | Access::Authenticated => Ok(()),
        Access::SuperUser => Err("This operation requires super-user access".into()),
        Access::TenantAdmin(t) => {
            if a.is_tenant_admin(role, tenant(t.clone()).await.as_ref()) {
                Ok(())
            } else {
                Err("Don't have permission to administrate resources on this tenant".into())
            }
        }
        Access::ListTopics { namespace } => {
            let t = namespace.split('/').next().unwrap_or_default().to_owned();
            let policies = s
                .namespaces
                .namespace(namespace)
                .await
                .ok()
                .flatten()
                .map(|(p, _)| p);
            if a.allow_list_topics(role, tenant(t).await.as_ref(), policies.as_ref()) {
                Ok(())
            } else {
                Err(format!(
                    "Unauthorized to validateNamespaceOperation for operation [GET_TOPICS] on namespace [{namespace}]"
                ))
            }
        }
        Access::Topic { topic, op } => {
            let op = match op {
                Op::Lookup => TopicOp::Lookup,
                Op::Produce => TopicOp::Produce,
                Op::Consume(sub) => TopicOp::Consume(sub.as_deref()),
                Op::Admin => TopicOp::Admin,
            };
            s.authorize_topic(role, topic, op).await.map_err(|d| d.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_what_they_need() {
        let get = |p: &str| classify(&Method::GET, p);
        let post = |p: &str| classify(&Method::POST, p);
        let t = |topic: &str, op: Op| Access::Topic {
            topic: topic.into(),
            op,
        };
        assert_eq!(get("/admin/v2/brokers/health"), Access::Open);
        assert_eq!(post("/admin/v2/brokers/shutdown"), Access::SuperUser);
        assert_eq!(get("/admin/v2/brokers/standalone"), Access::SuperUser);
        assert_eq!(get("/admin/v2/clusters"), Access::Authenticated);
        assert_eq!(
            classify(&Method::PUT, "/admin/v2/clusters/c"),
            Access::SuperUser
        );
        assert_eq!(get("/admin/v2/tenants"), Access::SuperUser);
        assert_eq!(post("/admin/v2/tenants/a"), Access::SuperUser);
        assert_eq!(get("/admin/v2/tenants/a"), Access::TenantAdmin("a".into()));
        assert_eq!(
            classify(&Method::DELETE, "/admin/v2/namespaces/a/b"),
            Access::TenantAdmin("a".into())
        );
        assert_eq!(
            post("/admin/v2/namespaces/a/b/permissions/r"),
            Access::TenantAdmin("a".into())
        );
        assert_eq!(
            get("/admin/v2/persistent/a/b"),
            Access::ListTopics {
                namespace: "a/b".into()
            }
        );
        assert_eq!(
            get("/lookup/v2/topic/persistent/a/b/x"),
            t("persistent://a/b/x", Op::Lookup)
        );
        assert_eq!(
            get("/admin/v2/persistent/a/b/x/partitions"),
            t("persistent://a/b/x", Op::Lookup)
        );
        assert_eq!(
            classify(&Method::PUT, "/admin/v2/persistent/a/b/x/partitions"),
            t("persistent://a/b/x", Op::Admin)
        );
        assert_eq!(
            classify(&Method::DELETE, "/admin/v2/persistent/a/b/x"),
            t("persistent://a/b/x", Op::Admin)
        );
        assert_eq!(
            post("/admin/v2/persistent/a/b/x/subscription/s/skip/3"),
            t("persistent://a/b/x", Op::Consume(Some("s".into())))
        );
        assert_eq!(
            get("/admin/v2/non-persistent/a/b/x/stats"),
            t("non-persistent://a/b/x", Op::Lookup)
        );
        assert_eq!(
            post("/admin/v2/persistent/a/b/x/terminate"),
            t("persistent://a/b/x", Op::Admin)
        );
        assert_eq!(
            post("/admin/v2/schemas/a/b/x/schema"),
            t("persistent://a/b/x", Op::Produce)
        );
        assert_eq!(post("/admin/v2/something/new"), Access::SuperUser);
    }
}
