//! TLS for tests: a certificate authority made at test time (rcgen), server and client
//! certificates it signs (valid, expired), the committed X.509 v1 client certificate
//! (`tests/certs/`), and TLS client connections to a broker's `pulsar+ssl://` and `https://`
//! ports.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The directory of the committed certificates.
pub fn committed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/certs")
        .join(name)
}

/// A test CA and the files it made.
pub struct Pki {
    dir: PathBuf,
    name: String,
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The certificate chain file.
    pub cert: PathBuf,
    /// The private key file.
    pub key: PathBuf,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::OrganizationName, "Magnetar tests");
    d.push(DnType::CommonName, cn);
    d
}

impl Pki {
    /// A new CA; its files go under `dir`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Pki {
            dir: dir.to_owned(),
            name: name.to_owned(),
            ca,
        };
        std::fs::write(pki.ca_file(), pki.ca.pem()).unwrap();
        pki
    }

    /// The CA certificate's PEM file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A certificate for `cn`, with `localhost` and `127.0.0.1` as alternative names (for
    /// servers), valid now unless `expired`.
    pub fn issue(&self, cn: &str, expired: bool) -> Identity {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name = dn(cn);
        if expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let id = Identity {
            cert: self.dir.join(format!("{cn}-cert.pem")),
            key: self.dir.join(format!("{cn}-key.pem")),
        };
        std::fs::write(&id.cert, cert.pem()).unwrap();
        std::fs::write(&id.key, key.serialize_pem()).unwrap();
        id
    }
}

/// A file holding several PEM files one after the other (a trust file of many CAs).
pub fn bundle(out: &Path, files: &[PathBuf]) -> PathBuf {
    let mut all = String::new();
    for f in files {
        all.push_str(&std::fs::read_to_string(f).unwrap());
        all.push('\n');
    }
    std::fs::write(out, all).unwrap();
    out.to_owned()
}

/// A client configuration trusting the CAs of `trust` and presenting `identity`, if any.
pub fn client_config(trust: &Path, identity: Option<&Identity>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(trust).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        // Through a resolver: rustls' own `with_client_auth_cert` parses the certificate
        // with webpki, which refuses the v1 one (what the broker must accept).
        Some(id) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(&id.cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(&id.key).unwrap();
            let key = provider.key_provider.load_private_key(key).unwrap();
            let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, key));
            builder.with_client_cert_resolver(Arc::new(Always(certified)))
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Presents one certificate whatever the server asks.
#[derive(Debug)]
struct Always(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for Always {
    fn resolve(
        &self,
        _hints: &[&[u8]],
        _schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS session to `host:port` (`localhost` is the name checked), or the handshake error.
pub async fn connect(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let s = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    Ok(s)
}

/// One HTTP/1.1 request over TLS (`Authorization` header optional): the status code and body.
pub async fn https(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let s = connect(addr, config).await?;
    Ok(exchange(s, method, path, authorization, body).await)
}

/// One plain HTTP/1.1 request with an optional `Authorization` header: status and body.
pub async fn http(
    url: &str,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let host = url
        .strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/');
    let s = TcpStream::connect(host).await.unwrap();
    exchange(s, method, path, authorization, body).await
}

/// Sends one request with `Connection: close` and reads the answer to its end: its status
/// (0 if none came) and body.
async fn exchange(
    mut s: impl crate::raw::Io,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    if s.write_all(&req).await.is_err() || s.flush().await.is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    // A TLS peer may close without close_notify after a `Connection: close` answer.
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The secret key of the tests' token authentication (bytes 0..31, the security
/// reference's vector), in Pulsar's `data:` form.
pub const TOKEN_KEY: &str = "data:;base64,AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// A token for `role` signed with [`TOKEN_KEY`], as `magnetar tokens create` makes it.
pub fn token(role: &str) -> String {
    let key: Vec<u8> = (0..32).collect();
    broker::auth::token::sign_with_secret(
        &key,
        &[("sub", role.into())],
        broker::auth::token::Algorithm::HS256,
    )
    .expect("HS256 signs")
}
