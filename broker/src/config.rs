//! The broker's configuration: `config/broker.toml` documents every key with its default and
//! is compiled in; a test checks it equals [`BrokerConfig::default`].

use std::time::Duration;

use common::config::{ByteSize, duration};
use serde::{Deserialize, Serialize};

use crate::managed_ledger::ManagedLedgerConfig;

/// The commented default configuration file.
pub const DEFAULT_TOML: &str = include_str!("../config/broker.toml");

/// Everything `magnetar broker` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Pulsar protocol listen address.
    pub bind: String,
    /// HTTP listen address.
    pub http_bind: String,
    /// Host advertised to clients; empty = host of `bind`.
    pub advertised_address: String,
    /// A connection quiet this long gets a PING; one quiet for twice as long is closed.
    #[serde(with = "duration")]
    pub keepalive_interval: Duration,
    /// Producing to or subscribing to a topic that does not exist yet, in an existing
    /// namespace, creates it (Pulsar: allowAutoTopicCreation).
    pub allow_auto_topic_creation: bool,
    /// Producer de-duplication for namespaces without a policy (Pulsar:
    /// brokerDeduplicationEnabled).
    pub deduplication_enabled: bool,
    /// Message TTL for namespaces without a policy (Pulsar: ttlDurationDefaultInSeconds;
    /// zero: never).
    #[serde(with = "duration")]
    pub message_ttl: Duration,
    /// How often subscriptions are checked against the message TTL.
    #[serde(with = "duration")]
    pub message_expiry_check_interval: Duration,
    /// The longest topics pattern the broker evaluates for regex consumers (Pulsar:
    /// subscriptionPatternMaxLength).
    pub subscription_pattern_max_length: usize,
    /// Most client connections the broker holds at once; one more is closed as it is accepted
    /// (0: no limit). Pulsar: brokerMaxConnections.
    pub max_connections: usize,
    /// Most client connections from one IP address (0: no limit). Pulsar:
    /// brokerMaxConnectionsPerIp.
    pub max_connections_per_ip: usize,
    /// Publishes one connection may have waiting for durability; past it the broker stops
    /// reading from the connection until some are done. Pulsar:
    /// maxPendingPublishRequestsPerConnection.
    pub max_pending_publish_requests_per_connection: usize,
    /// Bytes of publishes in flight on the whole broker; past it every producer connection
    /// is read no further until some are durable. Pulsar: maxMessagePublishBufferSizeInMB.
    pub max_message_publish_buffer: common::config::ByteSize,
    /// Lookups served at once; past it the client is told TooManyRequests. Pulsar:
    /// maxConcurrentLookupRequest.
    pub max_concurrent_lookup_requests: usize,
    /// Topics loaded at once; more wait. Pulsar: maxConcurrentTopicLoadRequest.
    pub max_concurrent_topic_loads: usize,
    /// Subscriptions one topic may have; a new one past it is refused with NotAllowedError
    /// (0: no limit). Pulsar: maxSubscriptionsPerTopic.
    pub max_subscriptions_per_topic: usize,
    /// Topics one namespace may have; a new one past it is refused with NotAllowedError
    /// (0: no limit). Pulsar: maxTopicsPerNamespace.
    pub max_topics_per_namespace: usize,
    /// Topics with no producer, consumer or subscription for `inactive_topic_max_age` are
    /// deleted (their ledgers too). Pulsar: brokerDeleteInactiveTopicsEnabled (true there;
    /// false here until set: a deleted topic's data is gone).
    pub delete_inactive_topics: bool,
    /// How long a topic may stay inactive before it is deleted. Pulsar:
    /// brokerDeleteInactiveTopicsMaxInactiveDurationSeconds.
    #[serde(with = "duration")]
    pub inactive_topic_max_age: Duration,
    /// How often inactive topics are looked for. Pulsar:
    /// brokerDeleteInactiveTopicsFrequencySeconds.
    #[serde(with = "duration")]
    pub inactive_topic_check_interval: Duration,
    /// Pulsar protocol over TLS listen address (empty: none). Pulsar: brokerServicePortTls.
    pub tls_bind: String,
    /// HTTPS listen address (empty: none). Pulsar: webServicePortTls.
    pub https_bind: String,
    /// The broker's PEM certificate chain. Pulsar: tlsCertificateFilePath.
    pub tls_certificate_file: String,
    /// Its PEM private key (PKCS#1, PKCS#8, SEC1). Pulsar: tlsKeyFilePath.
    pub tls_key_file: String,
    /// CA certificates client certificates must chain to (empty: none asked for). Pulsar:
    /// tlsTrustCertsFilePath.
    pub tls_trust_certs_file: String,
    /// A client without a trusted certificate fails the handshake. Pulsar:
    /// tlsRequireTrustedClientCertOnConnect.
    pub tls_require_trusted_client_cert_on_connect: bool,
    /// Client certificates that do not verify are accepted. Pulsar: tlsAllowInsecureConnection.
    pub tls_allow_insecure_connection: bool,
    /// How often the certificate files are checked for changes (0: each new connection).
    /// Pulsar: tlsCertRefreshCheckDurationSec.
    #[serde(with = "duration")]
    pub tls_cert_refresh_check_interval: Duration,
    /// `TLSv1.2`, `TLSv1.3`, comma-separated (empty: both). Pulsar: tlsProtocols.
    pub tls_protocols: String,
    /// Clients must authenticate (binary CONNECT and every HTTP request but `/metrics`,
    /// `/status` and the health checks). Pulsar: authenticationEnabled.
    pub authentication_enabled: bool,
    /// Providers, comma-separated: `token`, `basic`. Pulsar: authenticationProviders (its
    /// class names are read from Pulsar files).
    pub authentication_providers: String,
    /// The role of a client that authenticates with no known method (empty: refused).
    /// Pulsar: anonymousUserRole.
    pub anonymous_user_role: String,
    /// The HMAC key tokens are signed with: `data:;base64,…`, `file:///…`, a path, or
    /// base64. Pulsar: tokenSecretKey.
    pub token_secret_key: crate::auth::Secret,
    /// The claim that holds a token's role. Pulsar: tokenAuthClaim.
    pub token_auth_claim: String,
    /// A claim every token must hold `token_audience` in (both or neither). Pulsar:
    /// tokenAudienceClaim, tokenAudience.
    pub token_audience_claim: String,
    /// See `token_audience_claim`.
    pub token_audience: String,
    /// How often each connection's credentials are checked for expiry; an expired token is
    /// challenged (AUTH_CHALLENGE) and the connection closed if not renewed by the next check
    /// (0s: never). Pulsar: authenticationRefreshCheckSeconds.
    #[serde(with = "duration")]
    pub authentication_refresh_check_interval: Duration,
    /// The htpasswd file of the `basic` provider (`$apr1$` or DES crypt hashes), in the same
    /// forms as `token_secret_key`. Pulsar: basicAuthConf.
    pub basic_auth_conf: crate::auth::Secret,
    /// CA certificates the bookies' certificates chain to: set, the broker calls bookies over
    /// TLS. Pulsar: bookkeeperTLSTrustCertsFilePath.
    pub bookkeeper_tls_trust_certs_file: String,
    /// The broker's certificate for bookies that require one (its CN or an OU must be in
    /// their `authorized_roles`). Pulsar: bookkeeperTLSCertificateFilePath.
    pub bookkeeper_tls_certificate_file: String,
    /// Its key. Pulsar: bookkeeperTLSKeyFilePath.
    pub bookkeeper_tls_key_file: String,
    /// Roles are checked against grants (needs authentication). Pulsar: authorizationEnabled.
    pub authorization_enabled: bool,
    /// Roles that may do anything, comma-separated. Pulsar: superUserRoles.
    pub super_user_roles: String,
    /// Roles that connect on behalf of others (proxies), comma-separated. Pulsar: proxyRoles.
    pub proxy_roles: String,
    /// Metadata store.
    pub meta: MetaSection,
    /// Managed ledgers.
    pub managed_ledger: ManagedLedgerSection,
    /// Topic ownership between brokers.
    pub ownership: OwnershipSection,
}

/// `[ownership]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OwnershipSection {
    /// The broker's lease: its registration and its bundles go when it is not kept alive for
    /// this long (a dead broker's topics move after at most this).
    #[serde(with = "duration")]
    pub lease_ttl: Duration,
    /// Bundles per namespace.
    pub bundles: u32,
    /// A broker that reaches fewer bookies than a new ledger's ensemble for this long gives
    /// its bundles up until they answer again (0s: never).
    #[serde(with = "duration")]
    pub storage_timeout: Duration,
}

impl Default for OwnershipSection {
    fn default() -> Self {
        OwnershipSection {
            lease_ttl: Duration::from_secs(10),
            bundles: crate::ownership::bundles::DEFAULT_BUNDLES,
            storage_timeout: Duration::from_secs(10),
        }
    }
}

/// `[meta]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetaSection {
    /// `etcd://HOST:PORT[,HOST:PORT]`.
    pub url: String,
    /// Cluster name.
    pub cluster: String,
    /// How long to keep trying to reach etcd at start (in containers etcd may come up later).
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
}

/// `[managed_ledger]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagedLedgerSection {
    /// Ensemble size.
    pub ensemble: usize,
    /// Write quorum.
    pub write_quorum: usize,
    /// Ack quorum.
    pub ack_quorum: usize,
    /// Rollover by entries.
    pub max_entries_per_ledger: u64,
    /// Rollover by size.
    pub max_ledger_size: ByteSize,
    /// Rollover by age.
    #[serde(with = "duration")]
    pub max_ledger_age: Duration,
    /// Entry cache memory, shared by every topic of the broker.
    pub cache_size: ByteSize,
    /// Cached entries older than this are evicted.
    #[serde(with = "duration")]
    pub cache_eviction_age: Duration,
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

impl BrokerConfig {
    /// TLS to bookies, with the files read now; none when not configured.
    pub fn bookie_tls(&self) -> Result<Option<bookie::client::ClientTls>, String> {
        if self.bookkeeper_tls_trust_certs_file.is_empty() {
            return Ok(None);
        }
        bookie::client::ClientTls::from_files(
            &self.bookkeeper_tls_trust_certs_file,
            &self.bookkeeper_tls_certificate_file,
            &self.bookkeeper_tls_key_file,
        )
        .map(Some)
        .map_err(|e| format!("`bookkeeper_tls_*`: {e}"))
    }

    /// What authorization needs.
    pub fn authorizer(&self) -> crate::auth::authorization::Authorizer {
        crate::auth::authorization::Authorizer {
            enabled: self.authorization_enabled,
            super_users: list(&self.super_user_roles),
            proxy_roles: list(&self.proxy_roles),
        }
    }

    /// What the TLS listeners need; none when neither is configured.
    pub fn tls_settings(&self) -> Option<crate::tls::TlsSettings> {
        if self.tls_bind.is_empty() && self.https_bind.is_empty() {
            return None;
        }
        Some(crate::tls::TlsSettings {
            certificate_file: self.tls_certificate_file.clone().into(),
            key_file: self.tls_key_file.clone().into(),
            trust_certs_file: (!self.tls_trust_certs_file.is_empty())
                .then(|| self.tls_trust_certs_file.clone().into()),
            allow_insecure: self.tls_allow_insecure_connection,
            require_client_cert: self.tls_require_trusted_client_cert_on_connect,
            refresh: self.tls_cert_refresh_check_interval,
            protocols: list(&self.tls_protocols),
        })
    }

    /// What authentication needs.
    pub fn auth_settings(&self) -> crate::auth::AuthSettings {
        crate::auth::AuthSettings {
            enabled: self.authentication_enabled,
            providers: list(&self.authentication_providers),
            anonymous_role: self.anonymous_user_role.clone(),
            token_secret_key: self.token_secret_key.clone(),
            token_auth_claim: self.token_auth_claim.clone(),
            token_audience: (!self.token_audience_claim.is_empty()
                && !self.token_audience.is_empty())
            .then(|| {
                (
                    self.token_audience_claim.clone(),
                    self.token_audience.clone(),
                )
            }),
            basic_auth_conf: self.basic_auth_conf.clone(),
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            bind: "127.0.0.1:6650".into(),
            http_bind: "127.0.0.1:8080".into(),
            advertised_address: String::new(),
            keepalive_interval: Duration::from_secs(30),
            allow_auto_topic_creation: true,
            deduplication_enabled: false,
            message_ttl: Duration::ZERO,
            message_expiry_check_interval: Duration::from_secs(60),
            subscription_pattern_max_length: 50,
            max_connections: 0,
            max_connections_per_ip: 0,
            max_pending_publish_requests_per_connection: 1000,
            max_message_publish_buffer: common::config::ByteSize(256 << 20),
            max_concurrent_lookup_requests: 50_000,
            max_concurrent_topic_loads: 5_000,
            max_subscriptions_per_topic: 0,
            max_topics_per_namespace: 0,
            delete_inactive_topics: false,
            inactive_topic_max_age: Duration::from_secs(60),
            inactive_topic_check_interval: Duration::from_secs(60),
            authentication_enabled: false,
            authentication_providers: String::new(),
            anonymous_user_role: String::new(),
            token_secret_key: Default::default(),
            token_auth_claim: "sub".into(),
            token_audience_claim: String::new(),
            token_audience: String::new(),
            basic_auth_conf: Default::default(),
            authentication_refresh_check_interval: Duration::from_secs(60),
            bookkeeper_tls_trust_certs_file: String::new(),
            bookkeeper_tls_certificate_file: String::new(),
            bookkeeper_tls_key_file: String::new(),
            authorization_enabled: false,
            super_user_roles: String::new(),
            proxy_roles: String::new(),
            tls_bind: String::new(),
            https_bind: String::new(),
            tls_certificate_file: String::new(),
            tls_key_file: String::new(),
            tls_trust_certs_file: String::new(),
            tls_require_trusted_client_cert_on_connect: false,
            tls_allow_insecure_connection: false,
            tls_cert_refresh_check_interval: Duration::from_secs(300),
            tls_protocols: String::new(),
            meta: MetaSection::default(),
            managed_ledger: ManagedLedgerSection::default(),
            ownership: OwnershipSection::default(),
        }
    }
}

impl Default for MetaSection {
    fn default() -> Self {
        MetaSection {
            url: String::new(),
            cluster: meta::keys::DEFAULT_CLUSTER.into(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for ManagedLedgerSection {
    fn default() -> Self {
        ManagedLedgerSection {
            ensemble: 2,
            write_quorum: 2,
            ack_quorum: 2,
            max_entries_per_ledger: 50_000,
            max_ledger_size: ByteSize(1 << 30),
            max_ledger_age: Duration::from_secs(4 * 3600),
            cache_size: ByteSize(64 << 20),
            cache_eviction_age: Duration::from_secs(1),
        }
    }
}

impl BrokerConfig {
    /// Cross-field checks; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        let m = &self.managed_ledger;
        bookie::client::distribution::check_quorums(m.ensemble, m.write_quorum, m.ack_quorum)
            .map_err(|e| format!("`managed_ledger`: {e}"))?;
        if m.max_entries_per_ledger == 0 {
            return Err("`managed_ledger.max_entries_per_ledger`: must be > 0".into());
        }
        // As Pulsar refuses it: authorization without authentication would judge no one.
        if self.authorization_enabled && !self.authentication_enabled {
            return Err(
                "`authorization_enabled`: needs `authentication_enabled` (roles come from authentication)"
                    .into(),
            );
        }
        let tls_port = !self.tls_bind.is_empty() || !self.https_bind.is_empty();
        if tls_port && (self.tls_certificate_file.is_empty() || self.tls_key_file.is_empty()) {
            return Err(
                "`tls_bind`/`https_bind`: need `tls_certificate_file` and `tls_key_file`".into(),
            );
        }
        Ok(())
    }

    /// The managed-ledger settings.
    pub fn managed_ledger(&self) -> ManagedLedgerConfig {
        let m = &self.managed_ledger;
        ManagedLedgerConfig {
            ensemble: m.ensemble,
            write_quorum: m.write_quorum,
            ack_quorum: m.ack_quorum,
            max_entries_per_ledger: m.max_entries_per_ledger,
            max_ledger_bytes: m.max_ledger_size.0,
            max_ledger_age: m.max_ledger_age,
            cache: crate::managed_ledger::cache::CacheBudget::new(
                m.cache_size.0 as usize,
                m.cache_eviction_age,
            ),
            policies: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_equal_code_defaults() {
        let parsed: BrokerConfig = toml::from_str(DEFAULT_TOML).unwrap();
        assert_eq!(parsed, BrokerConfig::default());
    }
}
