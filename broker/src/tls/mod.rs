//! TLS for the broker's listeners: `pulsar+ssl://` (Pulsar's `brokerServicePortTls`, 6651)
//! and `https://` (`webServicePortTls`, 8443), as Pulsar configures them
//! (`../shared/reference/security.md` §4.1): a PEM certificate chain and key (PKCS#1, PKCS#8
//! or SEC1), a trust file for client certificates, client certificates optional unless
//! `tlsRequireTrustedClientCertOnConnect`, TLS 1.2 and 1.3, and the files re-read when they
//! change (`tlsCertRefreshCheckDurationSec`) so a renewed certificate needs no restart.
//!
//! Client certificates are checked by [`verifier::ClientVerifier`], not by rustls' stock
//! verifier: Pulsar's own test certificates are X.509 v1, which webpki refuses.

pub mod listener;
pub mod verifier;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS setting that does not work (a file that does not read, a key that does not fit).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// What the TLS listeners need from the broker's configuration.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// The broker's certificate chain, PEM (`tlsCertificateFilePath`).
    pub certificate_file: PathBuf,
    /// Its private key, PEM: PKCS#1, PKCS#8 or SEC1 (`tlsKeyFilePath`).
    pub key_file: PathBuf,
    /// CA certificates client certificates must chain to (`tlsTrustCertsFilePath`); none:
    /// no client certificate is asked for.
    pub trust_certs_file: Option<PathBuf>,
    /// Accept client certificates that do not verify (`tlsAllowInsecureConnection`).
    pub allow_insecure: bool,
    /// A client without a trusted certificate is refused at the handshake
    /// (`tlsRequireTrustedClientCertOnConnect`).
    pub require_client_cert: bool,
    /// How often the files are checked for changes (`tlsCertRefreshCheckDurationSec`; zero:
    /// at every new connection).
    pub refresh: Duration,
    /// Protocol versions offered: `TLSv1.2`, `TLSv1.3` (`tlsProtocols`; empty: both).
    pub protocols: Vec<String>,
}

/// The server side of TLS, reloaded when its files change.
pub struct ServerTls {
    settings: TlsSettings,
    state: Mutex<Loaded>,
}

struct Loaded {
    config: Arc<ServerConfig>,
    stamps: Vec<Option<SystemTime>>,
    checked: Instant,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("certificate_file", &self.settings.certificate_file)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the files now: a broker with an unusable certificate does not start.
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        let config = build(&settings)?;
        let stamps = stamps(&settings);
        Ok(ServerTls {
            settings,
            state: Mutex::new(Loaded {
                config,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The configuration for the next handshake: the files are looked at when the refresh
    /// period has passed, and loaded again if one changed (a broken new file is logged and
    /// the previous configuration kept).
    pub fn config(&self) -> Arc<ServerConfig> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= self.settings.refresh {
            state.checked = Instant::now();
            let now = stamps(&self.settings);
            if now != state.stamps {
                match build(&self.settings) {
                    Ok(config) => {
                        tracing::info!(
                            file = %self.settings.certificate_file.display(),
                            "TLS certificate files changed; loaded them again"
                        );
                        state.config = config;
                        state.stamps = now;
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "TLS certificate files changed but do not load; keeping the previous ones"
                    ),
                }
            }
        }
        state.config.clone()
    }

    /// An acceptor for the next connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config())
    }
}

fn stamps(s: &TlsSettings) -> Vec<Option<SystemTime>> {
    let mut files = vec![s.certificate_file.as_path(), s.key_file.as_path()];
    if let Some(t) = &s.trust_certs_file {
        files.push(t);
    }
    files
        .into_iter()
        .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .collect()
}

/// The crypto provider of every TLS endpoint (ring: no C++ build, and the one tonic and
/// etcd-client use).
#[allow(deprecated)] // ring's provider lacks post-quantum key exchange; clients still get X25519.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#1, PKCS#8 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| TlsError(format!("{}: no usable private key: {e}", path.display())))
}

fn versions(names: &[String]) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, TlsError> {
    if names.is_empty() {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    }
    names
        .iter()
        .map(|n| match n.trim() {
            "TLSv1.3" => Ok(&rustls::version::TLS13),
            "TLSv1.2" => Ok(&rustls::version::TLS12),
            other => Err(TlsError(format!(
                "TLS protocol {other:?} is not offered (TLSv1.2, TLSv1.3)"
            ))),
        })
        .collect()
}

fn build(s: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certs(&s.certificate_file)?;
    let key = read_key(&s.key_file)?;
    let provider = provider();
    let verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = match &s.trust_certs_file {
        Some(trust) => Arc::new(verifier::ClientVerifier::new(
            read_certs(trust)?,
            s.require_client_cert,
            s.allow_insecure,
            provider.signature_verification_algorithms,
        )?),
        None if s.require_client_cert => {
            return Err(TlsError(
                "a trusted client certificate is required but no trust file is set (tlsTrustCertsFilePath)".into(),
            ));
        }
        None => Arc::new(rustls::server::NoClientAuth),
    };
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions(&s.protocols)?)
        .map_err(|e| TlsError(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            TlsError(format!(
                "{} and {} do not make a TLS identity: {e}",
                s.certificate_file.display(),
                s.key_file.display()
            ))
        })?;
    Ok(Arc::new(config))
}

/// The first common name of a certificate's subject (the `tls` provider's role, as
/// Pulsar's AuthenticationProviderTls takes it).
pub fn common_name(cert: &[u8]) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert).ok()?;
    let cn = c.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
