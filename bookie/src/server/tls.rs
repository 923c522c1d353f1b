//! gRPC over TLS for the bookie, and who may call it: with a trust file every caller must
//! present a certificate chaining to it (mutual TLS), and [`authorize`] lets through only a
//! certificate whose CN or an OU is one of `authorized_roles` — BookKeeper's
//! BookieAuthZFactory. Without that, anyone reaching the port could add to, read, fence or
//! delete any ledger.

use std::sync::Arc;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::BookieConfig;
use crate::error::{BookieError, Result};

/// The TLS side of the bookie's gRPC server.
#[derive(Debug, Clone)]
pub struct GrpcTls {
    /// tonic's server configuration.
    pub config: ServerTlsConfig,
    /// Roles allowed to call (empty: no client certificates asked, everyone).
    pub authorized_roles: Arc<Vec<String>>,
}

impl GrpcTls {
    /// From the bookie's configuration; none when TLS is off. Files are read now.
    pub fn from_config(c: &BookieConfig) -> Result<Option<Self>> {
        if c.tls_certificate_file.is_empty() {
            return Ok(None);
        }
        let read = |f: &str| {
            std::fs::read(f).map_err(|e| BookieError::Config(format!("reading {f}: {e}")))
        };
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
            read(&c.tls_certificate_file)?,
            read(&c.tls_key_file)?,
        ));
        let mut roles = Vec::new();
        if !c.tls_trust_certs_file.is_empty() {
            config = config
                .client_ca_root(Certificate::from_pem(read(&c.tls_trust_certs_file)?))
                .client_auth_optional(false);
            roles = c
                .authorized_roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect();
        }
        Ok(Some(GrpcTls {
            config,
            authorized_roles: Arc::new(roles),
        }))
    }
}

/// The roles a certificate carries: its subject's CNs and OUs.
pub fn roles_of(cert: &[u8]) -> Vec<String> {
    let Ok((_, c)) = x509_parser::parse_x509_certificate(cert) else {
        return Vec::new();
    };
    let subject = c.subject();
    subject
        .iter_common_name()
        .chain(subject.iter_organizational_unit())
        .filter_map(|a| a.as_str().ok().map(str::to_owned))
        .collect()
}

/// The interceptor: a caller whose certificate names no authorized role is refused
/// (`PERMISSION_DENIED`) before any handler runs.
pub fn authorize(
    roles: Arc<Vec<String>>,
) -> impl Fn(tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status> + Clone {
    move |req: tonic::Request<()>| {
        if roles.is_empty() {
            return Ok(req);
        }
        let allowed = req.peer_certs().and_then(|certs| {
            certs
                .first()
                .map(|c| roles_of(c).iter().any(|r| roles.contains(r)))
        });
        if allowed == Some(true) {
            Ok(req)
        } else {
            let peer = req.remote_addr();
            tracing::warn!(
                ?peer,
                "bookie call refused: no authorized client certificate"
            );
            metrics::counter!("bookie_authorization_failures_total").increment(1);
            Err(tonic::Status::permission_denied(
                "the caller's certificate names no authorized role",
            ))
        }
    }
}
