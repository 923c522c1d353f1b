//! The bookie process: start-up, serving, and the shutdown sequence.
//!
//! Start: validate config → bind listeners (port 0 allowed) → connect to etcd → check or
//! create cookies → open the engine (journal replay) → serve gRPC and HTTP → register under a
//! lease. Only then does [`start`] return, so the caller's ready line is true.
//! Stop: refuse new adds → let in-flight adds finish → checkpoint → deregister → stop serving.

pub mod handlers;
pub mod http;
pub mod service;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::BookieId;
use common::telemetry::PrometheusHandle;
use meta::{BookieRegistry, EtcdOptions, EtcdStore, KeyLayout, MetaUrl, MetadataStore};
use proto::bookie::bookie_server::BookieServer;
use proto::meta::BookieServiceInfo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::config::BookieConfig;
use crate::cookie;
use crate::engine::Engine;
use crate::error::{BookieError, Result};
use crate::registration::Registration;

/// State shared by the gRPC and HTTP services.
#[derive(Debug)]
pub struct Shared {
    /// The storage engine.
    pub engine: Arc<Engine>,
    /// This bookie's id.
    pub bookie_id: BookieId,
}

impl Shared {
    /// "writable", "read_only" or "shutting_down".
    pub fn state_name(&self) -> &'static str {
        if self.engine.is_shutting_down() {
            "shutting_down"
        } else if self.engine.is_read_only() {
            "read_only"
        } else {
            "writable"
        }
    }
}

/// A started bookie.
#[derive(Debug)]
pub struct RunningBookie {
    /// Where the gRPC service listens.
    pub service_addr: SocketAddr,
    /// Where the HTTP endpoint listens.
    pub http_addr: SocketAddr,
    /// The bookie id (as registered).
    pub bookie_id: BookieId,
    shared: Arc<Shared>,
    serving: CancellationToken,
    deregister: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(addr: &str, key: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| BookieError::Config(format!("`{key}`: cannot listen on {addr}: {e}")))
}

/// Starts a bookie; returns once it serves and is registered.
pub async fn start(
    config: BookieConfig,
    metrics: Option<PrometheusHandle>,
) -> Result<RunningBookie> {
    config.validate()?;
    start_with_store(config, None, metrics).await
}

/// Starts a bookie on an already open metadata store (`magnetar standalone` passes its
/// embedded one), or on the etcd of `meta.url` when `store` is `None`.
pub async fn start_with_store(
    config: BookieConfig,
    store: Option<Arc<dyn MetadataStore>>,
    metrics: Option<PrometheusHandle>,
) -> Result<RunningBookie> {
    config.validate_local()?;
    let grpc = bind(&config.bind, "bind").await?;
    let http = bind(&config.http_bind, "http_bind").await?;
    let service_addr = grpc
        .local_addr()
        .map_err(BookieError::io("grpc listener"))?;
    let http_addr = http
        .local_addr()
        .map_err(BookieError::io("http listener"))?;
    let host = if config.advertised_address.is_empty() {
        if service_addr.ip().is_unspecified() {
            common::net::default_advertised_host().ok_or_else(|| {
                BookieError::Config(
                    "`advertised_address`: required when `bind` is a wildcard address and the host name cannot be read".into(),
                )
            })?
        } else {
            service_addr.ip().to_string()
        }
    } else {
        config.advertised_address.clone()
    };
    let advertised = format!("{host}:{}", service_addr.port());
    let id = if !config.bookie_id.is_empty() {
        config.bookie_id.clone()
    } else if let Some(id) = cookie::id_on_disk(&[&config.journal.dir, &config.ledger_storage.dir])?
    {
        tracing::info!(bookie_id = %id, "bookie id taken from the cookie on disk");
        id
    } else {
        advertised.clone()
    };
    let bookie_id =
        BookieId::new(id).map_err(|e| BookieError::Config(format!("`bookie_id`: {e}")))?;

    let store = match store {
        Some(s) => s,
        None => {
            let MetaUrl::Etcd(endpoints) = config.meta.url.parse::<MetaUrl>()?;
            let mut opts = EtcdOptions::new(endpoints);
            opts.connect_timeout = config.meta.connect_timeout;
            opts.request_timeout = config.meta.request_timeout;
            let store: Arc<dyn MetadataStore> = Arc::new(EtcdStore::connect(opts).await?);
            store
        }
    };
    let registry = BookieRegistry::new(store.clone(), KeyLayout::for_cluster(&config.meta.cluster));
    cookie::verify_or_create(
        &registry,
        &bookie_id,
        &config.journal.dir,
        &config.ledger_storage.dir,
    )
    .await?;

    let engine_config = config.engine()?;
    let engine = Arc::new(
        tokio::task::spawn_blocking(move || Engine::open(engine_config))
            .await
            .map_err(|e| BookieError::Config(format!("engine start-up panicked: {e}")))??,
    );
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        bookie_id: bookie_id.clone(),
    });
    let serving = CancellationToken::new();
    let deregister = CancellationToken::new();
    let mut tasks = Vec::new();

    let grpc_tls = tls::GrpcTls::from_config(&config)?;
    tasks.push(tokio::spawn(serve_grpc_with(
        shared.clone(),
        grpc,
        grpc_tls,
        serving.clone(),
    )));
    let app = http::router(shared.clone(), metrics);
    let stop = serving.clone();
    tasks.push(tokio::spawn(async move {
        let res = axum::serve(http, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "bookie HTTP server failed");
        }
    }));
    tasks.push(tokio::spawn(
        engine.clone().run_checkpoints(serving.clone()),
    ));

    let (free, total) = crate::disk::space(engine.storage().dir()).unwrap_or((0, 0));
    let info = BookieServiceInfo {
        bookie_id: bookie_id.to_string(),
        grpc_address: advertised,
        http_address: http_addr.to_string(),
        version: env!("CARGO_PKG_VERSION").into(),
        disk_free_bytes: free,
        disk_total_bytes: total,
        ..Default::default()
    };
    let (registered_tx, registered_rx) = oneshot::channel();
    if config.gc.enabled {
        let gc = crate::gc::Gc {
            ledgers: meta::LedgerStore::new(
                store.clone(),
                KeyLayout::for_cluster(&config.meta.cluster),
            ),
            engine: engine.clone(),
            bookie_id: bookie_id.to_string(),
            config: config.gc.clone(),
        };
        tasks.push(tokio::spawn(gc.run(serving.clone())));
    }
    let reg = Registration {
        store,
        registry,
        info,
        ttl: config.meta.lease_ttl,
        disk: config.disk.clone(),
        engine,
    };
    tasks.push(tokio::spawn(reg.run(deregister.clone(), registered_tx)));
    match tokio::time::timeout(
        config.meta.connect_timeout.max(Duration::from_secs(1)),
        registered_rx,
    )
    .await
    {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => return Err(e),
        _ => {
            serving.cancel();
            deregister.cancel();
            return Err(BookieError::Config(
                "`meta.url`: could not register the bookie in time".into(),
            ));
        }
    }
    Ok(RunningBookie {
        service_addr,
        http_addr,
        bookie_id,
        shared,
        serving,
        deregister,
        tasks,
    })
}

/// Serves the bookie gRPC service on `listener` until `stop` fires (plain gRPC).
pub async fn serve_grpc(shared: Arc<Shared>, listener: TcpListener, stop: CancellationToken) {
    serve_grpc_with(shared, listener, None, stop).await
}

/// Serves the bookie gRPC service on `listener`, over TLS when `tls` is set, until `stop`.
pub async fn serve_grpc_with(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<tls::GrpcTls>,
    stop: CancellationToken,
) {
    // tonic ignores the builder's tcp_nodelay with serve_with_incoming: set it per socket,
    // or small calls wait ~40 ms on Nagle + delayed ACK.
    let incoming = TcpListenerStream::new(listener).map(|s| {
        if let Ok(s) = &s {
            let _ = s.set_nodelay(true);
        }
        s
    });
    let roles = tls
        .as_ref()
        .map(|t| t.authorized_roles.clone())
        .unwrap_or_default();
    let svc = BookieServer::new(service::BookieService { shared })
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let svc = tonic::service::interceptor::InterceptedService::new(svc, tls::authorize(roles));
    let mut builder = tonic::transport::Server::builder().tcp_nodelay(true);
    if let Some(t) = tls {
        builder = match builder.tls_config(t.config) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "bookie TLS configuration failed");
                return;
            }
        };
    }
    let res = builder
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
        .await;
    if let Err(e) = res {
        tracing::error!(error = %e, "bookie gRPC server failed");
    }
}

impl RunningBookie {
    /// The engine (for in-process tests and tools).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.shared.engine
    }

    /// Runs until `shutdown` fires, then stops in order: refuse new adds, finish in-flight
    /// ones, checkpoint, deregister, stop serving.
    pub async fn run_until(self, shutdown: CancellationToken) -> Result<()> {
        shutdown.cancelled().await;
        tracing::info!("bookie shutting down");
        let res = self.shared.engine.shutdown().await;
        self.deregister.cancel();
        self.serving.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        tracing::info!("bookie stopped");
        res
    }
}
