//! The broker process: accept loop on the Pulsar port, HTTP (`/metrics`, `/status`,
//! `/lookup/v2/topic/…`, `/admin/v2/…` from [`crate::admin`]), the broker's registration and ownership lease, and shutdown (stop
//! accepting, persist cursors, close open ledgers, then give up the lease and its bundles).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::routing::get;
use common::telemetry::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::{BrokerError, Result};
use crate::service::BrokerService;

/// Where a started broker listens.
#[derive(Debug)]
pub struct RunningBroker {
    /// Pulsar protocol address.
    pub service_addr: SocketAddr,
    /// HTTP address.
    pub http_addr: SocketAddr,
    /// `pulsar://host:port` as advertised.
    pub service_url: String,
    /// Pulsar protocol over TLS address, when enabled.
    pub tls_addr: Option<SocketAddr>,
    /// HTTPS address, when enabled.
    pub https_addr: Option<SocketAddr>,
    service: Arc<BrokerService>,
    stop: CancellationToken,
    /// Ends the registration (revoking the lease) once the topics are closed.
    release: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds `addr` or explains which flag to fix.
pub async fn bind(addr: &str, key: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| BrokerError::Protocol(format!("`{key}`: cannot listen on {addr}: {e}")))
}

/// The TLS listeners (both need `service.tls`).
#[derive(Debug, Default)]
pub struct TlsListeners {
    /// `pulsar+ssl://` (Pulsar's brokerServicePortTls).
    pub pulsar: Option<TcpListener>,
    /// `https://` (webServicePortTls).
    pub https: Option<TcpListener>,
}

/// Starts serving `service` on the given listeners.
pub fn start(
    service: Arc<BrokerService>,
    pulsar: TcpListener,
    http: TcpListener,
    tls: TlsListeners,
    metrics: Option<PrometheusHandle>,
) -> Result<RunningBroker> {
    let local = |l: &Option<TcpListener>| -> Result<Option<SocketAddr>> {
        l.as_ref()
            .map(|l| l.local_addr())
            .transpose()
            .map_err(|e| BrokerError::Protocol(e.to_string()))
    };
    let (tls_addr, https_addr) = (local(&tls.pulsar)?, local(&tls.https)?);
    let tls_config = match (&service.tls, tls_addr.or(https_addr)) {
        (Some(c), _) => Some(c.clone()),
        (None, None) => None,
        (None, Some(_)) => {
            return Err(BrokerError::Protocol(
                "a TLS port is set but no certificate (tls_certificate_file, tls_key_file)".into(),
            ));
        }
    };
    let service_addr = pulsar
        .local_addr()
        .map_err(|e| BrokerError::Protocol(e.to_string()))?;
    let http_addr = http
        .local_addr()
        .map_err(|e| BrokerError::Protocol(e.to_string()))?;
    let stop = CancellationToken::new();
    let release = CancellationToken::new();
    let mut tasks = Vec::new();
    if let Some(o) = service.ownership.clone() {
        let svc = service.clone();
        let load = move || proto::meta::LoadReport {
            topics: svc.loaded_topics().len() as u64,
            ..Default::default()
        };
        tasks.push(tokio::spawn(crate::ownership::registry::run(
            o.clone(),
            load,
            release.clone(),
        )));
        if !service.storage_timeout.is_zero() {
            tasks.push(tokio::spawn(crate::ownership::storage::run(
                o.clone(),
                service.ledger_client().clone(),
                service.ensemble_size(),
                service.storage_timeout,
                release.clone(),
            )));
        }
        let (svc, token) = (service.clone(), release.clone());
        let mut losses = o.subscribe_losses();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    r = losses.changed() => if r.is_err() { return },
                }
                svc.drop_all_topics().await;
            }
        }));
    }
    // One id sequence and one set of connection limits for both binary listeners.
    let next_id = Arc::new(AtomicU64::new(1));
    let limits = Arc::new(crate::conn_limits::ConnectionLimits::new(
        service.max_connections,
        service.max_connections_per_ip,
    ));
    if let (Some(listener), Some(config)) = (tls.pulsar, tls_config.clone()) {
        let (svc, token, next_id, limits) = (
            service.clone(),
            stop.clone(),
            next_id.clone(),
            limits.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    },
                };
                let Ok(slot) = limits.admit(peer.ip()) else {
                    tracing::warn!(%peer, "connection limit reached; connection closed");
                    metrics::counter!("pulsar_broker_connections_refused_total").increment(1);
                    continue;
                };
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let (svc, config) = (svc.clone(), config.clone());
                tokio::spawn(async move {
                    let deadline = svc.keepalive;
                    if let Some(s) = crate::tls::listener::handshake(
                        &config,
                        stream,
                        peer,
                        deadline,
                        "pulsar+ssl",
                    )
                    .await
                    {
                        crate::connection::serve_tls(s, svc, id).await;
                    }
                    drop(slot);
                });
            }
        }));
    }
    let (svc, token) = (service.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                accepted = pulsar.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let slot = match limits.admit(peer.ip()) {
                            Ok(slot) => slot,
                            Err(why) => {
                                // As Pulsar's ConnectionController: closed at once.
                                tracing::warn!(%peer, ?why, "connection limit reached; connection closed");
                                metrics::counter!("pulsar_broker_connections_refused_total").increment(1);
                                drop(stream);
                                continue;
                            }
                        };
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        let svc = svc.clone();
                        tokio::spawn(async move {
                            crate::connection::serve(stream, svc, id).await;
                            drop(slot);
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                },
            }
        }
    }));
    tasks.push(tokio::spawn(crate::stats::run(
        service.clone(),
        stop.clone(),
    )));
    tasks.push(tokio::spawn(crate::evict::run(
        service.clone(),
        stop.clone(),
    )));
    if let Some((period, max_age)) = service.delete_inactive_topics {
        tasks.push(tokio::spawn(crate::inactive::run(
            service.clone(),
            period,
            max_age,
            stop.clone(),
        )));
    }
    let lookup_svc = service.clone();
    let metrics_svc = service.clone();
    let app = crate::admin::routes(service.clone())
        .route("/status", get(|| async { "OK\n" }))
        .route(
            "/lookup/v2/topic/{domain}/{tenant}/{namespace}/{topic}",
            get(move |path| http_lookup(lookup_svc.clone(), path)),
        )
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                let service = metrics_svc.clone();
                async move {
                    let mut text = m.map(|h| h.render()).unwrap_or_default();
                    text.push_str(&crate::topic_metrics::render(&service).await);
                    text
                }
            }),
        )
        // Authorization runs inside authentication (the outer layer is added last).
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            crate::admin::access::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            crate::auth::http::authenticate,
        ));
    use crate::tls::listener::HttpPeer;
    if let (Some(listener), Some(config)) = (tls.https, tls_config) {
        let https = crate::tls::listener::HttpsListener::new(
            listener,
            config,
            service.keepalive,
            stop.clone(),
        )
        .map_err(|e| BrokerError::Protocol(e.to_string()))?;
        let (token, app) = (stop.clone(), app.clone());
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(https, app.into_make_service_with_connect_info::<HttpPeer>())
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
        }));
    }
    let token = stop.clone();
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(http, app.into_make_service_with_connect_info::<HttpPeer>())
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
    }));
    Ok(RunningBroker {
        service_addr,
        http_addr,
        service_url: service.service_url.clone(),
        tls_addr,
        https_addr,
        service,
        stop,
        release,
        tasks,
    })
}

impl RunningBroker {
    /// Runs until `shutdown`, then stops accepting, persists cursors and closes ledgers.
    /// `POST /admin/v2/brokers/shutdown` does the same as `shutdown`.
    pub async fn run_until(self, shutdown: CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = self.service.shutdown_requested.cancelled() => {}
        }
        tracing::info!("broker shutting down");
        self.service
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop.cancel();
        self.service.close().await;
        self.release.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// `GET /lookup/v2/topic/{domain}/{tenant}/{namespace}/{topic}`: the serving broker's URLs,
/// as Pulsar answers them (`brokerUrl`, `httpUrl`); an unowned bundle is assigned first.
async fn http_lookup(
    service: Arc<BrokerService>,
    axum::extract::Path((domain, tenant, namespace, topic)): axum::extract::Path<(
        String,
        String,
        String,
        String,
    )>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let name = match crate::service::normalize_topic(&format!(
        "{domain}://{tenant}/{namespace}/{topic}"
    )) {
        Ok(n) => n,
        Err(e) => return (StatusCode::PRECONDITION_FAILED, e.to_string()).into_response(),
    };
    let own = service
        .ownership
        .as_ref()
        .map(|o| o.urls().clone())
        .unwrap_or_else(|| crate::ownership::owner::BrokerUrls {
            service_url: service.service_url.clone(),
            service_url_tls: service.service_url_tls.clone(),
            ..Default::default()
        });
    let answer = match &service.ownership {
        Some(o) => o.lookup(&name, false).await,
        None => Ok(crate::ownership::LookupAnswer::Connect),
    };
    let urls = match answer {
        Ok(crate::ownership::LookupAnswer::Connect) => own,
        Ok(crate::ownership::LookupAnswer::Redirect {
            service_url,
            http_url,
            service_url_tls,
            http_url_tls,
        }) => crate::ownership::owner::BrokerUrls {
            service_url,
            http_url,
            service_url_tls,
            http_url_tls,
        },
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    axum::Json(serde_json::json!({
        "brokerUrl": urls.service_url,
        "httpUrl": urls.http_url,
        "nativeUrl": urls.service_url,
        "brokerUrlTls": urls.service_url_tls,
        "httpUrlTls": urls.http_url_tls,
    }))
    .into_response()
}
