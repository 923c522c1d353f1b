//! Client credentials and TLS for `magnetar admin`, as Pulsar's tools take them: the flags
//! `--auth-plugin`/`--auth-params` (or the `--token` shortcut), `--tls-trust-cert-path`,
//! `--tls-allow-insecure`, and Pulsar's `client.conf` (`webServiceUrl`, `authPlugin`,
//! `authParams`, `tlsTrustCertsFilePath`, `tlsAllowInsecureConnection`); flags win over the
//! file. Credentials go into headers only, never into a message.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The flags.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Pulsar's client.conf to read settings from.
    #[arg(long, env = "PULSAR_CLIENT_CONF")]
    client_conf: Option<PathBuf>,
    /// `token`, `basic`, `tls` or Pulsar's class names (`…AuthenticationToken`, …).
    #[arg(long)]
    auth_plugin: Option<String>,
    /// token: `token:<jwt>` or `file:///path`; basic: `{"userId":"…","password":"…"}`;
    /// tls: `tlsCertFile:…,tlsKeyFile:…`.
    #[arg(long)]
    auth_params: Option<String>,
    /// A token (the same as `--auth-plugin token --auth-params token:<jwt>`).
    #[arg(long, env = "MAGNETAR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificates (PEM) the broker's HTTPS certificate must chain to.
    #[arg(long)]
    tls_trust_cert_path: Option<PathBuf>,
    /// Accept any broker certificate (testing only).
    #[arg(long)]
    tls_allow_insecure: bool,
}

/// What the flags and file resolve to.
pub struct Client {
    /// `webServiceUrl` of client.conf.
    pub web_service_url: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// TLS for https:// URLs.
    pub tls: ureq::tls::TlsConfig,
}

/// `key=value` lines (`#` comments), as Java properties.
fn properties(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| l.split_once(['=', ':']))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// `a:b,c:d` or a JSON object, as Pulsar's auth plugins accept their parameters.
fn params(p: &str) -> Vec<(String, String)> {
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(p) {
        return m
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect();
    }
    p.split(',')
        .filter_map(|kv| kv.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

impl ClientArgs {
    /// Reads client.conf (if named) and applies the flags over it.
    pub fn resolve(&self) -> anyhow::Result<Client> {
        let conf = match &self.client_conf {
            Some(p) => properties(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            ),
            None => Vec::new(),
        };
        let get = |k: &str| {
            conf.iter()
                .find(|(key, v)| key == k && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        let (plugin, params_text) = match &self.token {
            Some(t) => (Some("token".to_owned()), Some(format!("token:{t}"))),
            None => (
                self.auth_plugin.clone().or_else(|| get("authPlugin")),
                self.auth_params.clone().or_else(|| get("authParams")),
            ),
        };
        let trust = self
            .tls_trust_cert_path
            .clone()
            .or_else(|| get("tlsTrustCertsFilePath").map(PathBuf::from));
        let insecure = self.tls_allow_insecure
            || get("tlsAllowInsecureConnection").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut tls = ureq::tls::TlsConfig::builder().disable_verification(insecure);
        if let Some(path) = &trust {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
                    _ => None,
                })
                .collect::<Vec<_>>();
            if certs.is_empty() {
                bail!("{}: no PEM certificate in it", path.display());
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let mut authorization = None;
        if let Some(plugin) = plugin {
            let p = params(params_text.as_deref().unwrap_or_default());
            let find = |k: &str| p.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
            match plugin.rsplit('.').next().unwrap_or(&plugin) {
                "token" | "AuthenticationToken" => {
                    let raw = params_text.unwrap_or_default();
                    let token = if let Some(t) = raw.strip_prefix("token:") {
                        t.trim().to_owned()
                    } else if let Some(path) = raw.strip_prefix("file://") {
                        std::fs::read_to_string(path)
                            .with_context(|| format!("reading the token file {path}"))?
                            .trim()
                            .to_owned()
                    } else {
                        raw.trim().to_owned()
                    };
                    if token.is_empty() {
                        bail!("--auth-params: no token (token:<jwt> or file:///path)");
                    }
                    authorization = Some(format!("Bearer {token}"));
                }
                "basic" | "AuthenticationBasic" => {
                    let (Some(user), Some(password)) = (find("userId"), find("password")) else {
                        bail!("--auth-params: basic needs userId and password");
                    };
                    let pair =
                        broker::auth::key::encode_base64(format!("{user}:{password}").as_bytes());
                    authorization = Some(format!("Basic {pair}"));
                }
                "tls" | "AuthenticationTls" => {
                    let (Some(cert), Some(key)) = (find("tlsCertFile"), find("tlsKeyFile")) else {
                        bail!("--auth-params: tls needs tlsCertFile and tlsKeyFile");
                    };
                    let read = |f: &str| std::fs::read(f).with_context(|| format!("reading {f}"));
                    let (cert_pem, key_pem) = (read(&cert)?, read(&key)?);
                    let chain = ureq::tls::parse_pem(&cert_pem)
                        .filter_map(|i| match i {
                            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c.to_owned()),
                            _ => None,
                        })
                        .collect::<Vec<_>>();
                    let key = ureq::tls::PrivateKey::from_pem(&key_pem)
                        .map_err(|e| anyhow::anyhow!("{key}: {e}"))?
                        .to_owned();
                    tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)));
                }
                other => bail!("--auth-plugin {other:?}: not supported (token, basic, tls)"),
            }
        }
        Ok(Client {
            web_service_url: get("webServiceUrl"),
            authorization,
            tls: tls.build(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_in_both_forms() {
        assert_eq!(
            params(r#"{"userId":"admin","password":"a:b"}"#),
            [
                ("password".into(), "a:b".into()),
                ("userId".into(), "admin".into())
            ]
        );
        assert_eq!(
            params("tlsCertFile:/c.pem,tlsKeyFile:/k.pem"),
            [
                ("tlsCertFile".into(), "/c.pem".into()),
                ("tlsKeyFile".into(), "/k.pem".into())
            ]
        );
        assert_eq!(
            properties(
                "# c\nwebServiceUrl=https://x:8443/\nauthPlugin = a.b.AuthenticationToken\n"
            ),
            [
                ("webServiceUrl".into(), "https://x:8443/".into()),
                ("authPlugin".into(), "a.b.AuthenticationToken".into())
            ]
        );
    }
}
