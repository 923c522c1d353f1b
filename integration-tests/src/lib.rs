//! The cluster harness: real `etcd` and real `magnetar` processes on ephemeral loopback
//! ports, with kill -9, SIGTERM, SIGSTOP/SIGCONT and restart, and logs kept when a test
//! fails. Tests wait for conditions with deadlines (`meta::testing::wait_for`), never for a
//! fixed time.
//!
//! - [`admin`]: `magnetar admin` as a user runs it;
//! - [`bin`]: locates (and builds, once per test process) the `magnetar` binary;
//! - [`process`]: a child process that prints a `ready:` line, with signal helpers;
//! - [`bookie`]: a bookie process and a small gRPC client for it;
//! - [`golden`]: golden-file comparison;
//! - [`cluster`]: `TestCluster`, etcd plus N bookies, and ledger clients for it;
//! - [`standalone`]: a `magnetar standalone` process and the official Python client;
//! - [`raw`]: a hand-built Pulsar-protocol client, for misbehaving on purpose;
//! - [`tls`]: certificates made at test time (rcgen) and TLS connections to a broker.

pub mod admin;
pub mod bin;
pub mod bookie;
pub mod cluster;
pub mod golden;
pub mod process;
pub mod raw;
pub mod standalone;
pub mod tls;

pub use bookie::{BookieClient, BookieProcess};
pub use cluster::TestCluster;
pub use meta::testing::{EtcdServer, wait_for};

/// The body of a plain HTTP GET of `url` (`http://host:port/path`).
pub async fn http_body(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr: std::net::SocketAddr = host.parse().expect("host:port");
    let out = http_get(addr, &format!("/{path}")).await;
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

/// A plain HTTP/1.1 GET (status line, headers and body as one string): enough for
/// `/metrics` and status pages, without an HTTP client dependency.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    http_request("GET", addr, path).await
}

/// A plain HTTP/1.1 PUT with no body to `url` (`http://host:port/path`): the whole response.
pub async fn http_put(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr: std::net::SocketAddr = host.parse().expect("host:port");
    http_request("PUT", addr, &format!("/{path}")).await
}

/// One HTTP/1.1 request without a body; the whole response as a string.
pub async fn http_request(method: &str, addr: std::net::SocketAddr, path: &str) -> String {
    http_request_with_body(method, addr, path, b"").await
}

/// One HTTP/1.1 request with a JSON body (`url`: `http://host:port/path`); the whole
/// response as a string.
pub async fn http_json(method: &str, url: &str, body: &[u8]) -> String {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr: std::net::SocketAddr = host.parse().expect("host:port");
    http_request_with_body(method, addr, &format!("/{path}"), body).await
}

async fn http_request_with_body(
    method: &str,
    addr: std::net::SocketAddr,
    path: &str,
    body: &[u8],
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the HTTP port");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    s.write_all(&request).await.expect("send the request");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read the response");
    String::from_utf8_lossy(&out).into_owned()
}
