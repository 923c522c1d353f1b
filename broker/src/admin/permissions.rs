//! Grants (Pulsar's permission endpoints, `../shared/reference/security.md` §3.2): actions
//! granted to roles on a namespace or a topic, the roles allowed on a subscription, and the
//! namespace's subscription auth mode. Stored in the namespace's record (compare-and-set);
//! checked by [`crate::auth::authorization`]. Changing grants while authorization is off
//! answers 501, as Pulsar does: they would protect nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use proto::meta::{Actions, NamespacePolicies, Roles};

use super::namespace_policies::update_policies;
use super::namespaces::existing;
use super::{either, reason};
use crate::auth::authorization::parse_actions;
use crate::service::BrokerService;

pub(super) fn routes() -> Router<Arc<BrokerService>> {
    let ns = "/admin/v2/namespaces/{tenant}/{namespace}";
    let mut r = Router::new()
        .route(&format!("{ns}/permissions"), get(namespace_grants))
        .route(
            &format!("{ns}/permissions/{{role}}"),
            post(grant_namespace).delete(revoke_namespace),
        )
        .route(
            &format!("{ns}/permissions/subscription"),
            get(subscription_roles),
        )
        .route(
            &format!("{ns}/permissions/subscription/{{sub}}"),
            post(grant_subscription),
        )
        .route(
            &format!("{ns}/permissions/{{sub}}/{{role}}"),
            axum::routing::delete(revoke_subscription),
        )
        .route(
            &format!("{ns}/subscriptionAuthMode"),
            get(get_mode).post(set_mode),
        );
    for domain in ["persistent", "non-persistent"] {
        let topic = format!("/admin/v2/{domain}/{{tenant}}/{{namespace}}/{{topic}}");
        r = r
            .route(&format!("{topic}/permissions"), get(topic_grants))
            .route(
                &format!("{topic}/permissions/{{role}}"),
                post(grant_topic).delete(revoke_topic),
            );
    }
    r
}

/// Pulsar's `auth_policies` JSON of a namespace record.
pub(super) fn auth_policies_json(p: &NamespacePolicies) -> serde_json::Value {
    let topics: BTreeMap<&String, BTreeMap<&String, &Vec<String>>> = p
        .destination_auth
        .iter()
        .map(|(t, r)| {
            (
                t,
                r.roles.iter().map(|(role, a)| (role, &a.actions)).collect(),
            )
        })
        .collect();
    serde_json::json!({
        "namespace_auth": p.namespace_auth.iter().map(|(r, a)| (r, &a.actions)).collect::<BTreeMap<_, _>>(),
        "destination_auth": topics,
        "subscription_auth_roles": p.subscription_auth_roles.iter().map(|(s, r)| (s, &r.roles)).collect::<BTreeMap<_, _>>(),
    })
}

/// Reads Pulsar's `auth_policies` (a namespace's create body) into `p`: the error names what
/// is wrong.
pub(super) fn read_auth_policies(
    v: &serde_json::Value,
    p: &mut NamespacePolicies,
) -> Result<(), String> {
    type Grants = BTreeMap<String, Vec<String>>;
    let field = |name: &str| v.get(name).filter(|x| !x.is_null()).cloned();
    if let Some(ns) = field("namespace_auth") {
        let grants: Grants =
            serde_json::from_value(ns).map_err(|e| format!("auth_policies.namespace_auth: {e}"))?;
        for (role, actions) in grants {
            let actions = parse_actions(&actions)?;
            p.namespace_auth.insert(role, Actions { actions });
        }
    }
    if let Some(topics) = field("destination_auth") {
        let grants: BTreeMap<String, Grants> = serde_json::from_value(topics)
            .map_err(|e| format!("auth_policies.destination_auth: {e}"))?;
        for (topic, roles) in grants {
            let entry = p.destination_auth.entry(topic).or_default();
            for (role, actions) in roles {
                let actions = parse_actions(&actions)?;
                entry.roles.insert(role, Actions { actions });
            }
        }
    }
    if let Some(subs) = field("subscription_auth_roles") {
        let subs: Grants = serde_json::from_value(subs)
            .map_err(|e| format!("auth_policies.subscription_auth_roles: {e}"))?;
        for (sub, mut roles) in subs {
            roles.sort();
            roles.dedup();
            p.subscription_auth_roles.insert(sub, Roles { roles });
        }
    }
    Ok(())
}

fn enabled(s: &BrokerService) -> Result<(), Response> {
    if s.authorizer.enabled {
        Ok(())
    } else {
        Err(reason(
            StatusCode::NOT_IMPLEMENTED,
            "Authorization is not enabled",
        ))
    }
}

fn body_list(body: &[u8], what: &str) -> Result<Vec<String>, Response> {
    serde_json::from_slice(body).map_err(|e| {
        reason(
            StatusCode::BAD_REQUEST,
            format!("expected a JSON list of {what}: {e}"),
        )
    })
}

fn check_role(role: &str) -> Result<(), Response> {
    if role.is_empty()
        || role.len() > crate::service::MAX_CLIENT_NAME
        || role.chars().any(char::is_control)
    {
        return Err(reason(StatusCode::PRECONDITION_FAILED, "invalid role name"));
    }
    Ok(())
}

async fn namespace_grants(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    match existing(&s, &format!("{tenant}/{namespace}")).await {
        Ok((p, _)) => axum::Json(auth_policies_json(&p)["namespace_auth"].clone()).into_response(),
        Err(answer) => answer,
    }
}

async fn grant_namespace(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, role)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    either(
        async {
            enabled(&s)?;
            check_role(&role)?;
            let actions = parse_actions(&body_list(&body, "actions")?)
                .map_err(|e| reason(StatusCode::BAD_REQUEST, e))?;
            update_policies(&s, &format!("{tenant}/{namespace}"), |p| {
                p.namespace_auth.insert(
                    role.clone(),
                    Actions {
                        actions: actions.clone(),
                    },
                );
            })
            .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn revoke_namespace(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, role)): Path<(String, String, String)>,
) -> Response {
    either(
        async {
            enabled(&s)?;
            update_policies(&s, &format!("{tenant}/{namespace}"), |p| {
                p.namespace_auth.remove(&role);
            })
            .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn subscription_roles(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    match existing(&s, &format!("{tenant}/{namespace}")).await {
        Ok((p, _)) => {
            axum::Json(auth_policies_json(&p)["subscription_auth_roles"].clone()).into_response()
        }
        Err(answer) => answer,
    }
}

async fn grant_subscription(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, sub)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    either(
        async {
            enabled(&s)?;
            let mut roles = body_list(&body, "roles")?;
            for r in &roles {
                check_role(r)?;
            }
            roles.sort();
            roles.dedup();
            update_policies(&s, &format!("{tenant}/{namespace}"), |p| {
                let entry = p.subscription_auth_roles.entry(sub.clone()).or_default();
                for r in &roles {
                    if !entry.roles.contains(r) {
                        entry.roles.push(r.clone());
                    }
                }
                entry.roles.sort();
            })
            .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn revoke_subscription(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace, sub, role)): Path<(String, String, String, String)>,
) -> Response {
    either(
        async {
            enabled(&s)?;
            update_policies(&s, &format!("{tenant}/{namespace}"), |p| {
                if let Some(r) = p.subscription_auth_roles.get_mut(&sub) {
                    r.roles.retain(|x| *x != role);
                    if r.roles.is_empty() {
                        p.subscription_auth_roles.remove(&sub);
                    }
                }
            })
            .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn get_mode(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
) -> Response {
    match existing(&s, &format!("{tenant}/{namespace}")).await {
        Ok((p, _)) => axum::Json(mode_name(p.subscription_auth_mode)).into_response(),
        Err(answer) => answer,
    }
}

/// Pulsar's SubscriptionAuthMode name.
pub(super) fn mode_name(m: u32) -> &'static str {
    if m == 1 { "Prefix" } else { "None" }
}

async fn set_mode(
    State(s): State<Arc<BrokerService>>,
    Path((tenant, namespace)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    either(
        async {
            let name: String = serde_json::from_slice(&body).map_err(|e| {
                reason(
                    StatusCode::BAD_REQUEST,
                    format!("expected \"None\" or \"Prefix\": {e}"),
                )
            })?;
            let mode = match name.as_str() {
                "None" => 0,
                "Prefix" => 1,
                other => {
                    return Err(reason(
                        StatusCode::BAD_REQUEST,
                        format!("{other:?} is not a subscription auth mode (None, Prefix)"),
                    ));
                }
            };
            update_policies(&s, &format!("{tenant}/{namespace}"), |p| {
                p.subscription_auth_mode = mode;
            })
            .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

fn topic_name(uri: &axum::http::Uri, tenant: &str, namespace: &str, topic: &str) -> String {
    let domain = if uri.path().starts_with("/admin/v2/non-persistent/") {
        "non-persistent"
    } else {
        "persistent"
    };
    format!("{domain}://{tenant}/{namespace}/{topic}")
}

/// `GET …/{topic}/permissions`: what each role may do on the topic — its own grants merged
/// with the namespace's, as Pulsar answers.
async fn topic_grants(
    State(s): State<Arc<BrokerService>>,
    uri: axum::http::Uri,
    Path((tenant, namespace, topic)): Path<(String, String, String)>,
) -> Response {
    let name = topic_name(&uri, &tenant, &namespace, &topic);
    match existing(&s, &format!("{tenant}/{namespace}")).await {
        Ok((p, _)) => {
            let mut all: BTreeMap<String, Vec<String>> = p
                .namespace_auth
                .iter()
                .map(|(r, a)| (r.clone(), a.actions.clone()))
                .collect();
            if let Some(t) = p.destination_auth.get(&name) {
                for (role, a) in &t.roles {
                    let entry = all.entry(role.clone()).or_default();
                    entry.extend(a.actions.iter().cloned());
                    entry.sort();
                    entry.dedup();
                }
            }
            axum::Json(all).into_response()
        }
        Err(answer) => answer,
    }
}

async fn grant_topic(
    State(s): State<Arc<BrokerService>>,
    uri: axum::http::Uri,
    Path((tenant, namespace, topic, role)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Response {
    either(
        async {
            enabled(&s)?;
            check_role(&role)?;
            let name =
                crate::service::normalize_topic(&topic_name(&uri, &tenant, &namespace, &topic))
                    .map_err(|e| reason(StatusCode::PRECONDITION_FAILED, e.to_string()))?;
            let actions = parse_actions(&body_list(&body, "actions")?)
                .map_err(|e| reason(StatusCode::BAD_REQUEST, e))?;
            update_policies(&s, &format!("{tenant}/{namespace}"), |p| {
                p.destination_auth
                    .entry(name.clone())
                    .or_default()
                    .roles
                    .insert(
                        role.clone(),
                        Actions {
                            actions: actions.clone(),
                        },
                    );
            })
            .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn revoke_topic(
    State(s): State<Arc<BrokerService>>,
    uri: axum::http::Uri,
    Path((tenant, namespace, topic, role)): Path<(String, String, String, String)>,
) -> Response {
    either(
        async {
            enabled(&s)?;
            let name = topic_name(&uri, &tenant, &namespace, &topic);
            update_policies(&s, &format!("{tenant}/{namespace}"), |p| {
                if let Some(t) = p.destination_auth.get_mut(&name) {
                    t.roles.remove(&role);
                    if t.roles.is_empty() {
                        p.destination_auth.remove(&name);
                    }
                }
            })
            .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}
