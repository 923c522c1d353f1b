//! The client-certificate verifier of the TLS listeners. rustls' stock verifier (webpki)
//! accepts only X.509 v3 certificates, but Pulsar's own test client certificate — and many an
//! operator's, made with `openssl x509 -req` — is v1. This one parses with `x509-parser`
//! (every version), checks validity dates and each signature up to a certificate of the
//! trust file, and verifies the handshake signature (RSA PKCS#1 and PSS, ECDSA, Ed25519)
//! with the certificate's public key.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

use super::TlsError;

/// Longest chain from a client certificate to a trust anchor.
const MAX_DEPTH: usize = 8;

/// Verifies client certificates against the CA certificates of a trust file.
#[derive(Debug)]
pub struct ClientVerifier {
    roots: Vec<CertificateDer<'static>>,
    subjects: Vec<DistinguishedName>,
    mandatory: bool,
    insecure: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientVerifier {
    /// `roots`: the trust anchors; `mandatory`: a client must present a certificate;
    /// `insecure`: one that does not verify is accepted anyway (Pulsar's
    /// `tlsAllowInsecureConnection`).
    pub fn new(
        roots: Vec<CertificateDer<'static>>,
        mandatory: bool,
        insecure: bool,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> Result<Self, TlsError> {
        let mut subjects = Vec::new();
        for r in &roots {
            let (_, c) = X509Certificate::from_der(r)
                .map_err(|e| TlsError(format!("a trusted certificate does not parse: {e}")))?;
            subjects.push(DistinguishedName::from(c.subject().as_raw().to_vec()));
        }
        Ok(ClientVerifier {
            roots,
            subjects,
            mandatory,
            insecure,
            algorithms,
        })
    }

    /// The chain check, apart from rustls for unit tests.
    pub fn check_chain(
        &self,
        end_entity: &[u8],
        intermediates: &[CertificateDer<'_>],
        now: i64,
    ) -> Result<(), CertificateError> {
        fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertificateError> {
            X509Certificate::from_der(der)
                .map(|(_, c)| c)
                .map_err(|_| CertificateError::BadEncoding)
        }
        let in_date = |c: &X509Certificate<'_>| {
            let v = c.validity();
            if now < v.not_before.timestamp() {
                Err(CertificateError::NotValidYet)
            } else if now > v.not_after.timestamp() {
                Err(CertificateError::Expired)
            } else {
                Ok(())
            }
        };
        let roots: Vec<X509Certificate<'_>> =
            self.roots.iter().filter_map(|r| parse(r).ok()).collect();
        let others: Vec<X509Certificate<'_>> =
            intermediates.iter().filter_map(|c| parse(c).ok()).collect();
        let mut current = parse(end_entity)?;
        in_date(&current)?;
        for _ in 0..MAX_DEPTH {
            let signed_by = |issuer: &X509Certificate<'_>| {
                issuer.subject().as_raw() == current.issuer().as_raw()
                    && current.verify_signature(Some(issuer.public_key())).is_ok()
            };
            if let Some(root) = roots.iter().find(|r| signed_by(r)) {
                return in_date(root);
            }
            // A trust anchor presented as the client's own certificate.
            if roots.iter().any(|r| r.as_raw() == current.as_raw()) {
                return Ok(());
            }
            let Some(next) = others.iter().find(|c| {
                signed_by(c)
                    // A v3 intermediate must be a CA; v1 has no extensions to say so.
                    && (c.version() != X509Version::V3
                        || c.basic_constraints().ok().flatten().is_some_and(|b| b.value.ca))
            }) else {
                return Err(CertificateError::UnknownIssuer);
            };
            in_date(next)?;
            current = next.clone();
        }
        Err(CertificateError::UnknownIssuer)
    }

    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let (_, c) = X509Certificate::from_der(cert)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let key = &c.public_key().subject_public_key.data;
        let algorithms = self
            .algorithms
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or(Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        for alg in algorithms {
            if alg.verify_signature(key, message, dss.signature()).is_ok() {
                return Ok(HandshakeSignatureValid::assertion());
            }
        }
        Err(Error::InvalidCertificate(CertificateError::BadSignature))
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match self.check_chain(end_entity, intermediates, now.as_secs() as i64) {
            Ok(()) => Ok(ClientCertVerified::assertion()),
            Err(e) if self.insecure => {
                tracing::debug!(error = ?e, "untrusted client certificate accepted (tlsAllowInsecureConnection)");
                Ok(ClientCertVerified::assertion())
            }
            Err(e) => Err(Error::InvalidCertificate(e)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        use SignatureScheme as S;
        // TLS 1.3 allows no PKCS#1 v1.5 or SHA-1 handshake signature (RFC 8446 §4.2.3).
        let allowed = matches!(
            dss.scheme,
            S::ECDSA_NISTP256_SHA256
                | S::ECDSA_NISTP384_SHA384
                | S::ECDSA_NISTP521_SHA512
                | S::RSA_PSS_SHA256
                | S::RSA_PSS_SHA384
                | S::RSA_PSS_SHA512
                | S::ED25519
                | S::ED448
        );
        if !allowed {
            return Err(Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ));
        }
        self.verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    fn pem(path: &str) -> CertificateDer<'static> {
        let p = format!(
            "{}/../integration-tests/tests/certs/{path}",
            env!("CARGO_MANIFEST_DIR")
        );
        CertificateDer::from_pem_file(&p).unwrap()
    }

    fn verifier(roots: Vec<CertificateDer<'static>>) -> ClientVerifier {
        ClientVerifier::new(
            roots,
            false,
            false,
            super::super::provider().signature_verification_algorithms,
        )
        .unwrap()
    }

    #[test]
    fn a_v1_client_certificate_chains_to_its_ca() {
        let v = verifier(vec![pem("ca-cert.pem")]);
        let now = 1_800_000_000;
        v.check_chain(&pem("client-v1-cert.pem"), &[], now).unwrap();
        assert_eq!(
            super::super::common_name(&pem("client-v1-cert.pem")).as_deref(),
            Some("admin-v1")
        );
        // Before or after its dates.
        assert_eq!(
            v.check_chain(&pem("client-v1-cert.pem"), &[], 1_000_000_000),
            Err(CertificateError::NotValidYet)
        );
        assert_eq!(
            v.check_chain(&pem("client-v1-cert.pem"), &[], 4_000_000_000),
            Err(CertificateError::Expired)
        );
        // Against another CA.
        let other = verifier(vec![pem("other-ca-cert.pem")]);
        assert_eq!(
            other.check_chain(&pem("client-v1-cert.pem"), &[], now),
            Err(CertificateError::UnknownIssuer)
        );
        // Garbage.
        assert_eq!(
            v.check_chain(b"\x30\x03junk", &[], now),
            Err(CertificateError::BadEncoding)
        );
    }
}
