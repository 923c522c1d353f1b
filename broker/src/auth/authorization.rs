//! Authorization, as Pulsar's PulsarAuthorizationProvider decides it
//! (`../shared/reference/security.md` §3): a super-user may do anything; a tenant's admin
//! roles may do anything within the tenant; other roles only what was granted to them on the
//! namespace or the topic (`produce`, `consume`, …), with a subscription's own role list and
//! the namespace's `subscription_auth_mode` on top for consuming.
//!
//! The rules here are pure functions of the role and the tenant and namespace records, so
//! they are tested without I/O; the broker reads the records and calls them
//! ([`crate::auth::binary`] for the binary protocol, [`crate::admin::access`] for HTTP).

use proto::meta::{NamespacePolicies, TenantInfo};

/// Pulsar's AuthAction names, in its order.
pub const ACTIONS: [&str; 6] = [
    "produce",
    "consume",
    "functions",
    "sources",
    "sinks",
    "packages",
];

/// What a role wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicOp<'a> {
    /// Look it up, read its metadata, schema or stats: `produce` or `consume`.
    Lookup,
    /// Publish: `produce`.
    Produce,
    /// Subscribe, or act on a subscription (skip, reset, unsubscribe, peek): `consume`, and
    /// the subscription's rules when one is named.
    Consume(Option<&'a str>),
    /// Anything else (create, delete, terminate, compact, policies, grants): tenant admins
    /// and super-users only.
    Admin,
}

/// The broker's authorization settings.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    /// Pulsar's `authorizationEnabled`.
    pub enabled: bool,
    /// Pulsar's `superUserRoles`.
    pub super_users: Vec<String>,
    /// Pulsar's `proxyRoles`: roles that connect on behalf of others (`original_principal`).
    pub proxy_roles: Vec<String>,
}

/// A denial, with Pulsar's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

impl Authorizer {
    /// Whether `role` is a super-user.
    pub fn is_super_user(&self, role: &str) -> bool {
        self.super_users.iter().any(|r| r == role)
    }

    /// Whether `role` administers `tenant` (or is a super-user).
    pub fn is_tenant_admin(&self, role: &str, tenant: Option<&TenantInfo>) -> bool {
        self.is_super_user(role) || tenant.is_some_and(|t| t.admin_roles.iter().any(|r| r == role))
    }

    /// May `role` do `op` on `topic` (a full name, `persistent://t/ns/x`)? `tenant` and
    /// `policies` are the records of its tenant and namespace (none: missing).
    pub fn allow_topic(
        &self,
        role: &str,
        tenant: Option<&TenantInfo>,
        policies: Option<&NamespacePolicies>,
        topic: &str,
        op: TopicOp<'_>,
    ) -> Result<(), Denied> {
        if !self.enabled || self.is_tenant_admin(role, tenant) {
            return Ok(());
        }
        let has = |action: &str| policies.is_some_and(|p| granted(p, role, topic, action));
        match op {
            TopicOp::Lookup if has("produce") || has("consume") => Ok(()),
            TopicOp::Produce if has("produce") => Ok(()),
            TopicOp::Consume(subscription) => {
                let p = policies.ok_or_else(|| denied(op, topic))?;
                if let Some(sub) = subscription {
                    if p.subscription_auth_mode == 1 && !sub.starts_with(role) {
                        return Err(Denied(format!(
                            "The subscription name needs to be prefixed by the authentication role, like {role}-xxxx for topic: {topic}"
                        )));
                    }
                    if let Some(roles) = p.subscription_auth_roles.get(sub)
                        && !roles.roles.is_empty()
                        && !roles.roles.iter().any(|r| r == role)
                    {
                        return Err(Denied(format!(
                            "Role {role} is not allowed on subscription {sub} of topic {topic}"
                        )));
                    }
                }
                if has("consume") {
                    Ok(())
                } else {
                    Err(denied(op, topic))
                }
            }
            _ => Err(denied(op, topic)),
        }
    }

    /// May `role` list the namespace's topics (Pulsar's GET_TOPICS: namespace `consume`)?
    pub fn allow_list_topics(
        &self,
        role: &str,
        tenant: Option<&TenantInfo>,
        policies: Option<&NamespacePolicies>,
    ) -> bool {
        !self.enabled
            || self.is_tenant_admin(role, tenant)
            || policies.is_some_and(|p| {
                p.namespace_auth
                    .get(role)
                    .is_some_and(|a| a.actions.iter().any(|x| x == "consume"))
            })
    }

    /// Pulsar's isValidOriginalPrincipal: a proxy role must say whom it acts for, and no
    /// one else may.
    pub fn check_proxy(&self, role: &str, original_principal: Option<&str>) -> Result<(), Denied> {
        if !self.enabled {
            return Ok(());
        }
        let is_proxy = |r: &str| self.proxy_roles.iter().any(|p| p == r);
        let original = original_principal.filter(|o| !o.is_empty());
        match (is_proxy(role), original) {
            (true, Some(o)) if !is_proxy(o) => Ok(()),
            (false, None) => Ok(()),
            _ => Err(Denied("Invalid roles.".into())),
        }
    }
}

fn denied(op: TopicOp<'_>, topic: &str) -> Denied {
    let what = match op {
        TopicOp::Lookup => "LOOKUP",
        TopicOp::Produce => "PRODUCE",
        TopicOp::Consume(_) => "CONSUME",
        TopicOp::Admin => "ADMIN",
    };
    Denied(format!(
        "Unauthorized to validateTopicOperation for operation [{what}] on topic [{topic}]"
    ))
}

/// Whether `action` was granted to `role` on the namespace, on `topic`, or on the partitioned
/// topic `topic` is a partition of.
pub fn granted(p: &NamespacePolicies, role: &str, topic: &str, action: &str) -> bool {
    let has =
        |a: Option<&proto::meta::Actions>| a.is_some_and(|a| a.actions.iter().any(|x| x == action));
    if has(p.namespace_auth.get(role)) {
        return true;
    }
    let on_topic = |t: &str| has(p.destination_auth.get(t).and_then(|r| r.roles.get(role)));
    on_topic(topic)
        || crate::service::partitioned_parent(topic).is_some_and(|parent| on_topic(&parent))
}

/// Checks and sorts a list of actions (Pulsar's AuthAction names): the error names the bad one.
pub fn parse_actions(actions: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for a in actions {
        if !ACTIONS.contains(&a.as_str()) {
            return Err(format!(
                "{a:?} is not an action (one of {})",
                ACTIONS.join(", ")
            ));
        }
        if !out.contains(a) {
            out.push(a.clone());
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::meta::{Actions, RoleActions, Roles};

    fn authz() -> Authorizer {
        Authorizer {
            enabled: true,
            super_users: vec!["root".into()],
            proxy_roles: vec!["proxy".into()],
        }
    }

    fn policies() -> NamespacePolicies {
        let mut p = NamespacePolicies::default();
        let acts = |a: &[&str]| Actions {
            actions: a.iter().map(|s| s.to_string()).collect(),
        };
        p.namespace_auth.insert("reader".into(), acts(&["consume"]));
        p.namespace_auth.insert("writer".into(), acts(&["produce"]));
        let mut roles = RoleActions::default();
        roles
            .roles
            .insert("one".into(), acts(&["produce", "consume"]));
        p.destination_auth
            .insert("persistent://t/ns/parted".into(), roles);
        p.subscription_auth_roles.insert(
            "locked".into(),
            Roles {
                roles: vec!["writer".into()],
            },
        );
        p
    }

    #[test]
    fn roles_and_grants() {
        let a = authz();
        let tenant = TenantInfo {
            admin_roles: vec!["boss".into()],
            ..Default::default()
        };
        let p = policies();
        let t = "persistent://t/ns/x";
        let check = |role: &str, topic: &str, op| {
            a.allow_topic(role, Some(&tenant), Some(&p), topic, op)
                .is_ok()
        };
        // Super-user and tenant admin: everything.
        for role in ["root", "boss"] {
            assert!(check(role, t, TopicOp::Admin));
            assert!(check(role, t, TopicOp::Produce));
        }
        // Namespace grants.
        assert!(check("reader", t, TopicOp::Lookup));
        assert!(check("reader", t, TopicOp::Consume(Some("s"))));
        assert!(!check("reader", t, TopicOp::Produce));
        assert!(check("writer", t, TopicOp::Produce));
        assert!(!check("writer", t, TopicOp::Consume(None)));
        assert!(!check("reader", t, TopicOp::Admin));
        // A topic grant covers the topic and its partitions, nothing else.
        assert!(check("one", "persistent://t/ns/parted", TopicOp::Produce));
        assert!(check(
            "one",
            "persistent://t/ns/parted-partition-3",
            TopicOp::Consume(None)
        ));
        assert!(!check("one", t, TopicOp::Lookup));
        // Nobody else; and a missing namespace grants nothing.
        assert!(!check("stranger", t, TopicOp::Lookup));
        assert!(
            a.allow_topic("reader", None, None, t, TopicOp::Lookup)
                .is_err()
        );
        // Off: everything.
        assert!(
            Authorizer::default()
                .allow_topic("stranger", None, None, t, TopicOp::Admin)
                .is_ok()
        );
    }

    #[test]
    fn subscription_rules() {
        let a = authz();
        let mut p = policies();
        p.namespace_auth.insert(
            "writer".into(),
            Actions {
                actions: vec!["consume".into(), "produce".into()],
            },
        );
        let t = "persistent://t/ns/x";
        let sub = |role: &str, s: &str, p: &NamespacePolicies| {
            a.allow_topic(role, None, Some(p), t, TopicOp::Consume(Some(s)))
        };
        // Only the listed roles on a locked subscription.
        assert!(sub("writer", "locked", &p).is_ok());
        assert!(sub("reader", "locked", &p).is_err());
        assert!(sub("reader", "free", &p).is_ok());
        // Prefix mode.
        p.subscription_auth_mode = 1;
        let e = sub("reader", "free", &p).unwrap_err();
        assert!(e.0.contains("prefixed by the authentication role"), "{e:?}");
        assert!(sub("reader", "reader-sub", &p).is_ok());
        // Listing topics: namespace consume or admin.
        assert!(a.allow_list_topics("reader", None, Some(&p)));
        assert!(!a.allow_list_topics("one", None, Some(&p)));
        assert!(a.allow_list_topics("root", None, None));
    }

    #[test]
    fn proxies_must_name_whom_they_act_for() {
        let a = authz();
        assert!(a.check_proxy("proxy", Some("alice")).is_ok());
        assert!(a.check_proxy("proxy", None).is_err());
        assert!(a.check_proxy("proxy", Some("proxy")).is_err());
        assert!(a.check_proxy("alice", Some("bob")).is_err());
        assert!(a.check_proxy("alice", None).is_ok());
    }

    #[test]
    fn actions_are_checked() {
        assert_eq!(
            parse_actions(&["produce".into(), "consume".into(), "produce".into()]).unwrap(),
            ["consume", "produce"]
        );
        assert!(parse_actions(&["own".into()]).is_err());
    }
}
