//! TLS and credentials for `magnetar perf produce|consume`: `pulsar+ssl://` service URLs,
//! `--tls-trust-cert-path` / `--tls-allow-insecure`, and a token (`--token`, or
//! `MAGNETAR_TOKEN`) sent on CONNECT — so the cost of security is measured with the same
//! tool as the plain figures.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// The flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SecurityArgs {
    /// A token to authenticate with (method `token`).
    #[arg(long, env = "MAGNETAR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificates (PEM) the broker's certificate must chain to (pulsar+ssl://).
    #[arg(long)]
    tls_trust_cert_path: Option<PathBuf>,
    /// Accept any broker certificate (testing only).
    #[arg(long)]
    tls_allow_insecure: bool,
}

/// What connections use.
pub struct Security {
    token: Option<String>,
    tls: Arc<rustls::ClientConfig>,
}

static SECURITY: OnceLock<Security> = OnceLock::new();

/// Sets the run's security from its flags (once per process).
pub fn install(args: &SecurityArgs) -> anyhow::Result<()> {
    #[allow(deprecated)] // ring: the provider the broker uses too.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = if args.tls_allow_insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = &args.tls_trust_cert_path {
            for c in CertificateDer::pem_file_iter(path)
                .with_context(|| format!("reading {}", path.display()))?
            {
                roots.add(c.with_context(|| format!("reading {}", path.display()))?)?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    let _ = SECURITY.set(Security {
        token: args.token.clone(),
        tls: Arc::new(config),
    });
    Ok(())
}

/// The installed settings.
pub fn current() -> &'static Security {
    SECURITY.get_or_init(|| Security {
        token: None,
        tls: Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                #[allow(deprecated)]
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
        ),
    })
}

impl Security {
    /// CONNECT's `auth_method_name` and `auth_data`.
    pub fn credentials(&self) -> (Option<String>, Option<Vec<u8>>) {
        match &self.token {
            Some(t) => (Some("token".into()), Some(t.trim().as_bytes().to_vec())),
            None => (None, None),
        }
    }

    /// The client side of a handshake with `addr` (`host:port`).
    pub async fn tls_connect(
        &self,
        addr: &str,
        tcp: tokio::net::TcpStream,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .with_context(|| format!("{host:?} is not a host name"))?;
        match tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
        {
            Ok(s) => Ok(s),
            Err(e) => bail!("TLS handshake with {addr}: {e}"),
        }
    }
}

/// `--tls-allow-insecure`: any certificate, still a real handshake signature check.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
