//! t96: credential refresh (issue 19, item 3, PIP-55): a connection whose token expires is
//! challenged (AUTH_CHALLENGE, method `token`, data `PulsarAuthRefresh`) at the next check;
//! answering with a new token for the same role keeps it serving; not answering, answering
//! with another role or with bad credentials, or not supporting refresh at all, closes it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker::protocol::pb::{self, BaseCommand, base_command::Type};
use integration_tests::process::KeptDir;
use integration_tests::raw::{RawConn, base};
use integration_tests::standalone::StandaloneProcess;
use integration_tests::tls::TOKEN_KEY;

fn token_until(role: &str, exp: u64) -> String {
    let key: Vec<u8> = (0..32).collect();
    broker::auth::token::sign_with_secret(
        &key,
        &[("sub", role.into()), ("exp", exp.into())],
        broker::auth::token::Algorithm::HS256,
    )
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// CONNECT with a token good for `secs` more seconds.
async fn connect(addr: &str, role: &str, secs: u64, refresh: bool) -> RawConn {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut c = RawConn::from_stream(s);
    c.send(&BaseCommand {
        connect: Some(pb::CommandConnect {
            client_version: "raw-test".into(),
            protocol_version: Some(19),
            auth_method_name: Some("token".into()),
            auth_data: Some(token_until(role, now() + secs).into_bytes().into()),
            feature_flags: Some(pb::FeatureFlags {
                supports_auth_refresh: Some(refresh),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..base(Type::Connect)
    })
    .await;
    assert!(c.next().await.unwrap().connected.is_some());
    c
}

async fn answer(c: &mut RawConn, data: &[u8]) {
    c.send(&BaseCommand {
        auth_response: Some(pb::CommandAuthResponse {
            client_version: Some("raw-test".into()),
            response: Some(pb::AuthData {
                auth_method_name: Some("token".into()),
                auth_data: Some(data.to_vec().into()),
            }),
            protocol_version: Some(19),
        }),
        ..base(Type::AuthResponse)
    })
    .await;
}

/// The next frame within `within`: `Some(frame)`, or `None` once the broker closed.
async fn next_or_closed(c: &mut RawConn, within: Duration) -> Option<BaseCommand> {
    tokio::time::timeout(within, c.next())
        .await
        .expect("the broker neither spoke nor closed in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t96_expired_tokens_are_challenged_and_renewed_or_disconnected() {
    let dir = KeptDir::new("t96-");
    let sa = StandaloneProcess::start_with(
        &dir.path(),
        &[
            ("MAGNETAR_AUTHENTICATION_ENABLED", "true"),
            ("MAGNETAR_AUTHENTICATION_PROVIDERS", "token"),
            ("MAGNETAR_TOKEN_SECRET_KEY", TOKEN_KEY),
            ("MAGNETAR_AUTHENTICATION_REFRESH_CHECK_INTERVAL", "3s"),
        ],
    )
    .unwrap();
    let addr = sa.service_url.strip_prefix("pulsar://").unwrap().to_owned();
    let within = Duration::from_secs(15);

    // Renewed: challenged once, answered with a fresh token of the same role, keeps serving
    // past the old expiry and the checks after it.
    let mut c = connect(&addr, "app", 2, true).await;
    let challenge = next_or_closed(&mut c, within)
        .await
        .and_then(|f| f.auth_challenge)
        .expect("an AUTH_CHALLENGE");
    let data = challenge.challenge.unwrap();
    assert_eq!(data.auth_method_name.as_deref(), Some("token"));
    assert_eq!(data.auth_data.as_deref(), Some(&b"PulsarAuthRefresh"[..]));
    answer(&mut c, token_until("app", now() + 3600).as_bytes()).await;
    // A check goes by without a word from the broker (the client had a whole check period
    // to answer), then the connection still serves.
    assert!(
        tokio::time::timeout(Duration::from_secs(4), c.next())
            .await
            .is_err(),
        "a renewed connection is left alone"
    );
    let ids = c
        .produce("persistent://public/default/t96", 1, 2, b"x")
        .await;
    assert_eq!(ids.len(), 2);

    // Not answered: closed at the check after the challenge.
    let mut c = connect(&addr, "app", 1, true).await;
    assert!(
        next_or_closed(&mut c, within)
            .await
            .unwrap()
            .auth_challenge
            .is_some()
    );
    assert!(next_or_closed(&mut c, within).await.is_none(), "closed");

    // Another role: closed.
    let mut c = connect(&addr, "app", 1, true).await;
    assert!(
        next_or_closed(&mut c, within)
            .await
            .unwrap()
            .auth_challenge
            .is_some()
    );
    answer(&mut c, token_until("admin", now() + 3600).as_bytes()).await;
    assert!(next_or_closed(&mut c, within).await.is_none(), "closed");

    // Bad credentials: AuthenticationError, closed.
    let mut c = connect(&addr, "app", 1, true).await;
    assert!(
        next_or_closed(&mut c, within)
            .await
            .unwrap()
            .auth_challenge
            .is_some()
    );
    answer(&mut c, b"not a token").await;
    let e = next_or_closed(&mut c, within)
        .await
        .unwrap()
        .error
        .expect("an error");
    assert_eq!(e.error, pb::ServerError::AuthenticationError as i32);
    assert!(next_or_closed(&mut c, within).await.is_none(), "closed");

    // A client that cannot refresh: closed once its token expires, without a challenge.
    let mut c = connect(&addr, "app", 1, false).await;
    assert!(next_or_closed(&mut c, within).await.is_none(), "closed");

    let log = std::fs::read_to_string(sa.log()).unwrap();
    assert!(log.contains("refresh challenge went unanswered"), "logged");
}
