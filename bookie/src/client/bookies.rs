//! Connections to bookies by id: the address comes from the bookie's registration
//! (`bookies/available` or `bookies/readonly`), the gRPC channel is cached, and a failed call
//! drops the cached address so a restarted bookie (on a new port) is found again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use meta::{BookieRegistry, BookieState};
use proto::bookie::bookie_client::BookieClient;
use tonic::transport::{Channel, Endpoint};

use super::error::{ClientError, Result};

/// The bookies a client talks to.
#[derive(Debug)]
pub struct Bookies {
    registry: BookieRegistry,
    channels: Mutex<HashMap<String, Channel>>,
    connect_timeout: Duration,
    tls: Option<super::ClientTls>,
}

impl Bookies {
    /// Bookies registered in `registry`.
    pub fn new(registry: BookieRegistry, connect_timeout: Duration) -> Self {
        Bookies {
            registry,
            channels: Mutex::new(HashMap::new()),
            connect_timeout,
            tls: None,
        }
    }

    /// Calls bookies over TLS (mutual, with an identity).
    pub fn with_tls(mut self, tls: Option<super::ClientTls>) -> Self {
        self.tls = tls;
        self
    }

    /// The registry.
    pub fn registry(&self) -> &BookieRegistry {
        &self.registry
    }

    /// Ids of the writable bookies.
    pub async fn writable(&self) -> Result<Vec<String>> {
        Ok(self
            .registry
            .list(BookieState::Available)
            .await?
            .into_iter()
            .map(|b| b.bookie_id)
            .collect())
    }

    /// A client for bookie `id`.
    pub async fn client(&self, id: &str) -> Result<BookieClient<Channel>> {
        let cached = self
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        let channel = match cached {
            Some(c) => c,
            None => {
                let mut all = self.registry.list(BookieState::Available).await?;
                all.extend(self.registry.list(BookieState::ReadOnly).await?);
                let info = all.into_iter().find(|b| b.bookie_id == id).ok_or_else(|| {
                    ClientError::Bookie {
                        bookie: id.to_owned(),
                        status: proto::bookie::StatusCode::Io,
                        message: "not registered (down?)".into(),
                    }
                })?;
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                let mut endpoint =
                    Endpoint::from_shared(format!("{scheme}://{}", info.grpc_address))
                        .map_err(|e| ClientError::Invalid(e.to_string()))?
                        .tcp_nodelay(true)
                        .connect_timeout(self.connect_timeout);
                if let Some(tls) = &self.tls {
                    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
                    let host = info
                        .grpc_address
                        .rsplit_once(':')
                        .map_or(info.grpc_address.as_str(), |(h, _)| h)
                        .trim_matches(['[', ']']);
                    let mut config = ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(&tls.ca))
                        .domain_name(host);
                    if let Some((cert, key)) = &tls.identity {
                        config = config.identity(Identity::from_pem(cert, key));
                    }
                    endpoint = endpoint
                        .tls_config(config)
                        .map_err(|e| ClientError::Invalid(format!("TLS to bookies: {e}")))?;
                }
                let channel = endpoint.connect_lazy();
                self.channels
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id.to_owned(), channel.clone());
                channel
            }
        };
        Ok(BookieClient::new(channel)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }

    /// One unary call to bookie `id`, bounded by `timeout`; transport failures and timeouts
    /// become typed errors (and drop the cached channel, so a restarted bookie is found).
    pub async fn call<T, F, Fut>(
        &self,
        id: &str,
        timeout: std::time::Duration,
        what: &str,
        f: F,
    ) -> Result<T>
    where
        F: FnOnce(BookieClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client(id).await?;
        match tokio::time::timeout(timeout, f(client)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => {
                self.forget(id);
                Err(ClientError::Bookie {
                    bookie: id.to_owned(),
                    status: proto::bookie::StatusCode::Io,
                    message: status.to_string(),
                })
            }
            Err(_) => {
                self.forget(id);
                Err(ClientError::Timeout(format!("{what} on bookie {id}")))
            }
        }
    }

    /// Forgets the cached channel of a bookie after a failure.
    pub fn forget(&self, id: &str) {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}
