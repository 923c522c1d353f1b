//! Authentication, as Pulsar's brokers do it (`../shared/reference/security.md` §2): each
//! client proves who it is with one of the configured providers — `tls` (its certificate's
//! common name), `token` (a JWT) or `basic` (a user and password from an htpasswd file) — on
//! the binary protocol's CONNECT and on every
//! HTTP request; the role it gets is its identity. A client of an unknown method, or with no
//! credentials, gets `anonymousUserRole` when one is set, else it is refused. Failed attempts
//! are WARN lines with the peer and the reason, and counted; no credential ever reaches a log.
//!
//! What a role may do is [`authorization`]'s business (with authentication on and
//! authorization off, any authenticated role may do anything, as in Pulsar).
//!
//! Credentials that expire (tokens with `exp`) are challenged on their connection when they
//! do (PIP-55, [`crate::protocol::commands::connect::check_expiry`]). Not here yet: public-key
//! tokens.

pub mod authorization;
pub mod basic;
pub mod binary;
pub mod http;
pub mod key;
pub mod token;

use std::fmt;

/// A client's identity, as a provider established it.
pub type Role = String;

/// Why a client was not let in (said to the client as Pulsar says it, never with the
/// credential).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The credential did not verify (bad signature, expired, unknown user, wrong password).
    #[error("{0}")]
    Invalid(String),
    /// No credential and no anonymous role.
    #[error("Authentication required")]
    Required,
    /// The configuration is unusable (a key that does not read).
    #[error("{0}")]
    Config(String),
}

/// A secret setting (a key, or where it is): never printed.
#[derive(Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"***\"")
        }
    }
}

/// What authentication needs from the broker's configuration.
#[derive(Debug, Clone, Default)]
pub struct AuthSettings {
    /// Pulsar's `authenticationEnabled`.
    pub enabled: bool,
    /// Provider method names (`token`, `basic`).
    pub providers: Vec<String>,
    /// Pulsar's `anonymousUserRole` (empty: anonymous clients are refused).
    pub anonymous_role: String,
    /// Pulsar's `tokenSecretKey`: `data:;base64,…`, `file:///…`, a path, or base64.
    pub token_secret_key: Secret,
    /// Pulsar's `tokenAuthClaim` (default `sub`).
    pub token_auth_claim: String,
    /// Pulsar's `tokenAudienceClaim` and `tokenAudience` (both or neither).
    pub token_audience: Option<(String, String)>,
    /// Pulsar's `basicAuthConf`: the htpasswd file, in the same forms as the token key.
    pub basic_auth_conf: Secret,
}

/// The configured providers.
#[derive(Default)]
pub struct Authenticator {
    enabled: bool,
    tls: bool,
    token: Option<token::TokenProvider>,
    basic: Option<basic::BasicProvider>,
    anonymous: Option<Role>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("enabled", &self.enabled)
            .field("tls", &self.tls)
            .field("token", &self.token.is_some())
            .field("basic", &self.basic.is_some())
            .field("anonymous", &self.anonymous)
            .finish()
    }
}

impl Authenticator {
    /// Authentication off: everyone is let in, with no role.
    pub fn disabled() -> Self {
        Authenticator::default()
    }

    /// The providers `settings` name, with their keys read now (an unreadable key is an
    /// error at start, not at the first client).
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthError> {
        if !settings.enabled {
            return Ok(Self::disabled());
        }
        let mut a = Authenticator {
            enabled: true,
            anonymous: Some(settings.anonymous_role.clone()).filter(|r| !r.is_empty()),
            ..Default::default()
        };
        for p in &settings.providers {
            match p.as_str() {
                "tls" => a.tls = true,
                "token" => a.token = Some(token::TokenProvider::new(settings)?),
                "basic" => a.basic = Some(basic::BasicProvider::new(&settings.basic_auth_conf)?),
                other => {
                    return Err(AuthError::Config(format!(
                        "authentication provider {other:?} is not supported (tls, token, basic)"
                    )));
                }
            }
        }
        if !a.tls && a.token.is_none() && a.basic.is_none() {
            return Err(AuthError::Config(
                "authentication is enabled but no provider is configured".into(),
            ));
        }
        Ok(a)
    }

    /// Whether clients must authenticate.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A binary CONNECT: `method` (`auth_method_name`), `data` (`auth_data`) and the client's
    /// certificate, when it connected over TLS with one. `Ok(None)` when authentication is off.
    pub fn connect(
        &self,
        method: &str,
        data: &[u8],
        cert: Option<&[u8]>,
    ) -> Result<Option<Role>, AuthError> {
        if !self.enabled {
            return Ok(None);
        }
        let result = match (method, &self.token, &self.basic) {
            ("tls", _, _) if self.tls => by_certificate(cert),
            ("token", Some(t), _) => t.authenticate(data),
            ("basic", _, Some(b)) => b.authenticate(data),
            // An unknown method, `none` or none at all: the anonymous role, if there is one.
            _ => self.anonymous.clone().ok_or(AuthError::Required),
        };
        count(&result, method);
        result.map(Some)
    }

    /// When credentials that [`Authenticator::connect`] accepted stop being valid (seconds
    /// since the epoch): a token's `exp`; never for certificates, passwords and tokens
    /// without `exp`. The connection is challenged then (PIP-55).
    pub fn expires_at(&self, method: &str, data: &[u8]) -> Option<f64> {
        if !self.enabled || method != "token" || self.token.is_none() {
            return None;
        }
        token::expiry(data)
    }

    /// An HTTP request: `method_header` (`X-Pulsar-Auth-Method-Name`) and `authorization`
    /// (`Authorization`). With no header naming a method, each provider is tried, then the
    /// anonymous role. `Ok(None)` when authentication is off.
    pub fn http(
        &self,
        method_header: Option<&str>,
        authorization: Option<&str>,
        cert: Option<&[u8]>,
    ) -> Result<Option<Role>, AuthError> {
        if !self.enabled {
            return Ok(None);
        }
        let bearer = authorization.and_then(|a| a.strip_prefix("Bearer "));
        let basic = authorization.and_then(|a| {
            let (scheme, rest) = a.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        });
        let by_token = |t: &token::TokenProvider| match bearer {
            Some(jwt) => t.authenticate(jwt.trim().as_bytes()),
            None => Err(AuthError::Required),
        };
        let by_basic = |b: &basic::BasicProvider| match basic.map(key::decode_base64) {
            Some(Ok(pair)) => b.authenticate(&pair),
            Some(Err(_)) => Err(AuthError::Invalid("malformed Basic credentials".into())),
            None => Err(AuthError::Required),
        };
        let result = match method_header {
            Some("tls") if self.tls => by_certificate(cert),
            Some("token") => self
                .token
                .as_ref()
                .map_or(Err(AuthError::Required), by_token),
            Some("basic") => self
                .basic
                .as_ref()
                .map_or(Err(AuthError::Required), by_basic),
            Some(_) => Err(AuthError::Required),
            None => {
                let mut first_error = None;
                let mut found = None;
                if self.tls && cert.is_some() {
                    match by_certificate(cert) {
                        Ok(r) => found = Some(r),
                        Err(e) => first_error = Some(e),
                    }
                }
                if found.is_none()
                    && let Some(t) = &self.token
                    && bearer.is_some()
                {
                    match by_token(t) {
                        Ok(r) => found = Some(r),
                        Err(e) => first_error = first_error.or(Some(e)),
                    }
                }
                if found.is_none()
                    && let Some(b) = &self.basic
                    && basic.is_some()
                {
                    match by_basic(b) {
                        Ok(r) => found = Some(r),
                        Err(e) => first_error = first_error.or(Some(e)),
                    }
                }
                // As Pulsar's HTTP filter: the anonymous role when no provider accepted.
                match (found, &self.anonymous) {
                    (Some(r), _) => Ok(r),
                    (None, Some(anon)) => Ok(anon.clone()),
                    (None, None) => Err(first_error.unwrap_or(AuthError::Required)),
                }
            }
        };
        count(&result, method_header.unwrap_or("http"));
        result.map(Some)
    }
}

/// The `tls` provider: the first common name of the client certificate's subject (Pulsar's
/// AuthenticationProviderTls). The certificate itself was verified in the handshake.
fn by_certificate(cert: Option<&[u8]>) -> Result<Role, AuthError> {
    let cert = cert.ok_or_else(|| AuthError::Invalid("no client certificate".into()))?;
    crate::tls::common_name(cert)
        .filter(|cn| !cn.is_empty())
        .ok_or_else(|| AuthError::Invalid("the client certificate has no common name".into()))
}

fn count(result: &Result<Role, AuthError>, method: &str) {
    let method = match method {
        "tls" | "token" | "basic" => method.to_owned(),
        _ => "other".to_owned(),
    };
    match result {
        Ok(_) => metrics::counter!("pulsar_authentication_success_total", "auth_method" => method)
            .increment(1),
        Err(_) => {
            metrics::counter!("pulsar_authentication_failures_total", "auth_method" => method)
                .increment(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's vector: key bytes 0..31, a token for `token-principal`.
    pub(crate) const KEY: &str = "data:;base64,AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    pub(crate) const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0b2tlbi1wcmluY2lwYWwifQ.41DwdfALedR7gRdB5FUikoIlpD9Mnf-L52VdRvKEuXc";

    fn settings(anonymous: &str) -> AuthSettings {
        AuthSettings {
            enabled: true,
            providers: vec!["token".into(), "basic".into()],
            anonymous_role: anonymous.into(),
            token_secret_key: Secret(KEY.into()),
            token_auth_claim: "sub".into(),
            token_audience: None,
            basic_auth_conf: Secret(format!(
                "data:;base64,{}",
                key::encode_base64(
                    b"admin:$apr1$FG4AO6aX$KGYPuMoLUou3i6vUkPUUf.\nsuperUser:mQQQIsyvvKRtU\n"
                )
            )),
        }
    }

    #[test]
    fn binary_connect_by_method() {
        let a = Authenticator::new(&settings("")).unwrap();
        assert_eq!(
            a.connect("token", TOKEN.as_bytes(), None)
                .unwrap()
                .as_deref(),
            Some("token-principal")
        );
        assert!(matches!(
            a.connect("token", b"garbage", None),
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(
            a.connect("basic", b"admin:123456", None)
                .unwrap()
                .as_deref(),
            Some("admin")
        );
        assert_eq!(
            a.connect("basic", b"superUser:supepass", None)
                .unwrap()
                .as_deref(),
            Some("superUser")
        );
        assert!(matches!(
            a.connect("basic", b"admin:wrong", None),
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(a.connect("none", b"", None), Err(AuthError::Required));
        let anon = Authenticator::new(&settings("anonymous")).unwrap();
        assert_eq!(
            anon.connect("", b"", None).unwrap().as_deref(),
            Some("anonymous")
        );
        // A known method with bad data is refused even with an anonymous role (Pulsar's rule).
        assert!(anon.connect("token", b"x.y.z", None).is_err());
        assert_eq!(
            Authenticator::disabled().connect("token", b"whatever", None),
            Ok(None)
        );
    }

    #[test]
    fn http_headers() {
        let a = Authenticator::new(&settings("")).unwrap();
        let bearer = format!("Bearer {TOKEN}");
        assert_eq!(
            a.http(None, Some(&bearer), None).unwrap().as_deref(),
            Some("token-principal")
        );
        let basic = format!("basic {}", key::encode_base64(b"admin:123456"));
        assert_eq!(
            a.http(None, Some(&basic), None).unwrap().as_deref(),
            Some("admin")
        );
        assert_eq!(
            a.http(Some("basic"), Some(&basic), None)
                .unwrap()
                .as_deref(),
            Some("admin")
        );
        assert_eq!(
            a.http(Some("token"), Some(&basic), None),
            Err(AuthError::Required)
        );
        assert_eq!(a.http(None, None, None), Err(AuthError::Required));
        assert!(a.http(None, Some("Bearer nope"), None).is_err());
        assert!(a.http(None, Some("Basic !!!"), None).is_err());
        let anon = Authenticator::new(&settings("anonymous")).unwrap();
        assert_eq!(
            anon.http(None, Some("Bearer nope"), None)
                .unwrap()
                .as_deref(),
            Some("anonymous")
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = settings("");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("AAECAwQF") && !shown.contains("apr1"),
            "{shown}"
        );
    }
}
