//! t92: authentication (issue 19, item 3, token and basic providers): a standalone with
//! authentication on lets in a client with a valid token or password — the official Python
//! client included — and refuses every other one on the binary port (AuthenticationError,
//! connection closed) and over HTTP (401), while `/metrics` stays open. No credential reaches
//! the log.

use broker::protocol::pb::{self, BaseCommand};
use integration_tests::process::KeptDir;
use integration_tests::raw::RawConn;
use integration_tests::standalone::{StandaloneProcess, python};

/// Key bytes 0..31 and a token for `token-principal` signed with it (made by Pulsar's
/// `bin/pulsar tokens create`, from the security reference).
const KEY: &str = "data:;base64,AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0b2tlbi1wcmluY2lwYWwifQ.41DwdfALedR7gRdB5FUikoIlpD9Mnf-L52VdRvKEuXc";
/// The same subject, expired in 2001.
const EXPIRED: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0b2tlbi1wcmluY2lwYWwiLCJleHAiOjEwMDAwMDAwMDB9.XBChExL2gaCx1Pr66mRhcNbVlDPp8Hi_92WMNf1AHWE";
/// `admin:123456` as Apache MD5.
const HTPASSWD: &str = "admin:$apr1$FG4AO6aX$KGYPuMoLUou3i6vUkPUUf.\n";

async fn connect_with(addr: &str, method: &str, data: &[u8]) -> (RawConn, Option<BaseCommand>) {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    integration_tests::raw::connect_as(s, method, data).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t92_token_and_basic_authentication() {
    use base64::Engine as _;
    let dir = KeptDir::new("t92-");
    let htpasswd = format!(
        "data:;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(HTPASSWD)
    );
    let sa = StandaloneProcess::start_with(
        &dir.path(),
        &[
            ("MAGNETAR_AUTHENTICATION_ENABLED", "true"),
            ("MAGNETAR_AUTHENTICATION_PROVIDERS", "token,basic"),
            ("MAGNETAR_TOKEN_SECRET_KEY", KEY),
            ("MAGNETAR_BASIC_AUTH_CONF", &htpasswd),
        ],
    )
    .unwrap();
    let addr = sa.service_url.strip_prefix("pulsar://").unwrap().to_owned();
    // Valid credentials: CONNECTED, and the connection serves.
    for (method, data) in [
        ("token", TOKEN.as_bytes()),
        ("basic", b"admin:123456".as_slice()),
    ] {
        let (mut c, answer) = connect_with(&addr, method, data).await;
        assert!(answer.unwrap().connected.is_some(), "{method}");
        let ids = c
            .produce(
                &format!("persistent://public/default/auth-{method}"),
                1,
                2,
                b"x",
            )
            .await;
        assert_eq!(ids.len(), 2);
    }
    // Everything else: AuthenticationError, then the connection closes.
    for (method, data) in [
        ("token", EXPIRED.as_bytes()),
        ("token", b"not a token".as_slice()),
        ("basic", b"admin:wrong".as_slice()),
        ("basic", b"nobody:123456".as_slice()),
        ("none", b"".as_slice()),
        ("", b"".as_slice()),
    ] {
        let (mut c, answer) = connect_with(&addr, method, data).await;
        let e = answer.expect("an answer").error.expect("refused");
        assert_eq!(
            e.error,
            pb::ServerError::AuthenticationError as i32,
            "{method}"
        );
        assert!(c.next().await.is_none(), "closed after the refusal");
    }
    // HTTP: 401 without credentials, served with either; /metrics open.
    let get = |auth: Option<String>| {
        let url = sa.http_url.clone();
        async move {
            let addr: std::net::SocketAddr = url.strip_prefix("http://").unwrap().parse().unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let header = auth
                .map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default();
            s.write_all(
                format!(
                    "GET /admin/v2/tenants HTTP/1.1\r\nHost: x\r\n{header}Connection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        }
    };
    assert!(get(None).await.starts_with("HTTP/1.1 401"));
    assert!(
        get(Some("Bearer nope".into()))
            .await
            .starts_with("HTTP/1.1 401")
    );
    assert!(
        get(Some(format!("Bearer {TOKEN}")))
            .await
            .starts_with("HTTP/1.1 200")
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("admin:123456");
    assert!(
        get(Some(format!("Basic {basic}")))
            .await
            .starts_with("HTTP/1.1 200")
    );
    let metrics = integration_tests::http_body(&format!("{}/metrics", sa.http_url)).await;
    assert!(
        metrics.contains("pulsar_authentication_failures_total"),
        "counted"
    );
    // The official Python client, with a token and with a bad one.
    let script = r#"
import sys, pulsar
url, token, topic = sys.argv[1], sys.argv[2], sys.argv[3]
client = pulsar.Client(url, authentication=pulsar.AuthenticationToken(token), operation_timeout_seconds=5)
try:
    producer = client.create_producer(topic)
    producer.send(b'hello')
    print('sent')
except Exception as e:
    print('refused', type(e).__name__)
client.close()
"#;
    let run = |token: &str| {
        let out = std::process::Command::new(python())
            .args([
                "-c",
                script,
                &sa.service_url,
                token,
                "persistent://public/default/py-auth",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run(TOKEN).contains("sent"), "a valid token publishes");
    assert!(
        run(EXPIRED).contains("refused"),
        "an expired token is refused"
    );
    // No credential in the log.
    let log = std::fs::read_to_string(sa.log()).unwrap();
    for secret in [
        TOKEN,
        EXPIRED,
        "123456",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
    ] {
        assert!(!log.contains(secret), "the log holds a secret");
    }
    assert!(
        log.contains("authentication failed"),
        "failures are WARN lines"
    );
}
