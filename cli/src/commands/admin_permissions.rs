//! `magnetar admin namespaces|topics` grant verbs, with `pulsar-admin`'s names and flags:
//! `permissions`, `grant-permission --role R --actions produce,consume`, `revoke-permission`,
//! and on namespaces the subscription ones and the subscription auth mode
//! (`docs/security.md`, "Authorization").

use super::admin::{Admin, namespace, print_json, topic_path};

/// Grant verbs of `namespaces`.
#[derive(Debug, clap::Subcommand)]
pub enum NamespaceVerbs {
    /// Show the actions granted to each role on the namespace.
    Permissions { namespace: String },
    /// Grant actions (produce, consume, functions, sources, sinks, packages) to a role.
    GrantPermission {
        namespace: String,
        #[arg(long)]
        role: String,
        /// Comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<String>,
    },
    /// Take every action back from a role.
    RevokePermission {
        namespace: String,
        #[arg(long)]
        role: String,
    },
    /// Show the roles allowed on each subscription.
    SubscriptionPermission { namespace: String },
    /// Allow roles on a subscription (others with consume are then refused on it).
    GrantSubscriptionPermission {
        namespace: String,
        #[arg(short = 's', long)]
        subscription: String,
        /// Comma-separated (`-rs` in pulsar-admin).
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
    },
    /// Take a role off a subscription's list.
    RevokeSubscriptionPermission {
        namespace: String,
        #[arg(short = 's', long)]
        subscription: String,
        #[arg(long)]
        role: String,
    },
    /// `None`, or `Prefix`: subscription names must start with the consumer's role.
    SetSubscriptionAuthMode {
        namespace: String,
        #[arg(short = 'm', long = "subscription-auth-mode")]
        mode: String,
    },
    /// Show the subscription auth mode.
    GetSubscriptionAuthMode { namespace: String },
}

/// Grant verbs of `topics`.
#[derive(Debug, clap::Subcommand)]
pub enum TopicVerbs {
    /// Show the actions each role may do on the topic (its grants and its namespace's).
    Permissions { topic: String },
    /// Grant actions on the topic to a role.
    GrantPermission {
        topic: String,
        #[arg(long)]
        role: String,
        #[arg(long, value_delimiter = ',', required = true)]
        actions: Vec<String>,
    },
    /// Take the topic's grant back from a role.
    RevokePermission {
        topic: String,
        #[arg(long)]
        role: String,
    },
}

fn ns_path(ns: &str, rest: &str) -> anyhow::Result<String> {
    Ok(format!("/admin/v2/namespaces/{}/{rest}", namespace(ns)?))
}

/// Runs a namespace grant verb.
pub fn namespace_verb(a: &Admin, v: NamespaceVerbs) -> anyhow::Result<()> {
    match v {
        NamespaceVerbs::Permissions { namespace: ns } => {
            print_json(&a.get(&ns_path(&ns, "permissions")?)?)?
        }
        NamespaceVerbs::GrantPermission {
            namespace: ns,
            role,
            actions,
        } => {
            let body = serde_json::json!(actions).to_string();
            a.call(
                "POST",
                &ns_path(&ns, &format!("permissions/{role}"))?,
                Some(body),
            )?;
        }
        NamespaceVerbs::RevokePermission {
            namespace: ns,
            role,
        } => {
            a.call(
                "DELETE",
                &ns_path(&ns, &format!("permissions/{role}"))?,
                None,
            )?;
        }
        NamespaceVerbs::SubscriptionPermission { namespace: ns } => {
            print_json(&a.get(&ns_path(&ns, "permissions/subscription")?)?)?
        }
        NamespaceVerbs::GrantSubscriptionPermission {
            namespace: ns,
            subscription,
            roles,
        } => {
            let body = serde_json::json!(roles).to_string();
            let path = ns_path(&ns, &format!("permissions/subscription/{subscription}"))?;
            a.call("POST", &path, Some(body))?;
        }
        NamespaceVerbs::RevokeSubscriptionPermission {
            namespace: ns,
            subscription,
            role,
        } => {
            let path = ns_path(&ns, &format!("permissions/{subscription}/{role}"))?;
            a.call("DELETE", &path, None)?;
        }
        NamespaceVerbs::SetSubscriptionAuthMode {
            namespace: ns,
            mode,
        } => {
            let body = serde_json::json!(mode).to_string();
            a.call("POST", &ns_path(&ns, "subscriptionAuthMode")?, Some(body))?;
        }
        NamespaceVerbs::GetSubscriptionAuthMode { namespace: ns } => {
            print_json(&a.get(&ns_path(&ns, "subscriptionAuthMode")?)?)?
        }
    }
    Ok(())
}

/// Runs a topic grant verb.
pub fn topic_verb(a: &Admin, v: TopicVerbs) -> anyhow::Result<()> {
    match v {
        TopicVerbs::Permissions { topic } => {
            print_json(&a.get(&format!("/admin/v2/{}/permissions", topic_path(&topic)?))?)?
        }
        TopicVerbs::GrantPermission {
            topic,
            role,
            actions,
        } => {
            let path = format!("/admin/v2/{}/permissions/{role}", topic_path(&topic)?);
            a.call("POST", &path, Some(serde_json::json!(actions).to_string()))?;
        }
        TopicVerbs::RevokePermission { topic, role } => {
            let path = format!("/admin/v2/{}/permissions/{role}", topic_path(&topic)?);
            a.call("DELETE", &path, None)?;
        }
    }
    Ok(())
}
