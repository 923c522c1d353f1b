//! Pulsar's own broker configuration files (`broker.conf`, `standalone.conf`: Java properties,
//! `key=value`) read as Magnetar settings, so an operator's existing file starts a Magnetar
//! broker (`magnetar standalone|broker --pulsar-conf FILE`).
//!
//! Every key Magnetar supports becomes the setting of the same meaning in `broker.toml`
//! (table below, [`MAPPED`]); keys of features Magnetar does not have yet are refused when
//! they would turn the feature on (a file asking for TLS or authorization must never start
//! a broker without them); every other key is listed once, in a warning, as ignored. A line
//! that is not a property, or a value that does not fit its key, is an error naming the line.
//! Paths stay as written: like Pulsar's, relative ones resolve against the working directory.

use std::collections::BTreeMap;
use std::path::Path;

/// One key of Pulsar's, and how its value becomes Magnetar settings.
struct Mapping {
    pulsar: &'static str,
    magnetar: &'static str,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    /// Copied as is (strings).
    Same,
    /// `true` or `false`.
    Bool,
    /// A whole number.
    Count,
    /// An integer count of seconds, minutes or megabytes, to a duration or size.
    Seconds,
    Minutes,
    Megabytes,
}

/// The keys Magnetar maps, with their Magnetar setting.
const MAPPED: &[Mapping] = &[
    m("advertisedAddress", "advertised_address", Kind::Same),
    m("clusterName", "meta.cluster", Kind::Same),
    m(
        "keepAliveIntervalSeconds",
        "keepalive_interval",
        Kind::Seconds,
    ),
    m(
        "allowAutoTopicCreation",
        "allow_auto_topic_creation",
        Kind::Bool,
    ),
    m(
        "brokerDeduplicationEnabled",
        "deduplication_enabled",
        Kind::Bool,
    ),
    m("ttlDurationDefaultInSeconds", "message_ttl", Kind::Seconds),
    m(
        "messageExpiryCheckIntervalInMinutes",
        "message_expiry_check_interval",
        Kind::Minutes,
    ),
    m(
        "subscriptionPatternMaxLength",
        "subscription_pattern_max_length",
        Kind::Count,
    ),
    m("brokerMaxConnections", "max_connections", Kind::Count),
    m(
        "brokerMaxConnectionsPerIp",
        "max_connections_per_ip",
        Kind::Count,
    ),
    m(
        "maxPendingPublishRequestsPerConnection",
        "max_pending_publish_requests_per_connection",
        Kind::Count,
    ),
    m(
        "maxMessagePublishBufferSizeInMB",
        "max_message_publish_buffer",
        Kind::Megabytes,
    ),
    m(
        "maxConcurrentLookupRequest",
        "max_concurrent_lookup_requests",
        Kind::Count,
    ),
    m(
        "maxConcurrentTopicLoadRequest",
        "max_concurrent_topic_loads",
        Kind::Count,
    ),
    m(
        "maxSubscriptionsPerTopic",
        "max_subscriptions_per_topic",
        Kind::Count,
    ),
    m(
        "maxTopicsPerNamespace",
        "max_topics_per_namespace",
        Kind::Count,
    ),
    m(
        "brokerDeleteInactiveTopicsEnabled",
        "delete_inactive_topics",
        Kind::Bool,
    ),
    m(
        "brokerDeleteInactiveTopicsMaxInactiveDurationSeconds",
        "inactive_topic_max_age",
        Kind::Seconds,
    ),
    m(
        "brokerDeleteInactiveTopicsFrequencySeconds",
        "inactive_topic_check_interval",
        Kind::Seconds,
    ),
    m(
        "managedLedgerDefaultEnsembleSize",
        "managed_ledger.ensemble",
        Kind::Count,
    ),
    m(
        "managedLedgerDefaultWriteQuorum",
        "managed_ledger.write_quorum",
        Kind::Count,
    ),
    m(
        "managedLedgerDefaultAckQuorum",
        "managed_ledger.ack_quorum",
        Kind::Count,
    ),
    m(
        "managedLedgerMaxEntriesPerLedger",
        "managed_ledger.max_entries_per_ledger",
        Kind::Count,
    ),
    m(
        "managedLedgerMaxLedgerRolloverTimeMinutes",
        "managed_ledger.max_ledger_age",
        Kind::Minutes,
    ),
    m(
        "managedLedgerCacheSizeMB",
        "managed_ledger.cache_size",
        Kind::Megabytes,
    ),
    m(
        "authenticationEnabled",
        "authentication_enabled",
        Kind::Bool,
    ),
    m("anonymousUserRole", "anonymous_user_role", Kind::Same),
    m("tokenSecretKey", "token_secret_key", Kind::Same),
    m("tokenAuthClaim", "token_auth_claim", Kind::Same),
    m("tokenAudienceClaim", "token_audience_claim", Kind::Same),
    m("tokenAudience", "token_audience", Kind::Same),
    m("basicAuthConf", "basic_auth_conf", Kind::Same),
    m(
        "authenticationRefreshCheckSeconds",
        "authentication_refresh_check_interval",
        Kind::Seconds,
    ),
    m("authorizationEnabled", "authorization_enabled", Kind::Bool),
    m("superUserRoles", "super_user_roles", Kind::Same),
    m("proxyRoles", "proxy_roles", Kind::Same),
    m("tlsCertificateFilePath", "tls_certificate_file", Kind::Same),
    m("tlsKeyFilePath", "tls_key_file", Kind::Same),
    m("tlsTrustCertsFilePath", "tls_trust_certs_file", Kind::Same),
    m(
        "tlsRequireTrustedClientCertOnConnect",
        "tls_require_trusted_client_cert_on_connect",
        Kind::Bool,
    ),
    m(
        "tlsAllowInsecureConnection",
        "tls_allow_insecure_connection",
        Kind::Bool,
    ),
    m(
        "tlsCertRefreshCheckDurationSec",
        "tls_cert_refresh_check_interval",
        Kind::Seconds,
    ),
    m("tlsProtocols", "tls_protocols", Kind::Same),
    m(
        "bookkeeperTLSTrustCertsFilePath",
        "bookkeeper_tls_trust_certs_file",
        Kind::Same,
    ),
    m(
        "bookkeeperTLSCertificateFilePath",
        "bookkeeper_tls_certificate_file",
        Kind::Same,
    ),
    m(
        "bookkeeperTLSKeyFilePath",
        "bookkeeper_tls_key_file",
        Kind::Same,
    ),
];

const fn m(pulsar: &'static str, magnetar: &'static str, kind: Kind) -> Mapping {
    Mapping {
        pulsar,
        magnetar,
        kind,
    }
}

/// Keys of security features Magnetar does not have yet, and the value that leaves them off.
/// A file that sets one otherwise is refused: starting without the protection it asks for
/// would expose what its operator meant to protect.
const NOT_YET: &[(&str, &str)] = &[
    ("tokenPublicKey", ""),
    ("tlsEnabledWithKeyStore", "false"),
    ("authenticateOriginalAuthData", "false"),
];

/// What a Pulsar file sets: Magnetar settings (dotted key, value as typed) and the keys
/// ignored.
#[derive(Debug, Default, PartialEq)]
pub struct PulsarConf {
    /// Settings for `common::config::load_layers`.
    pub settings: Vec<(String, String)>,
    /// Keys Magnetar does not use, in file order.
    pub ignored: Vec<String>,
}

/// A problem with the file, naming its line.
#[derive(Debug, thiserror::Error)]
pub enum PulsarConfError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line or value that does not fit.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// Reads `path`.
pub fn read(path: &Path) -> Result<PulsarConf, PulsarConfError> {
    let text = std::fs::read_to_string(path).map_err(|source| PulsarConfError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses the text of a Pulsar properties file (`name` for messages).
pub fn parse(text: &str, name: &str) -> Result<PulsarConf, PulsarConfError> {
    let err = |line: usize, message: String| PulsarConfError::Line {
        path: name.to_owned(),
        line,
        message,
    };
    // Java properties: `#`/`!` comments, `key=value` or `key: value` (or `key value`),
    // trailing `\` continues a line. Later lines win, as in Java.
    let mut props: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let mut order = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let number = i + 1;
        let mut line = raw.trim_start().to_owned();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        while line.ends_with('\\') {
            line.pop();
            match lines.next() {
                Some((_, more)) => line.push_str(more.trim_start()),
                None => break,
            }
        }
        let split = line
            .find(['=', ':'])
            .or_else(|| line.find(char::is_whitespace));
        let (key, value) = match split {
            Some(at) => (line[..at].trim(), line[at + 1..].trim()),
            None => (line.trim(), ""),
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(err(number, format!("not a `key=value` line: {raw:?}")));
        }
        if !props.contains_key(key) {
            order.push(key.to_owned());
        }
        props.insert(key.to_owned(), (number, value.to_owned()));
    }
    let mut conf = PulsarConf::default();
    let get = |k: &str| props.get(k).map(|(l, v)| (*l, v.as_str()));
    // Listen addresses: bindAddress with each port.
    let host =
        get("bindAddress").map_or("0.0.0.0", |(_, v)| if v.is_empty() { "0.0.0.0" } else { v });
    for (port_key, setting) in [
        ("brokerServicePort", "bind"),
        ("webServicePort", "http_bind"),
        ("brokerServicePortTls", "tls_bind"),
        ("webServicePortTls", "https_bind"),
    ] {
        if let Some((line, v)) = get(port_key).filter(|(_, v)| !v.is_empty()) {
            let port: u16 = v
                .parse()
                .map_err(|_| err(line, format!("{port_key}: {v:?} is not a port number")))?;
            conf.settings
                .push((setting.to_owned(), format!("{host}:{port}")));
        }
    }
    for (key, off) in NOT_YET {
        if let Some((line, v)) = get(key)
            && !v.is_empty()
            && !v.eq_ignore_ascii_case(off)
        {
            return Err(err(
                line,
                format!(
                    "{key}={v}: not supported by this Magnetar yet; refusing to start without it"
                ),
            ));
        }
    }
    for mapping in MAPPED {
        let Some((line, v)) = get(mapping.pulsar) else {
            continue;
        };
        if v.is_empty() {
            continue;
        }
        let number = || {
            v.parse::<u64>().map_err(|_| {
                err(
                    line,
                    format!("{}: {v:?} is not a whole number", mapping.pulsar),
                )
            })
        };
        let value = match mapping.kind {
            Kind::Same => v.to_owned(),
            Kind::Bool => match v.to_ascii_lowercase().as_str() {
                b @ ("true" | "false") => b.to_owned(),
                _ => {
                    return Err(err(
                        line,
                        format!("{}: {v:?} is not true or false", mapping.pulsar),
                    ));
                }
            },
            Kind::Count => number()?.to_string(),
            Kind::Seconds => format!("{}s", number()?),
            Kind::Minutes => format!("{}m", number()?),
            Kind::Megabytes => format!("{}MiB", number()?),
        };
        conf.settings.push((mapping.magnetar.to_owned(), value));
    }
    // Providers are Java class names in Pulsar's files; Magnetar names them by method.
    if let Some((line, v)) = get("authenticationProviders").filter(|(_, v)| !v.is_empty()) {
        let mut methods = Vec::new();
        for class in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let method = match class.rsplit('.').next().unwrap_or(class) {
                "AuthenticationProviderTls" => "tls",
                "AuthenticationProviderToken" => "token",
                "AuthenticationProviderBasic" => "basic",
                other => {
                    return Err(err(
                        line,
                        format!(
                            "authenticationProviders: {other} is not supported by this Magnetar yet (AuthenticationProviderTls, AuthenticationProviderToken, AuthenticationProviderBasic)"
                        ),
                    ));
                }
            };
            methods.push(method);
        }
        conf.settings
            .push(("authentication_providers".into(), methods.join(",")));
    }
    let used = |k: &str| {
        k == "authenticationProviders"
            || MAPPED.iter().any(|m| m.pulsar == k)
            || NOT_YET.iter().any(|(n, _)| *n == k)
            || matches!(
                k,
                "bindAddress"
                    | "brokerServicePort"
                    | "webServicePort"
                    | "brokerServicePortTls"
                    | "webServicePortTls"
                    // Deprecated in Pulsar: the TLS ports turn TLS on.
                    | "tlsEnabled"
            )
    };
    conf.ignored = order.into_iter().filter(|k| !used(k)).collect();
    Ok(conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_magnetar_settings_and_the_rest_is_listed() {
        let text = "# a comment\n! another\nbrokerServicePort=6650\nwebServicePort = 8080\nbindAddress=127.0.0.1\n\
            clusterName: standalone\nmanagedLedgerDefaultEnsembleSize=2\nmessageExpiryCheckIntervalInMinutes=5\n\
            brokerMaxConnectionsPerIp=10\nmaxMessagePublishBufferSizeInMB=64\nzookeeperServers=\n\
            loadBalancerEnabled=false\nauthenticationEnabled=false\ntlsEnabled=false\n\
            superUserRoles=a,\\\n  b\n";
        let c = parse(text, "t.conf").unwrap();
        let get = |k: &str| {
            c.settings
                .iter()
                .find(|(s, _)| s == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("bind"), Some("127.0.0.1:6650"));
        assert_eq!(get("http_bind"), Some("127.0.0.1:8080"));
        assert_eq!(get("meta.cluster"), Some("standalone"));
        assert_eq!(get("managed_ledger.ensemble"), Some("2"));
        assert_eq!(get("message_expiry_check_interval"), Some("5m"));
        assert_eq!(get("max_connections_per_ip"), Some("10"));
        assert_eq!(get("max_message_publish_buffer"), Some("64MiB"));
        assert_eq!(c.ignored, ["zookeeperServers", "loadBalancerEnabled"]);
        assert_eq!(get("super_user_roles"), Some("a,b"));
        // The settings load into a BrokerConfig.
        let cfg: crate::config::BrokerConfig =
            common::config::load_layers(None, &c.settings, Vec::new(), &[]).unwrap();
        assert_eq!(cfg.bind, "127.0.0.1:6650");
        assert_eq!(cfg.managed_ledger.ensemble, 2);
        assert_eq!(
            cfg.message_expiry_check_interval,
            std::time::Duration::from_secs(300)
        );
    }

    #[test]
    fn tls_and_authorization_keys() {
        let c = parse(
            "bindAddress=0.0.0.0\nbrokerServicePortTls=6651\nwebServicePortTls=8443\ntlsEnabled=true\n\
             tlsCertificateFilePath=test-conf/broker-cert.pem\ntlsKeyFilePath=k.pem\n\
             tlsTrustCertsFilePath=ca.pem\ntlsAllowInsecureConnection=false\n\
             authorizationEnabled=true\nsuperUserRoles=localhost,superUser,admin\n\
             authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderTls\n",
            "ssl.conf",
        )
        .unwrap();
        let cfg: crate::config::BrokerConfig =
            common::config::load_layers(None, &c.settings, Vec::new(), &[]).unwrap();
        assert_eq!(cfg.tls_bind, "0.0.0.0:6651");
        assert_eq!(cfg.https_bind, "0.0.0.0:8443");
        assert_eq!(cfg.tls_certificate_file, "test-conf/broker-cert.pem");
        assert_eq!(cfg.tls_trust_certs_file, "ca.pem");
        assert!(cfg.authorization_enabled);
        assert_eq!(
            cfg.authorizer().super_users,
            ["localhost", "superUser", "admin"]
        );
        assert_eq!(cfg.authentication_providers, "tls");
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);
    }

    #[test]
    fn bad_lines_values_and_unsupported_security_are_errors_naming_the_line() {
        let e = parse("a=1\n=oops\n", "x.conf").unwrap_err().to_string();
        assert!(e.starts_with("x.conf:2:"), "{e}");
        let e = parse("brokerServicePort=sixty\n", "x.conf")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.conf:1:") && e.contains("port"), "{e}");
        let e = parse("\nmanagedLedgerDefaultAckQuorum=-1\n", "x.conf")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.conf:2:"), "{e}");
        for on in [
            "tokenPublicKey=file:///k.pub",
            "tlsEnabledWithKeyStore=true",
            "authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderSasl",
        ] {
            let e = parse(on, "s.conf").unwrap_err().to_string();
            assert!(
                e.contains("not supported") && e.starts_with("s.conf:1:"),
                "{e}"
            );
        }
        let c = parse(
            "authenticationEnabled=true\nauthenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken, org.apache.pulsar.broker.authentication.AuthenticationProviderBasic\ntokenSecretKey=file:///k\n",
            "a.conf",
        )
        .unwrap();
        assert!(
            c.settings
                .contains(&("authentication_providers".into(), "token,basic".into()))
        );
        assert!(
            c.settings
                .contains(&("authentication_enabled".into(), "true".into()))
        );
        assert!(
            c.settings
                .contains(&("token_secret_key".into(), "file:///k".into()))
        );
    }
}
