//! `magnetar admin`: the broker's `/admin/v2` REST API in `pulsar-admin`'s shape —
//! `magnetar admin [--admin-url URL] brokers|clusters|tenants|namespaces|topics|schemas <verb> …`, Pulsar's
//! flags, lists one per line, records as JSON. A 307 from a broker that does not own a topic
//! is followed to the owner. An error is one line (`magnetar: <reason> (HTTP <status>)`) and
//! a non-zero exit.

use anyhow::{Context, bail};
use broker::service::normalize_topic;

/// Flags of `magnetar admin`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A broker's HTTP(S) address (any broker: calls are redirected to the owner)
    /// [default: client.conf's webServiceUrl, else http://127.0.0.1:8080].
    #[arg(long, env = "MAGNETAR_ADMIN_URL")]
    admin_url: Option<String>,
    #[command(flatten)]
    client: super::client_auth::ClientArgs,
    #[command(subcommand)]
    group: Group,
}

#[derive(Debug, clap::Subcommand)]
enum Group {
    /// Live brokers, the leader, health.
    #[command(subcommand)]
    Brokers(Brokers),
    /// The cluster.
    #[command(subcommand)]
    Clusters(Clusters),
    /// Tenants.
    #[command(subcommand)]
    Tenants(Tenants),
    /// Namespaces (`tenant/namespace`).
    #[command(subcommand)]
    Namespaces(Namespaces),
    /// Persistent topics, plain and partitioned.
    #[command(subcommand)]
    Topics(Topics),
    /// Topics' schemas.
    #[command(subcommand)]
    Schemas(Schemas),
}

#[derive(Debug, clap::Subcommand)]
enum Schemas {
    /// Show a topic's schema: the latest version, --version N, or --all.
    Get {
        topic: String,
        #[arg(long, conflicts_with = "all")]
        version: Option<u64>,
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// Register a schema from a file of Pulsar's form: {"type": "AVRO", "schema": "…", "properties": {}}.
    Upload {
        topic: String,
        #[arg(short = 'f', long)]
        filename: std::path::PathBuf,
    },
    /// Delete every version of a topic's schema.
    Delete { topic: String },
}

#[derive(Debug, clap::Subcommand)]
enum Brokers {
    /// List the live brokers of a cluster (`host:port` of their HTTP service).
    List { cluster: String },
    /// Show the leader broker.
    LeaderBroker,
    /// Check the broker's health: prints `ok`, or fails with what is wrong.
    Healthcheck,
    /// Shut the broker down gracefully (its bundles handed over first) and wait until it
    /// has exited.
    Shutdown {
        /// Longest wait for the broker to exit, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

#[derive(Debug, clap::Subcommand)]
enum Clusters {
    /// List clusters.
    List,
    /// Show a cluster's URLs.
    Get { cluster: String },
}

#[derive(Debug, clap::Subcommand)]
enum Tenants {
    /// List tenants.
    List,
    /// Show a tenant.
    Get { tenant: String },
    /// Create a tenant.
    Create {
        tenant: String,
        /// Admin roles, comma-separated.
        #[arg(short = 'r', long = "admin-roles", value_delimiter = ',')]
        admin_roles: Vec<String>,
        /// Allowed clusters, comma-separated (default: this cluster).
        #[arg(short = 'c', long = "allowed-clusters", value_delimiter = ',')]
        allowed_clusters: Vec<String>,
    },
    /// Replace a tenant's roles and clusters.
    Update {
        tenant: String,
        #[arg(short = 'r', long = "admin-roles", value_delimiter = ',')]
        admin_roles: Vec<String>,
        #[arg(short = 'c', long = "allowed-clusters", value_delimiter = ',')]
        allowed_clusters: Vec<String>,
    },
    /// Delete a tenant (it must have no namespaces).
    Delete { tenant: String },
}

#[derive(Debug, clap::Subcommand)]
enum Namespaces {
    /// List a tenant's namespaces.
    List { tenant: String },
    /// Create a namespace.
    Create {
        namespace: String,
        /// Number of bundles (kept with the namespace; default: the broker's `[ownership] bundles`).
        #[arg(short = 'b', long)]
        bundles: Option<u32>,
        /// Replication clusters, comma-separated.
        #[arg(short = 'c', long, value_delimiter = ',')]
        clusters: Vec<String>,
    },
    /// Show a namespace's policies.
    Policies { namespace: String },
    /// Delete a namespace (it must have no topics unless --force).
    Delete {
        namespace: String,
        /// Delete its topics too.
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Set the quorums of the namespace's next ledgers.
    SetPersistence {
        namespace: String,
        /// Bookies each ledger is striped over.
        #[arg(short = 'e', long = "bookkeeper-ensemble")]
        ensemble: u32,
        /// Copies of each entry.
        #[arg(short = 'w', long = "bookkeeper-write-quorum")]
        write_quorum: u32,
        /// Acknowledgements before an entry is durable.
        #[arg(short = 'a', long = "bookkeeper-ack-quorum")]
        ack_quorum: u32,
        /// Cursor mark-delete updates per second.
        #[arg(short = 'r', long = "ml-mark-delete-max-rate", default_value_t = 0.0)]
        mark_delete_rate: f64,
    },
    /// Keep consumed data: for `--time` (30m, 3h, 2d, 1w; -1 forever) or up to `--size`
    /// (100M, 10G; -1 unlimited) per topic.
    SetRetention {
        namespace: String,
        #[arg(short = 't', long, allow_hyphen_values = true)]
        time: String,
        #[arg(short = 's', long, allow_hyphen_values = true)]
        size: String,
    },
    /// Turn producer de-duplication on or off for the namespace.
    SetDeduplication {
        namespace: String,
        #[arg(long, conflicts_with = "disable", required_unless_present = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    /// Show the namespace's de-duplication setting (null: the broker's).
    GetDeduplication { namespace: String },
    /// Remove the namespace's de-duplication setting (back to the broker's).
    RemoveDeduplication { namespace: String },
    /// Show the namespace's retention policy (null: nothing is kept once consumed).
    GetRetention { namespace: String },
    /// Remove the retention policy.
    RemoveRetention { namespace: String },
    /// Show the namespace's persistence policy (null: the broker's defaults).
    GetPersistence { namespace: String },
    /// Remove the persistence policy (back to the broker's defaults).
    RemovePersistence { namespace: String },
    /// Expire messages not acknowledged this long after they were published (seconds, or
    /// 10m, 3h, 2d; 0: never).
    SetMessageTtl {
        namespace: String,
        #[arg(long = "messageTTL", alias = "ttl")]
        ttl: String,
    },
    /// Show the namespace's message TTL in seconds (null: the broker's).
    GetMessageTtl { namespace: String },
    /// Remove the namespace's message TTL (back to the broker's).
    RemoveMessageTtl { namespace: String },
    /// Limit producers per topic (0: unlimited).
    SetMaxProducersPerTopic {
        namespace: String,
        #[arg(short = 'p', long = "max-producers-per-topic")]
        max: u32,
    },
    /// Show the producers-per-topic limit (null: unlimited).
    GetMaxProducersPerTopic { namespace: String },
    /// Remove the producers-per-topic limit.
    RemoveMaxProducersPerTopic { namespace: String },
    /// Limit consumers per topic (0: unlimited).
    SetMaxConsumersPerTopic {
        namespace: String,
        #[arg(short = 'c', long = "max-consumers-per-topic")]
        max: u32,
    },
    /// Show the consumers-per-topic limit (null: unlimited).
    GetMaxConsumersPerTopic { namespace: String },
    /// Remove the consumers-per-topic limit.
    RemoveMaxConsumersPerTopic { namespace: String },
    /// Limit consumers per subscription (0: unlimited).
    SetMaxConsumersPerSubscription {
        namespace: String,
        #[arg(short = 'c', long = "max-consumers-per-subscription")]
        max: u32,
    },
    /// Show the consumers-per-subscription limit (null: unlimited).
    GetMaxConsumersPerSubscription { namespace: String },
    /// Remove the consumers-per-subscription limit.
    RemoveMaxConsumersPerSubscription { namespace: String },
    /// Limit the namespace's topics' backlog by size (-l 10G) or, with -t message_age, by the
    /// age of the oldest unconsumed message (--limitTime 1h).
    SetBacklogQuota {
        namespace: String,
        /// Size: 500K, 100M, 10G (bytes when bare).
        #[arg(short = 'l', long)]
        limit: Option<String>,
        /// Age: 30s, 10m, 3h, 2d (seconds when bare).
        #[arg(long = "limitTime", alias = "limit-time")]
        limit_time: Option<String>,
        /// producer_request_hold, producer_exception or consumer_backlog_eviction.
        #[arg(short = 'p', long)]
        policy: String,
        /// destination_storage (size) or message_age.
        #[arg(short = 't', long = "type", default_value = "destination_storage")]
        quota_type: String,
    },
    /// Let producers and consumers create topics in the namespace (--enable), of a type
    /// (-t partitioned -n 4), or not (--disable).
    SetAutoTopicCreation {
        namespace: String,
        #[arg(
            short = 'e',
            long,
            conflicts_with = "disable",
            required_unless_present = "disable"
        )]
        enable: bool,
        #[arg(short = 'd', long)]
        disable: bool,
        /// partitioned or non-partitioned.
        #[arg(short = 't', long = "type", default_value = "non-partitioned")]
        topic_type: String,
        /// Partitions of an auto-created partitioned topic.
        #[arg(short = 'n', long = "num-partitions")]
        num_partitions: Option<u32>,
    },
    /// Show the namespace's auto topic creation override (null: the broker's).
    GetAutoTopicCreation { namespace: String },
    /// Remove the override (back to the broker's `allow_auto_topic_creation`).
    RemoveAutoTopicCreation { namespace: String },
    /// Delete durable subscriptions that have had no consumer for this many minutes (0: never).
    SetSubscriptionExpirationTime {
        namespace: String,
        #[arg(short = 't', long)]
        time: u32,
    },
    /// Show the namespace's subscription expiration in minutes (null: never).
    GetSubscriptionExpirationTime { namespace: String },
    /// Remove the subscription expiration.
    RemoveSubscriptionExpirationTime { namespace: String },
    /// Set how a topic's schema may change: BACKWARD, FORWARD, FULL (the default), their
    /// _TRANSITIVE forms, ALWAYS_COMPATIBLE, ALWAYS_INCOMPATIBLE or UNDEFINED.
    SetSchemaCompatibilityStrategy {
        namespace: String,
        #[arg(short = 'c', long)]
        compatibility: String,
    },
    /// Show the namespace's schema compatibility strategy.
    GetSchemaCompatibilityStrategy { namespace: String },
    /// Limit each consumer to N unacknowledged messages (0: unlimited).
    SetMaxUnackedMessagesPerConsumer {
        namespace: String,
        #[arg(short = 'c', long = "max-unacked-messages-per-topic")]
        max: u32,
    },
    /// Show the namespace's max unacked messages per consumer (null: unlimited).
    GetMaxUnackedMessagesPerConsumer { namespace: String },
    /// Remove the namespace's max unacked messages per consumer.
    RemoveMaxUnackedMessagesPerConsumer { namespace: String },
    /// Show the namespace's backlog quotas.
    GetBacklogQuotas { namespace: String },
    /// Remove a backlog quota.
    RemoveBacklogQuota {
        namespace: String,
        #[arg(short = 't', long = "type", default_value = "destination_storage")]
        quota_type: String,
    },
    /// Unload a bundle (or every bundle): its owner closes its topics and gives it up.
    Unload {
        namespace: String,
        /// Bundle, e.g. 0x00000000_0x40000000.
        #[arg(short = 'b', long)]
        bundle: Option<String>,
    },
    #[command(flatten)]
    Permissions(super::admin_permissions::NamespaceVerbs),
}

// Verb names are pulsar-admin's (`list-partitioned-topics`), so some end in the group's name.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, clap::Subcommand)]
enum Topics {
    /// List a namespace's topics.
    List { namespace: String },
    /// List a namespace's partitioned topics.
    ListPartitionedTopics { namespace: String },
    /// Create a non-partitioned topic.
    Create { topic: String },
    /// Create a partitioned topic.
    CreatePartitionedTopic {
        topic: String,
        /// Number of partitions.
        #[arg(short = 'p', long)]
        partitions: u32,
    },
    /// Increase a partitioned topic's partitions.
    UpdatePartitionedTopic {
        topic: String,
        #[arg(short = 'p', long)]
        partitions: u32,
    },
    /// Show a topic's partition count.
    GetPartitionedTopicMetadata { topic: String },
    /// Delete a topic (refused while it has producers or consumers, unless --force).
    Delete {
        topic: String,
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Delete a partitioned topic and its partitions.
    DeletePartitionedTopic {
        topic: String,
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Unload a topic: its clients reconnect, it is loaded again on next use.
    Unload { topic: String },
    /// A topic's stats (JSON): rates, counters, sizes, publishers, subscriptions.
    Stats { topic: String },
    /// The managed ledger's view (JSON): ledgers and cursors.
    StatsInternal { topic: String },
    /// A partitioned topic's stats summed over its partitions.
    PartitionedStats {
        topic: String,
        /// Each partition's stats too.
        #[arg(long)]
        per_partition: bool,
    },
    /// A topic's subscriptions.
    Subscriptions { topic: String },
    /// Look a topic up: the broker that serves it.
    Lookup { topic: String },
    /// The namespace bundle a topic belongs to.
    BundleRange { topic: String },
    /// Compact a topic: keep each key's latest message for read-compacted readers.
    Compact { topic: String },
    /// Show a topic's compaction status (-w: wait until it is no longer running).
    CompactionStatus {
        topic: String,
        #[arg(short = 'w', long = "wait-complete")]
        wait: bool,
    },
    /// Limit each consumer of the topic to N unacknowledged messages (over its namespace's).
    SetMaxUnackedMessagesPerConsumer {
        topic: String,
        #[arg(short = 'm', long = "maxUnackedNum")]
        max: u32,
    },
    /// Show the topic's own limit (null: its namespace's).
    GetMaxUnackedMessagesPerConsumer { topic: String },
    /// Remove the topic's own limit.
    RemoveMaxUnackedMessagesPerConsumer { topic: String },
    #[command(flatten)]
    Messages(super::admin_messages::Verbs),
    #[command(flatten)]
    Permissions(super::admin_permissions::TopicVerbs),
}

/// The REST client.
pub(super) struct Admin {
    base: String,
    agent: ureq::Agent,
    /// The `Authorization` header of every call (never printed).
    authorization: Option<String>,
}

/// A successful answer: its headers and body.
pub(super) struct Answer {
    pub headers: ureq::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Admin {
    fn new(base: &str, client: &super::client_auth::Client) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .tls_config(client.tls.clone())
            .build()
            .into();
        Admin {
            base: base.trim_end_matches('/').to_owned(),
            agent,
            authorization: client.authorization.clone(),
        }
    }

    /// One call; follows 307s (to the owner) up to 5 times; errors are Pulsar's reason.
    pub(super) fn call_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<Answer> {
        let mut url = format!("{}{path}", self.base);
        for _ in 0..5 {
            let mut req = ureq::http::Request::builder()
                .method(method)
                .uri(&url)
                .header("Content-Type", "application/json");
            if let Some(a) = &self.authorization {
                req = req.header("Authorization", a);
            }
            let req = req
                .body(body.clone().unwrap_or_default())
                .context("building the request")?;
            let mut resp = self
                .agent
                .run(req)
                .with_context(|| format!("cannot reach {url}"))?;
            let status = resp.status();
            let bytes = resp
                .body_mut()
                .with_config()
                .limit(256 << 20)
                .read_to_vec()
                .unwrap_or_default();
            if status.as_u16() == 307 {
                url = resp
                    .headers()
                    .get("location")
                    .and_then(|l| l.to_str().ok())
                    .context("a redirect without a Location")?
                    .to_owned();
                continue;
            }
            if status.is_success() {
                return Ok(Answer {
                    headers: resp.headers().clone(),
                    body: bytes,
                });
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let reason = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_owned))
                .unwrap_or(text);
            bail!("{} (HTTP {})", reason.trim(), status.as_u16());
        }
        bail!("too many redirects for {path}")
    }

    /// One call; the body as text.
    pub(super) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<String> {
        let answer = self.call_raw(method, path, body)?;
        Ok(String::from_utf8_lossy(&answer.body).into_owned())
    }

    pub(super) fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let text = self.call("GET", path, None)?;
        serde_json::from_str(&text).with_context(|| format!("the answer is not JSON: {text}"))
    }
}

/// `persistent/tenant/ns/topic` for a topic named as Pulsar's clients name it.
pub(super) fn topic_path(topic: &str) -> anyhow::Result<String> {
    let full = normalize_topic(topic)?;
    Ok(full.replacen("://", "/", 1))
}

/// `tenant/ns`, checked.
pub(super) fn namespace(ns: &str) -> anyhow::Result<&str> {
    match ns.split('/').collect::<Vec<_>>()[..] {
        [t, n] if !t.is_empty() && !n.is_empty() => Ok(ns),
        _ => bail!("namespace {ns:?}: expected tenant/namespace"),
    }
}

/// pulsar-admin's time: `-1`, or a number with s/m/h/d/w (minutes when bare) → minutes.
fn minutes(s: &str) -> anyhow::Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n
        .parse()
        .with_context(|| format!("time {s:?}: expected e.g. 30m, 3h, 2d or -1"))?;
    let secs = match unit {
        "s" => n,
        "" | "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        "w" => n * 604_800,
        _ => bail!("time {s:?}: unit must be s, m, h, d or w"),
    };
    Ok((secs + 59) / 60)
}

/// pulsar-admin's size: `-1`, or a number with k/M/G/T (bytes when bare) → megabytes.
fn megabytes(s: &str) -> anyhow::Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    Ok((bytes(s)? + (1 << 20) - 1) >> 20)
}

/// pulsar-admin's size: a number with k/M/G/T (bytes when bare) → bytes.
fn bytes(s: &str) -> anyhow::Result<i64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n
        .parse()
        .with_context(|| format!("size {s:?}: expected e.g. 100M, 10G or -1"))?;
    Ok(match unit.to_ascii_lowercase().as_str() {
        "" => n,
        "k" => n << 10,
        "m" => n << 20,
        "g" => n << 30,
        "t" => n << 40,
        _ => bail!("size {s:?}: unit must be k, M, G or T"),
    })
}

pub(super) fn print_list(v: &serde_json::Value) {
    for item in v.as_array().into_iter().flatten() {
        match item.as_str() {
            Some(s) => println!("{s}"),
            None => println!("{item}"),
        }
    }
}

pub(super) fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn tenant_body(roles: Vec<String>, clusters: Vec<String>) -> String {
    serde_json::json!({ "adminRoles": roles, "allowedClusters": clusters }).to_string()
}

/// Runs `magnetar admin`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let client = args.client.resolve()?;
    let url = args
        .admin_url
        .or_else(|| client.web_service_url.clone())
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let a = Admin::new(&url, &client);
    match args.group {
        Group::Brokers(Brokers::List { cluster }) => {
            print_list(&a.get(&format!("/admin/v2/brokers/{cluster}"))?)
        }
        Group::Brokers(Brokers::LeaderBroker) => {
            print_json(&a.get("/admin/v2/brokers/leaderBroker")?)?
        }
        Group::Brokers(Brokers::Healthcheck) => {
            println!(
                "{}",
                a.call("GET", "/admin/v2/brokers/health", None)?.trim()
            )
        }
        Group::Brokers(Brokers::Shutdown { timeout }) => {
            a.call("POST", "/admin/v2/brokers/shutdown", None)?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
            // the broker has exited once its HTTP port refuses connections
            while a.call("GET", "/status", None).is_ok() {
                if std::time::Instant::now() > deadline {
                    bail!("the broker is still running after {timeout} s");
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
        Group::Clusters(Clusters::List) => print_list(&a.get("/admin/v2/clusters")?),
        Group::Clusters(Clusters::Get { cluster }) => {
            print_json(&a.get(&format!("/admin/v2/clusters/{cluster}"))?)?;
        }
        Group::Tenants(t) => tenants(&a, t)?,
        Group::Namespaces(n) => namespaces(&a, n)?,
        Group::Topics(t) => topics(&a, t)?,
        Group::Schemas(sc) => schemas(&a, sc)?,
    }
    Ok(())
}

fn schemas(a: &Admin, sc: Schemas) -> anyhow::Result<()> {
    let path = |topic: &str| -> anyhow::Result<String> {
        let p = topic_path(topic)?;
        let rest = p.strip_prefix("persistent/").unwrap_or(&p).to_owned();
        Ok(format!("/admin/v2/schemas/{rest}"))
    };
    match sc {
        Schemas::Get {
            topic,
            version,
            all,
        } => {
            let base = path(&topic)?;
            let url = match (version, all) {
                (_, true) => format!("{base}/schemas"),
                (Some(v), _) => format!("{base}/schema/{v}"),
                (None, false) => format!("{base}/schema"),
            };
            print_json(&a.get(&url)?)?;
        }
        Schemas::Upload { topic, filename } => {
            let body = std::fs::read_to_string(&filename)
                .with_context(|| format!("cannot read {}", filename.display()))?;
            serde_json::from_str::<serde_json::Value>(&body)
                .with_context(|| format!("{} is not JSON", filename.display()))?;
            let v = serde_json::from_str::<serde_json::Value>(&a.call(
                "POST",
                &format!("{}/schema", path(&topic)?),
                Some(body),
            )?)?;
            println!("{}", v.pointer("/version/version").unwrap_or(&v));
        }
        Schemas::Delete { topic } => {
            a.call("DELETE", &format!("{}/schema", path(&topic)?), None)?;
        }
    }
    Ok(())
}

fn tenants(a: &Admin, t: Tenants) -> anyhow::Result<()> {
    match t {
        Tenants::List => print_list(&a.get("/admin/v2/tenants")?),
        Tenants::Get { tenant } => print_json(&a.get(&format!("/admin/v2/tenants/{tenant}"))?)?,
        Tenants::Create {
            tenant,
            admin_roles,
            allowed_clusters,
        } => {
            let body = tenant_body(admin_roles, allowed_clusters);
            a.call("PUT", &format!("/admin/v2/tenants/{tenant}"), Some(body))?;
        }
        Tenants::Update {
            tenant,
            admin_roles,
            allowed_clusters,
        } => {
            let body = tenant_body(admin_roles, allowed_clusters);
            a.call("POST", &format!("/admin/v2/tenants/{tenant}"), Some(body))?;
        }
        Tenants::Delete { tenant } => {
            a.call("DELETE", &format!("/admin/v2/tenants/{tenant}"), None)?;
        }
    }
    Ok(())
}

/// A one-number namespace policy: GET prints it (null when unset), POST sets, DELETE removes.
fn number_policy(
    a: &Admin,
    method: &str,
    ns: &str,
    policy: &str,
    body: Option<String>,
) -> anyhow::Result<()> {
    let path = format!("/admin/v2/namespaces/{}/{policy}", namespace(ns)?);
    if method == "GET" {
        print_json(&a.get(&path)?)
    } else {
        a.call(method, &path, body).map(|_| ())
    }
}

fn namespaces(a: &Admin, n: Namespaces) -> anyhow::Result<()> {
    match n {
        Namespaces::Permissions(v) => super::admin_permissions::namespace_verb(a, v)?,
        Namespaces::List { tenant } => {
            print_list(&a.get(&format!("/admin/v2/namespaces/{tenant}"))?)
        }
        Namespaces::Create {
            namespace: ns,
            bundles,
            clusters,
        } => {
            let mut body = serde_json::json!({});
            if let Some(b) = bundles {
                body["bundles"] = serde_json::json!({ "numBundles": b });
            }
            if !clusters.is_empty() {
                body["replication_clusters"] = serde_json::json!(clusters);
            }
            let path = format!("/admin/v2/namespaces/{}", namespace(&ns)?);
            a.call("PUT", &path, Some(body.to_string()))?;
        }
        Namespaces::Policies { namespace: ns } => {
            print_json(&a.get(&format!("/admin/v2/namespaces/{}", namespace(&ns)?))?)?;
        }
        Namespaces::Delete {
            namespace: ns,
            force,
        } => {
            let path = format!("/admin/v2/namespaces/{}?force={force}", namespace(&ns)?);
            a.call("DELETE", &path, None)?;
        }
        Namespaces::SetPersistence {
            namespace: ns,
            ensemble,
            write_quorum,
            ack_quorum,
            mark_delete_rate,
        } => {
            let body = serde_json::json!({
                "bookkeeperEnsemble": ensemble,
                "bookkeeperWriteQuorum": write_quorum,
                "bookkeeperAckQuorum": ack_quorum,
                "managedLedgerMaxMarkDeleteRate": mark_delete_rate,
            });
            let path = format!("/admin/v2/namespaces/{}/persistence", namespace(&ns)?);
            a.call("POST", &path, Some(body.to_string()))?;
        }
        Namespaces::SetRetention {
            namespace: ns,
            time,
            size,
        } => {
            let body = serde_json::json!({
                "retentionTimeInMinutes": minutes(&time)?,
                "retentionSizeInMB": megabytes(&size)?,
            });
            let path = format!("/admin/v2/namespaces/{}/retention", namespace(&ns)?);
            a.call("POST", &path, Some(body.to_string()))?;
        }
        Namespaces::SetDeduplication {
            namespace: ns,
            enable,
            ..
        } => {
            let path = format!("/admin/v2/namespaces/{}/deduplication", namespace(&ns)?);
            a.call("POST", &path, Some(enable.to_string()))?;
        }
        Namespaces::GetDeduplication { namespace: ns } => {
            let path = format!("/admin/v2/namespaces/{}/deduplication", namespace(&ns)?);
            print_json(&a.get(&path)?)?;
        }
        Namespaces::RemoveDeduplication { namespace: ns } => {
            let path = format!("/admin/v2/namespaces/{}/deduplication", namespace(&ns)?);
            a.call("DELETE", &path, None)?;
        }
        Namespaces::GetRetention { namespace: ns } => {
            let path = format!("/admin/v2/namespaces/{}/retention", namespace(&ns)?);
            print_json(&a.get(&path)?)?;
        }
        Namespaces::RemoveRetention { namespace: ns } => {
            let path = format!("/admin/v2/namespaces/{}/retention", namespace(&ns)?);
            a.call("DELETE", &path, None)?;
        }
        Namespaces::GetPersistence { namespace: ns } => {
            let path = format!("/admin/v2/namespaces/{}/persistence", namespace(&ns)?);
            print_json(&a.get(&path)?)?;
        }
        Namespaces::RemovePersistence { namespace: ns } => {
            let path = format!("/admin/v2/namespaces/{}/persistence", namespace(&ns)?);
            a.call("DELETE", &path, None)?;
        }
        Namespaces::SetBacklogQuota {
            namespace: ns,
            limit,
            limit_time,
            policy,
            quota_type,
        } => {
            let mut body = serde_json::json!({ "policy": policy });
            match (quota_type.as_str(), limit, limit_time) {
                ("destination_storage", Some(l), _) => body["limitSize"] = bytes(&l)?.into(),
                ("message_age", _, Some(t)) => {
                    body["limitTime"] = super::admin_messages::seconds(&t)?.into();
                }
                ("destination_storage", None, _) => bail!("a size quota needs -l/--limit"),
                ("message_age", _, None) => bail!("an age quota needs --limitTime"),
                (other, _, _) => {
                    bail!("quota type {other:?}: destination_storage or message_age")
                }
            }
            let path = format!(
                "/admin/v2/namespaces/{}/backlogQuota?backlogQuotaType={quota_type}",
                namespace(&ns)?
            );
            a.call("POST", &path, Some(body.to_string()))?;
        }
        Namespaces::SetAutoTopicCreation {
            namespace: ns,
            enable,
            topic_type,
            num_partitions,
            ..
        } => {
            let mut body = serde_json::json!({
                "allowAutoTopicCreation": enable, "topicType": topic_type,
            });
            if let Some(n) = num_partitions {
                body["defaultNumPartitions"] = n.into();
            }
            let path = format!("/admin/v2/namespaces/{}/autoTopicCreation", namespace(&ns)?);
            a.call("POST", &path, Some(body.to_string()))?;
        }
        Namespaces::GetAutoTopicCreation { namespace: ns } => {
            let path = format!("/admin/v2/namespaces/{}/autoTopicCreation", namespace(&ns)?);
            print_json(&a.get(&path)?)?;
        }
        Namespaces::RemoveAutoTopicCreation { namespace: ns } => {
            let path = format!("/admin/v2/namespaces/{}/autoTopicCreation", namespace(&ns)?);
            a.call("DELETE", &path, None)?;
        }
        Namespaces::SetSubscriptionExpirationTime {
            namespace: ns,
            time,
        } => {
            let body = Some(time.to_string());
            number_policy(a, "POST", &ns, "subscriptionExpirationTime", body)?;
        }
        Namespaces::GetSubscriptionExpirationTime { namespace: ns } => {
            number_policy(a, "GET", &ns, "subscriptionExpirationTime", None)?;
        }
        Namespaces::RemoveSubscriptionExpirationTime { namespace: ns } => {
            number_policy(a, "DELETE", &ns, "subscriptionExpirationTime", None)?;
        }
        Namespaces::SetSchemaCompatibilityStrategy {
            namespace: ns,
            compatibility,
        } => {
            let path = format!(
                "/admin/v2/namespaces/{}/schemaCompatibilityStrategy",
                namespace(&ns)?
            );
            a.call(
                "PUT",
                &path,
                Some(serde_json::json!(compatibility).to_string()),
            )?;
        }
        Namespaces::GetSchemaCompatibilityStrategy { namespace: ns } => {
            let path = format!(
                "/admin/v2/namespaces/{}/schemaCompatibilityStrategy",
                namespace(&ns)?
            );
            println!("{}", a.get(&path)?.as_str().unwrap_or("UNDEFINED"));
        }
        Namespaces::SetMaxUnackedMessagesPerConsumer { namespace: ns, max } => {
            let body = Some(max.to_string());
            number_policy(a, "POST", &ns, "maxUnackedMessagesPerConsumer", body)?;
        }
        Namespaces::GetMaxUnackedMessagesPerConsumer { namespace: ns } => {
            number_policy(a, "GET", &ns, "maxUnackedMessagesPerConsumer", None)?;
        }
        Namespaces::RemoveMaxUnackedMessagesPerConsumer { namespace: ns } => {
            number_policy(a, "DELETE", &ns, "maxUnackedMessagesPerConsumer", None)?;
        }
        Namespaces::GetBacklogQuotas { namespace: ns } => {
            let path = format!("/admin/v2/namespaces/{}/backlogQuotaMap", namespace(&ns)?);
            print_json(&a.get(&path)?)?;
        }
        Namespaces::RemoveBacklogQuota {
            namespace: ns,
            quota_type,
        } => {
            let path = format!(
                "/admin/v2/namespaces/{}/backlogQuota?backlogQuotaType={quota_type}",
                namespace(&ns)?
            );
            a.call("DELETE", &path, None)?;
        }
        Namespaces::SetMessageTtl { namespace: ns, ttl } => {
            let secs = super::admin_messages::seconds(&ttl)?;
            number_policy(a, "POST", &ns, "messageTTL", Some(secs.to_string()))?;
        }
        Namespaces::GetMessageTtl { namespace: ns } => {
            number_policy(a, "GET", &ns, "messageTTL", None)?;
        }
        Namespaces::RemoveMessageTtl { namespace: ns } => {
            number_policy(a, "DELETE", &ns, "messageTTL", None)?;
        }
        Namespaces::SetMaxProducersPerTopic { namespace: ns, max } => {
            number_policy(
                a,
                "POST",
                &ns,
                "maxProducersPerTopic",
                Some(max.to_string()),
            )?;
        }
        Namespaces::GetMaxProducersPerTopic { namespace: ns } => {
            number_policy(a, "GET", &ns, "maxProducersPerTopic", None)?;
        }
        Namespaces::RemoveMaxProducersPerTopic { namespace: ns } => {
            number_policy(a, "DELETE", &ns, "maxProducersPerTopic", None)?;
        }
        Namespaces::SetMaxConsumersPerTopic { namespace: ns, max } => {
            number_policy(
                a,
                "POST",
                &ns,
                "maxConsumersPerTopic",
                Some(max.to_string()),
            )?;
        }
        Namespaces::GetMaxConsumersPerTopic { namespace: ns } => {
            number_policy(a, "GET", &ns, "maxConsumersPerTopic", None)?;
        }
        Namespaces::RemoveMaxConsumersPerTopic { namespace: ns } => {
            number_policy(a, "DELETE", &ns, "maxConsumersPerTopic", None)?;
        }
        Namespaces::SetMaxConsumersPerSubscription { namespace: ns, max } => {
            let body = Some(max.to_string());
            number_policy(a, "POST", &ns, "maxConsumersPerSubscription", body)?;
        }
        Namespaces::GetMaxConsumersPerSubscription { namespace: ns } => {
            number_policy(a, "GET", &ns, "maxConsumersPerSubscription", None)?;
        }
        Namespaces::RemoveMaxConsumersPerSubscription { namespace: ns } => {
            number_policy(a, "DELETE", &ns, "maxConsumersPerSubscription", None)?;
        }
        Namespaces::Unload {
            namespace: ns,
            bundle,
        } => {
            let ns = namespace(&ns)?;
            let bundles = match bundle {
                Some(b) => vec![b],
                None => {
                    let p = a.get(&format!("/admin/v2/namespaces/{ns}"))?;
                    let b: Vec<String> = p
                        .pointer("/bundles/boundaries")
                        .and_then(|v| serde_json::from_value(v.clone()).ok())
                        .unwrap_or_default();
                    b.windows(2).map(|w| format!("{}_{}", w[0], w[1])).collect()
                }
            };
            for b in bundles {
                a.call(
                    "PUT",
                    &format!("/admin/v2/namespaces/{ns}/{b}/unload"),
                    None,
                )?;
            }
        }
    }
    Ok(())
}

fn topics(a: &Admin, t: Topics) -> anyhow::Result<()> {
    match t {
        Topics::List { namespace: ns } => {
            print_list(&a.get(&format!("/admin/v2/persistent/{}", namespace(&ns)?))?);
        }
        Topics::ListPartitionedTopics { namespace: ns } => {
            print_list(&a.get(&format!(
                "/admin/v2/persistent/{}/partitioned",
                namespace(&ns)?
            ))?);
        }
        Topics::Create { topic } => {
            a.call("PUT", &format!("/admin/v2/{}", topic_path(&topic)?), None)?;
        }
        Topics::CreatePartitionedTopic { topic, partitions } => {
            let path = format!("/admin/v2/{}/partitions", topic_path(&topic)?);
            a.call("PUT", &path, Some(partitions.to_string()))?;
        }
        Topics::UpdatePartitionedTopic { topic, partitions } => {
            let path = format!("/admin/v2/{}/partitions", topic_path(&topic)?);
            a.call("POST", &path, Some(partitions.to_string()))?;
        }
        Topics::GetPartitionedTopicMetadata { topic } => {
            let path = format!("/admin/v2/{}/partitions", topic_path(&topic)?);
            print_json(&a.get(&path)?)?;
        }
        Topics::Delete { topic, force } => {
            let path = format!("/admin/v2/{}?force={force}", topic_path(&topic)?);
            a.call("DELETE", &path, None)?;
        }
        Topics::DeletePartitionedTopic { topic, force } => {
            let path = format!("/admin/v2/{}/partitions?force={force}", topic_path(&topic)?);
            a.call("DELETE", &path, None)?;
        }
        Topics::Unload { topic } => {
            a.call(
                "PUT",
                &format!("/admin/v2/{}/unload", topic_path(&topic)?),
                None,
            )?;
        }
        Topics::Stats { topic } => {
            print_json(&a.get(&format!("/admin/v2/{}/stats", topic_path(&topic)?))?)?;
        }
        Topics::StatsInternal { topic } => {
            print_json(&a.get(&format!("/admin/v2/{}/internalStats", topic_path(&topic)?))?)?;
        }
        Topics::PartitionedStats {
            topic,
            per_partition,
        } => {
            let path = format!(
                "/admin/v2/{}/partitioned-stats?perPartition={per_partition}",
                topic_path(&topic)?
            );
            print_json(&a.get(&path)?)?;
        }
        Topics::Subscriptions { topic } => {
            print_list(&a.get(&format!("/admin/v2/{}/subscriptions", topic_path(&topic)?))?);
        }
        Topics::Lookup { topic } => {
            let v = a.get(&format!("/lookup/v2/topic/{}", topic_path(&topic)?))?;
            println!("{}", v.get("brokerUrl").unwrap_or(&v));
        }
        Topics::Messages(v) => super::admin_messages::run(a, v)?,
        Topics::Permissions(v) => super::admin_permissions::topic_verb(a, v)?,
        Topics::Compact { topic } => {
            a.call(
                "PUT",
                &format!("/admin/v2/{}/compaction", topic_path(&topic)?),
                None,
            )?;
            println!("Topic compaction requested for {topic}");
        }
        Topics::CompactionStatus { topic, wait } => {
            let path = format!("/admin/v2/{}/compaction", topic_path(&topic)?);
            loop {
                let v = a.get(&path)?;
                let status = v["status"].as_str().unwrap_or_default().to_owned();
                if wait && status == "RUNNING" {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    continue;
                }
                match status.as_str() {
                    "SUCCESS" => println!("Compaction was a success"),
                    "NOT_RUN" => println!(
                        "Compaction has not been run for {topic} since the last broker restart"
                    ),
                    "RUNNING" => println!("Compaction is currently running"),
                    _ => bail!(
                        "Error in compaction: {}",
                        v["lastError"].as_str().unwrap_or_default()
                    ),
                }
                break;
            }
        }
        Topics::BundleRange { topic } => {
            let v = a.get(&format!("/admin/v2/{}/bundle", topic_path(&topic)?))?;
            println!("{}", v.as_str().unwrap_or_default());
        }
        Topics::SetMaxUnackedMessagesPerConsumer { topic, max } => {
            let path = format!(
                "/admin/v2/{}/maxUnackedMessagesOnConsumer",
                topic_path(&topic)?
            );
            a.call("POST", &path, Some(max.to_string()))?;
        }
        Topics::GetMaxUnackedMessagesPerConsumer { topic } => {
            let path = format!(
                "/admin/v2/{}/maxUnackedMessagesOnConsumer",
                topic_path(&topic)?
            );
            print_json(&a.get(&path)?)?;
        }
        Topics::RemoveMaxUnackedMessagesPerConsumer { topic } => {
            let path = format!(
                "/admin/v2/{}/maxUnackedMessagesOnConsumer",
                topic_path(&topic)?
            );
            a.call("DELETE", &path, None)?;
        }
    }
    Ok(())
}
