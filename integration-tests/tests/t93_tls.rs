//! t93: TLS (issue 19, items 2, 3 and 11): a standalone with `pulsar+ssl://` and `https://`
//! listeners, client certificates checked against a trust file holding a CA made at test
//! time and the CA of the committed X.509 **v1** certificate. Shown: the `tls` provider takes
//! the role from the certificate (v3 ECDSA and v1 RSA); a token works over TLS; untrusted and
//! expired certificates fail the handshake; plain bytes to the TLS port and a ClientHello to
//! the plain port are closed without harm; lookups over TLS answer `brokerServiceUrlTls`;
//! HTTPS authenticates by certificate; a replaced certificate file is used by the next
//! connection.

use broker::protocol::pb::{self, BaseCommand, base_command::Type};
use integration_tests::process::KeptDir;
use integration_tests::raw::{RawConn, base, connect_as};
use integration_tests::standalone::StandaloneProcess;
use integration_tests::tls::{Pki, bundle, client_config, committed, connect, https};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use integration_tests::tls::{TOKEN_KEY as KEY, token};

/// Connects over TLS and sends CONNECT; `None` when the handshake or the session fails.
async fn tls_connect(
    addr: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
    method: &str,
    data: &[u8],
) -> Option<(RawConn, BaseCommand)> {
    let s = connect(addr, config).await.ok()?;
    let (c, answer) = connect_as(s, method, data).await;
    Some((c, answer?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t93_tls_listeners_certificates_and_the_tls_provider() {
    let dir = KeptDir::new("t93-");
    let d = dir.path();
    let pki = Pki::new(&d, "test");
    let server = pki.issue("localhost", false);
    let root = pki.issue("root", false);
    let alice = pki.issue("alice", false);
    let expired = pki.issue("expired", true);
    let other = Pki::new(&d, "other");
    let mallory = other.issue("mallory", false);
    let trust = bundle(
        &d.join("trust.pem"),
        &[pki.ca_file(), committed("ca-cert.pem")],
    );
    let v1 = integration_tests::tls::Identity {
        cert: committed("client-v1-cert.pem"),
        key: committed("client-v1-key.pem"),
    };
    // The certificate files the broker reads (replaced at the end).
    let cert_file = d.join("broker-cert.pem");
    let key_file = d.join("broker-key.pem");
    std::fs::copy(&server.cert, &cert_file).unwrap();
    std::fs::copy(&server.key, &key_file).unwrap();
    let env = [
        ("MAGNETAR_TLS_BIND", "127.0.0.1:0".to_owned()),
        ("MAGNETAR_HTTPS_BIND", "127.0.0.1:0".to_owned()),
        (
            "MAGNETAR_TLS_CERTIFICATE_FILE",
            cert_file.display().to_string(),
        ),
        ("MAGNETAR_TLS_KEY_FILE", key_file.display().to_string()),
        ("MAGNETAR_TLS_TRUST_CERTS_FILE", trust.display().to_string()),
        ("MAGNETAR_TLS_CERT_REFRESH_CHECK_INTERVAL", "0s".to_owned()),
        ("MAGNETAR_AUTHENTICATION_ENABLED", "true".to_owned()),
        ("MAGNETAR_AUTHENTICATION_PROVIDERS", "tls,token".to_owned()),
        ("MAGNETAR_TOKEN_SECRET_KEY", KEY.to_owned()),
        ("MAGNETAR_AUTHORIZATION_ENABLED", "true".to_owned()),
        ("MAGNETAR_SUPER_USER_ROLES", "root,admin-v1".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let sa = StandaloneProcess::start_with(&d, &env).unwrap();
    let tls_addr = sa.tls_url.strip_prefix("pulsar+ssl://").unwrap().to_owned();
    let https_addr = sa.https_url.strip_prefix("https://").unwrap().to_owned();
    let plain_addr = sa.service_url.strip_prefix("pulsar://").unwrap().to_owned();
    let ca = pki.ca_file();

    // The `tls` provider: the role is the certificate's CN; super-users may produce anywhere.
    for (who, id) in [("v3 ECDSA", &root), ("v1 RSA", &v1)] {
        let (mut c, answer) = tls_connect(&tls_addr, client_config(&ca, Some(id)), "tls", b"")
            .await
            .unwrap_or_else(|| panic!("{who}: handshake"));
        assert!(answer.connected.is_some(), "{who}: {answer:?}");
        let ids = c
            .produce("persistent://public/default/t93-tls", 1, 3, b"over tls")
            .await;
        assert_eq!(ids.len(), 3, "{who}");
        // A lookup over TLS names the TLS URL.
        c.send(&BaseCommand {
            lookup_topic: Some(pb::CommandLookupTopic {
                topic: "persistent://public/default/t93-tls".into(),
                request_id: 99,
                ..Default::default()
            }),
            ..base(Type::Lookup)
        })
        .await;
        let r = c.next().await.unwrap().lookup_topic_response.unwrap();
        assert_eq!(
            r.broker_service_url_tls.as_deref(),
            Some(sa.tls_url.as_str())
        );
    }
    // A trusted certificate of a role with no grants: authenticated, then not authorized.
    let (mut c, answer) = tls_connect(&tls_addr, client_config(&ca, Some(&alice)), "tls", b"")
        .await
        .unwrap();
    assert!(answer.connected.is_some());
    c.send(&integration_tests::raw::producer(
        "persistent://public/default/t93-tls",
        1,
        1,
    ))
    .await;
    let e = c.next().await.unwrap().error.expect("refused");
    assert_eq!(e.error, pb::ServerError::AuthorizationError as i32);
    // No certificate: method `tls` is refused; a token over TLS works.
    let (_, answer) = tls_connect(&tls_addr, client_config(&ca, None), "tls", b"")
        .await
        .unwrap();
    assert_eq!(
        answer.error.expect("refused").error,
        pb::ServerError::AuthenticationError as i32
    );
    let (_, answer) = tls_connect(
        &tls_addr,
        client_config(&ca, None),
        "token",
        token("root").as_bytes(),
    )
    .await
    .unwrap();
    assert!(answer.connected.is_some());
    // Untrusted and expired certificates: the handshake fails (TLS 1.3 clients learn it at
    // their first read).
    for (who, id) in [("untrusted", &mallory), ("expired", &expired)] {
        let r = tls_connect(&tls_addr, client_config(&ca, Some(id)), "tls", b"").await;
        assert!(
            r.is_none_or(|(_, a)| a.connected.is_none()),
            "{who} certificate accepted"
        );
    }
    // A client that does not trust the broker's CA gives up itself.
    assert!(
        connect(&tls_addr, client_config(&other.ca_file(), None))
            .await
            .is_err()
    );
    // Plain bytes to the TLS port, a ClientHello to the plain port: closed, nothing else.
    for addr in [&tls_addr, &plain_addr] {
        let mut s = tokio::net::TcpStream::connect(addr.as_str()).await.unwrap();
        let junk: &[u8] = if addr == &tls_addr {
            b"\x00\x00\x00\x10\x00\x00\x00\x0cGET / HTTP/1.1\r\n"
        } else {
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
        };
        s.write_all(junk).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(std::time::Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("closed in time");
        assert!(matches!(n, Ok(_) | Err(_)));
    }

    // HTTPS: the certificate authenticates; /metrics stays open; a role with no rights gets 401.
    let (status, body) = https(
        &https_addr,
        client_config(&ca, Some(&root)),
        "GET",
        "/admin/v2/tenants",
        None,
        b"",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("public"));
    let (status, _) = https(
        &https_addr,
        client_config(&ca, Some(&v1)),
        "GET",
        "/admin/v2/tenants",
        None,
        b"",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "the v1 certificate over HTTPS");
    let (status, _) = https(
        &https_addr,
        client_config(&ca, Some(&alice)),
        "GET",
        "/admin/v2/tenants",
        None,
        b"",
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    let (status, _) = https(
        &https_addr,
        client_config(&ca, None),
        "GET",
        "/admin/v2/tenants",
        Some(&format!("Bearer {}", token("root"))),
        b"",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "a token over HTTPS");
    let (status, _) = https(
        &https_addr,
        client_config(&ca, None),
        "GET",
        "/metrics",
        None,
        b"",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    // The HTTP lookup names both URLs.
    let (status, body) = https(
        &https_addr,
        client_config(&ca, Some(&root)),
        "GET",
        "/lookup/v2/topic/persistent/public/default/t93-tls",
        None,
        b"",
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["brokerUrlTls"], sa.tls_url.as_str());
    assert_eq!(v["httpUrlTls"], sa.https_url.as_str());

    // `magnetar admin` over HTTPS: trusting the CA, authenticated by certificate or token.
    let trust_flag = ca.display().to_string();
    let tls_params = format!(
        "tlsCertFile:{},tlsKeyFile:{}",
        root.cert.display(),
        root.key.display()
    );
    let tenants = integration_tests::admin::ok(
        &sa.https_url,
        &[
            "--tls-trust-cert-path",
            &trust_flag,
            "--auth-plugin",
            "org.apache.pulsar.client.impl.auth.AuthenticationTls",
            "--auth-params",
            &tls_params,
            "tenants",
            "list",
        ],
    );
    assert!(tenants.lines().any(|l| l == "public"), "{tenants}");
    let root_token = token("root");
    integration_tests::admin::ok(
        &sa.https_url,
        &[
            "--tls-trust-cert-path",
            &trust_flag,
            "--token",
            &root_token,
            "tenants",
            "list",
        ],
    );
    let e = integration_tests::admin::fails(
        &sa.https_url,
        &["--tls-trust-cert-path", &trust_flag, "tenants", "list"],
    );
    assert!(e.contains("HTTP 401"), "{e}");
    // A broker certificate the client does not trust: refused by the client.
    let e = integration_tests::admin::fails(
        &sa.https_url,
        &["--token", &root_token, "tenants", "list"],
    );
    assert!(e.contains("cannot reach"), "{e}");

    // `magnetar perf produce` over pulsar+ssl:// with a token.
    let out = std::process::Command::new(integration_tests::bin::magnetar())
        .args(["perf", "produce", "--service-url", &sa.tls_url])
        .args(["--tls-trust-cert-path", &trust_flag, "--token", &root_token])
        .args(["--duration", "1s", "--stats-interval", "0s", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(v["produced"]["messages"].as_u64().unwrap() > 0, "{v}");

    // A new certificate from another CA replaces the files: the next connection gets it.
    let renewed = other.issue("localhost", false);
    std::fs::copy(&renewed.key, &key_file).unwrap();
    std::fs::copy(&renewed.cert, &cert_file).unwrap();
    let trusts_other = client_config(&other.ca_file(), Some(&mallory));
    integration_tests::wait_for(
        "the renewed certificate is served",
        std::time::Duration::from_secs(30),
        || {
            let (addr, config) = (tls_addr.clone(), trusts_other.clone());
            async move { connect(&addr, config).await.ok().map(|_| ()) }
        },
    )
    .await;
    assert!(
        connect(&tls_addr, client_config(&ca, Some(&root)))
            .await
            .is_err(),
        "the old CA no longer verifies the broker"
    );
    // Nothing above brought the broker down, and no failure went unlogged.
    assert!(sa.pid().is_some());
    let log = std::fs::read_to_string(sa.log()).unwrap();
    assert!(
        log.contains("TLS handshake failed"),
        "handshake failures are logged"
    );
    assert!(log.contains("loaded them again"), "the reload is logged");
}
