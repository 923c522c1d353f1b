//! The broker process: accept loop on the Pulsar port, HTTP (`/metrics`, `/status`), and
//! shutdown (stop accepting, persist cursors, close open ledgers).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
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
    service: Arc<BrokerService>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Binds `addr` or explains which flag to fix.
pub async fn bind(addr: &str, key: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| BrokerError::Protocol(format!("`{key}`: cannot listen on {addr}: {e}")))
}

/// Starts serving `service` on the given listeners.
pub fn start(
    service: Arc<BrokerService>,
    pulsar: TcpListener,
    http: TcpListener,
    metrics: Option<PrometheusHandle>,
) -> Result<RunningBroker> {
    let service_addr = pulsar
        .local_addr()
        .map_err(|e| BrokerError::Protocol(e.to_string()))?;
    let http_addr = http
        .local_addr()
        .map_err(|e| BrokerError::Protocol(e.to_string()))?;
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let (svc, token) = (service.clone(), stop.clone());
    tasks.push(tokio::spawn(async move {
        let next_id = AtomicU64::new(1);
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                accepted = pulsar.accept() => match accepted {
                    Ok((stream, _)) => {
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(crate::connection::serve(stream, svc.clone(), id));
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
    let app = Router::new()
        .route("/status", get(|| async { "OK\n" }))
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { m.map(|h| h.render()).unwrap_or_default() }
            }),
        );
    let token = stop.clone();
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(http, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await;
    }));
    Ok(RunningBroker {
        service_addr,
        http_addr,
        service_url: service.service_url.clone(),
        service,
        stop,
        tasks,
    })
}

impl RunningBroker {
    /// Runs until `shutdown`, then stops accepting, persists cursors and closes ledgers.
    pub async fn run_until(self, shutdown: CancellationToken) {
        shutdown.cancelled().await;
        tracing::info!("broker shutting down");
        self.stop.cancel();
        self.service.close().await;
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
