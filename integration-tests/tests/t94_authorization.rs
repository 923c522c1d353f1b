//! t94: authorization (issue 19, items 5, 6 and 11): with authorization on, roles × commands
//! on the binary port and roles × admin routes over HTTP, as Pulsar decides them — a
//! super-user may do anything, a tenant's admin anything in the tenant, other roles what was
//! granted on the namespace or the topic (partitions inherit their topic's grants), and
//! consumers also obey the subscription auth mode. Denials carry Pulsar's error codes and
//! messages; grants change through the permission endpoints and take effect at the next
//! command.

use broker::protocol::pb::{self, BaseCommand, base_command::Type, command_subscribe::SubType};
use integration_tests::process::KeptDir;
use integration_tests::raw::{RawConn, base, connect_as, producer, subscribe};
use integration_tests::standalone::StandaloneProcess;
use integration_tests::tls::http;

use integration_tests::tls::{TOKEN_KEY as KEY, token};
const NS: &str = "acme/ns";

fn bearer(role: &str) -> String {
    format!("Bearer {}", token(role))
}

/// A connection as `role` (`None`: no credentials, the anonymous role).
async fn as_role(addr: &str, role: Option<&str>) -> RawConn {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (c, answer) = match role {
        Some(r) => connect_as(s, "token", token(r).as_bytes()).await,
        None => connect_as(s, "none", b"").await,
    };
    assert!(answer.unwrap().connected.is_some(), "{role:?} connects");
    c
}

/// What the broker answered a topic command: `Ok` or the (error code, message).
type Verdict = Result<(), (i32, String)>;

async fn produce(c: &mut RawConn, topic: &str, id: u64) -> Verdict {
    c.send(&producer(topic, id, id)).await;
    let r = c.next().await.expect("an answer");
    match r.error {
        Some(e) => Err((e.error, e.message)),
        None => {
            assert!(r.producer_success.is_some(), "{r:?}");
            Ok(())
        }
    }
}

async fn consume(c: &mut RawConn, topic: &str, sub: &str, id: u64) -> Verdict {
    c.send(&subscribe(topic, sub, id, id, SubType::Shared))
        .await;
    let r = c.next().await.expect("an answer");
    match r.error {
        Some(e) => Err((e.error, e.message)),
        None => {
            assert!(r.success.is_some(), "{r:?}");
            Ok(())
        }
    }
}

async fn metadata(c: &mut RawConn, topic: &str, id: u64) -> Verdict {
    c.send(&BaseCommand {
        partition_metadata: Some(pb::CommandPartitionedTopicMetadata {
            topic: topic.into(),
            request_id: id,
            ..Default::default()
        }),
        ..base(Type::PartitionedMetadata)
    })
    .await;
    let r = c
        .next()
        .await
        .and_then(|r| r.partition_metadata_response)
        .expect("an answer");
    match r.error {
        Some(e) => Err((e, r.message.unwrap_or_default())),
        None => Ok(()),
    }
}

async fn lookup(c: &mut RawConn, topic: &str, id: u64) -> Verdict {
    c.send(&BaseCommand {
        lookup_topic: Some(pb::CommandLookupTopic {
            topic: topic.into(),
            request_id: id,
            ..Default::default()
        }),
        ..base(Type::Lookup)
    })
    .await;
    let r = c
        .next()
        .await
        .and_then(|r| r.lookup_topic_response)
        .expect("an answer");
    match r.error {
        Some(e) => Err((e, r.message.unwrap_or_default())),
        None => Ok(()),
    }
}

async fn list_topics(c: &mut RawConn, ns: &str, id: u64) -> Verdict {
    c.send(&BaseCommand {
        get_topics_of_namespace: Some(pb::CommandGetTopicsOfNamespace {
            namespace: ns.into(),
            request_id: id,
            ..Default::default()
        }),
        ..base(Type::GetTopicsOfNamespace)
    })
    .await;
    let r = c.next().await.expect("an answer");
    match r.error {
        Some(e) => Err((e.error, e.message)),
        None => Ok(()),
    }
}

const DENIED: i32 = pb::ServerError::AuthorizationError as i32;

fn denied(v: Verdict, message: &str) {
    match v {
        Err((code, m)) => {
            assert_eq!(code, DENIED, "{m}");
            assert!(m.contains(message), "{m:?} does not say {message:?}");
        }
        Ok(()) => panic!("allowed; expected {message:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t94_roles_commands_and_admin_routes() {
    let dir = KeptDir::new("t94-");
    let sa = StandaloneProcess::start_with(
        &dir.path(),
        &[
            ("MAGNETAR_AUTHENTICATION_ENABLED", "true"),
            ("MAGNETAR_AUTHENTICATION_PROVIDERS", "token"),
            ("MAGNETAR_TOKEN_SECRET_KEY", KEY),
            ("MAGNETAR_ANONYMOUS_USER_ROLE", "anonymous"),
            ("MAGNETAR_AUTHORIZATION_ENABLED", "true"),
            ("MAGNETAR_SUPER_USER_ROLES", "root"),
        ],
    )
    .unwrap();
    let addr = sa.service_url.strip_prefix("pulsar://").unwrap().to_owned();
    let url = sa.http_url.clone();
    let call =
        |role: Option<&'static str>, method: &'static str, path: String, body: &'static str| {
            let url = url.clone();
            async move {
                let auth = role.map(bearer);
                http(&url, method, &path, auth.as_deref(), body.as_bytes()).await
            }
        };

    // Set-up as root: a tenant administered by `boss`, a namespace with a grant in its
    // creation body, another grant through the permission endpoint.
    let (s, b) = call(
        Some("root"),
        "PUT",
        "/admin/v2/tenants/acme".into(),
        r#"{"adminRoles":["boss"],"allowedClusters":["standalone"]}"#,
    )
    .await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = call(
        Some("root"),
        "PUT",
        format!("/admin/v2/namespaces/{NS}"),
        r#"{"auth_policies":{"namespace_auth":{"reader":["consume"]}}}"#,
    )
    .await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = call(
        Some("boss"),
        "POST",
        format!("/admin/v2/namespaces/{NS}/permissions/writer"),
        r#"["produce"]"#,
    )
    .await;
    assert_eq!(s, 204, "{b}");
    let (s, b) = call(
        Some("boss"),
        "GET",
        format!("/admin/v2/namespaces/{NS}/permissions"),
        "",
    )
    .await;
    assert_eq!(s, 200);
    let grants: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        grants,
        serde_json::json!({"reader": ["consume"], "writer": ["produce"]})
    );
    // A bad action is refused.
    let (s, _) = call(
        Some("boss"),
        "POST",
        format!("/admin/v2/namespaces/{NS}/permissions/x"),
        r#"["own"]"#,
    )
    .await;
    assert_eq!(s, 400);

    // Roles × binary commands.
    let topic = format!("persistent://{NS}/t");
    for role in [Some("root"), Some("boss")] {
        let mut c = as_role(&addr, role).await;
        produce(&mut c, &topic, 1).await.unwrap();
        consume(&mut c, &topic, "s", 2).await.unwrap();
        metadata(&mut c, &topic, 3).await.unwrap();
        lookup(&mut c, &topic, 4).await.unwrap();
        list_topics(&mut c, NS, 5).await.unwrap();
    }
    let mut w = as_role(&addr, Some("writer")).await;
    produce(&mut w, &topic, 1).await.unwrap();
    metadata(&mut w, &topic, 2).await.unwrap();
    lookup(&mut w, &topic, 3).await.unwrap();
    denied(
        consume(&mut w, &topic, "s", 4).await,
        "Client is not authorized to subscribe",
    );
    denied(
        list_topics(&mut w, NS, 5).await,
        "is not authorized to GetTopicsOfNamespace",
    );
    let mut r = as_role(&addr, Some("reader")).await;
    consume(&mut r, &topic, "s", 1).await.unwrap();
    lookup(&mut r, &topic, 2).await.unwrap();
    list_topics(&mut r, NS, 3).await.unwrap();
    denied(
        produce(&mut r, &topic, 4).await,
        "Client is not authorized to Produce",
    );
    for role in [Some("stranger"), None] {
        let mut c = as_role(&addr, role).await;
        denied(
            metadata(&mut c, &topic, 1).await,
            "Client is not authorized to Get Partition Metadata",
        );
        denied(
            lookup(&mut c, &topic, 2).await,
            "Client is not authorized to Lookup",
        );
        denied(produce(&mut c, &topic, 3).await, "Produce");
        denied(consume(&mut c, &topic, "s", 4).await, "subscribe");
        // A namespace that does not exist is the handler's to answer, whoever asks
        // (Pulsar's clients expect TopicNotFound there, not AuthorizationError).
        let missing = lookup(&mut c, "persistent://acme/nope/x", 5).await;
        assert!(
            matches!(missing, Err((code, _)) if code == pb::ServerError::TopicNotFound as i32),
            "{missing:?}"
        );
    }

    // Roles × admin routes: 401 with Pulsar's reason unless allowed.
    let ns_path = format!("/admin/v2/namespaces/{NS}");
    for (role, method, path, want) in [
        (
            Some("stranger"),
            "GET",
            "/admin/v2/namespaces/acme".to_owned(),
            401,
        ),
        (
            Some("boss"),
            "GET",
            "/admin/v2/namespaces/acme".to_owned(),
            200,
        ),
        (Some("boss"), "GET", ns_path.clone(), 200),
        (
            Some("boss"),
            "POST",
            "/admin/v2/brokers/shutdown".to_owned(),
            401,
        ),
        (
            Some("boss"),
            "PUT",
            "/admin/v2/tenants/other".to_owned(),
            401,
        ),
        (None, "DELETE", "/admin/v2/tenants/acme".to_owned(), 401),
        (
            Some("writer"),
            "DELETE",
            format!("/admin/v2/persistent/{NS}/t"),
            401,
        ),
        (
            Some("reader"),
            "GET",
            format!("/admin/v2/persistent/{NS}"),
            200,
        ),
        (
            Some("writer"),
            "GET",
            format!("/admin/v2/persistent/{NS}"),
            401,
        ),
        (
            Some("writer"),
            "GET",
            format!("/lookup/v2/topic/persistent/{NS}/t"),
            200,
        ),
        (
            Some("stranger"),
            "GET",
            format!("/lookup/v2/topic/persistent/{NS}/t"),
            401,
        ),
        (
            Some("reader"),
            "GET",
            format!("/admin/v2/persistent/{NS}/t/stats"),
            200,
        ),
        (None, "GET", "/metrics".to_owned(), 200),
        (None, "GET", "/admin/v2/brokers/health".to_owned(), 200),
    ] {
        let (s, b) = call(role, method, path.clone(), "").await;
        assert_eq!(s, want, "{role:?} {method} {path}: {b}");
    }
    let (_, b) = call(
        Some("boss"),
        "POST",
        "/admin/v2/brokers/shutdown".into(),
        "",
    )
    .await;
    assert!(b.contains("super-user"), "{b}");

    // Revoking takes effect at the next command.
    let (s, _) = call(
        Some("boss"),
        "DELETE",
        format!("/admin/v2/namespaces/{NS}/permissions/writer"),
        "",
    )
    .await;
    assert_eq!(s, 204);
    denied(produce(&mut w, &topic, 6).await, "Produce");

    // Subscription auth mode Prefix: the subscription must start with the role.
    let (s, _) = call(
        Some("boss"),
        "POST",
        format!("/admin/v2/namespaces/{NS}/subscriptionAuthMode"),
        r#""Prefix""#,
    )
    .await;
    assert_eq!(s, 204);
    denied(consume(&mut r, &topic, "other-sub", 10).await, "prefixed");
    consume(&mut r, &topic, "reader-sub", 11).await.unwrap();

    // Subscription roles: only the listed roles on that subscription.
    let (s, _) = call(
        Some("boss"),
        "POST",
        format!("/admin/v2/namespaces/{NS}/permissions/subscription/reader-locked"),
        r#"["someone-else"]"#,
    )
    .await;
    assert_eq!(s, 204);
    denied(
        consume(&mut r, &topic, "reader-locked", 12).await,
        "not allowed",
    );

    // Topic grants cover the topic and its partitions, nothing else.
    for (method, path, body) in [
        (
            "POST",
            format!("/admin/v2/persistent/{NS}/only/permissions/one"),
            r#"["produce"]"#,
        ),
        (
            "PUT",
            format!("/admin/v2/persistent/{NS}/parted/partitions"),
            "2",
        ),
        (
            "POST",
            format!("/admin/v2/persistent/{NS}/parted/permissions/one"),
            r#"["produce"]"#,
        ),
    ] {
        let (s, b) = call(Some("boss"), method, path.clone(), body).await;
        assert_eq!(s, 204, "{path}: {b}");
    }
    let mut one = as_role(&addr, Some("one")).await;
    produce(&mut one, &format!("persistent://{NS}/only"), 1)
        .await
        .unwrap();
    produce(
        &mut one,
        &format!("persistent://{NS}/parted-partition-1"),
        2,
    )
    .await
    .unwrap();
    denied(produce(&mut one, &topic, 3).await, "Produce");
    let (s, b) = call(
        Some("boss"),
        "GET",
        format!("/admin/v2/persistent/{NS}/only/permissions"),
        "",
    )
    .await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["one"], serde_json::json!(["produce"]), "{b}");
    assert_eq!(v["reader"], serde_json::json!(["consume"]), "{b}");

    // The same grants through `magnetar admin`, authenticated with a token.
    let boss = token("boss");
    let admin = |args: &[&str]| {
        let mut all = vec!["--token", boss.as_str()];
        all.extend_from_slice(args);
        integration_tests::admin::ok(&sa.http_url, &all)
    };
    admin(&[
        "namespaces",
        "grant-permission",
        NS,
        "--role",
        "cli",
        "--actions",
        "produce,consume",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&admin(&["namespaces", "permissions", NS])).unwrap();
    assert_eq!(v["cli"], serde_json::json!(["consume", "produce"]));
    admin(&["namespaces", "revoke-permission", NS, "--role", "cli"]);
    let v: serde_json::Value =
        serde_json::from_str(&admin(&["namespaces", "permissions", NS])).unwrap();
    assert!(v.get("cli").is_none(), "{v}");
    admin(&["namespaces", "set-subscription-auth-mode", NS, "-m", "None"]);
    assert_eq!(
        admin(&["namespaces", "get-subscription-auth-mode", NS]).trim(),
        "\"None\""
    );
    admin(&[
        "namespaces",
        "grant-subscription-permission",
        NS,
        "-s",
        "audit",
        "--roles",
        "reader,auditor",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&admin(&["namespaces", "subscription-permission", NS])).unwrap();
    assert_eq!(v["audit"], serde_json::json!(["auditor", "reader"]));
    admin(&[
        "namespaces",
        "revoke-subscription-permission",
        NS,
        "-s",
        "audit",
        "--role",
        "auditor",
    ]);
    let only = format!("persistent://{NS}/only");
    admin(&[
        "topics",
        "grant-permission",
        &only,
        "--role",
        "cli",
        "--actions",
        "consume",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&admin(&["topics", "permissions", &only])).unwrap();
    assert_eq!(v["cli"], serde_json::json!(["consume"]));
    admin(&["topics", "revoke-permission", &only, "--role", "cli"]);
    // A role that may not: one line, Pulsar's reason and status.
    let stranger = token("stranger");
    let e = integration_tests::admin::fails(
        &sa.http_url,
        &["--token", &stranger, "namespaces", "permissions", NS],
    );
    assert!(e.contains("HTTP 401") && e.contains("tenant"), "{e}");
    let e = integration_tests::admin::fails(
        &sa.http_url,
        &[
            "--token",
            &boss,
            "namespaces",
            "grant-permission",
            NS,
            "--role",
            "x",
            "--actions",
            "own",
        ],
    );
    assert!(e.contains("HTTP 400"), "{e}");

    // Denials are WARN lines; no token reaches the log.
    let log = std::fs::read_to_string(sa.log()).unwrap();
    assert!(log.contains("command not authorized"));
    assert!(log.contains("HTTP call not authorized"));
    for role in ["root", "boss", "writer", "reader", "stranger", "one"] {
        assert!(!log.contains(&token(role)), "a token in the log");
    }
}
