//! Accepting TLS connections: the handshake of each runs in its own task with a deadline, so
//! a client that stalls mid-handshake (or sends plain bytes to the TLS port) holds up no one
//! else. [`HttpsListener`] feeds finished handshakes to axum for the HTTPS port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use super::ServerTls;

/// Completes the server side of a handshake within `deadline`; a failure is a WARN line with
/// the peer and the reason (never more: a port scanner is not an incident) and a count.
pub async fn handshake(
    tls: &ServerTls,
    tcp: TcpStream,
    peer: SocketAddr,
    deadline: Duration,
    listener: &'static str,
) -> Option<TlsStream<TcpStream>> {
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout(deadline, tls.acceptor().accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::warn!(%peer, listener, reason = %e, "TLS handshake failed");
            metrics::counter!("pulsar_tls_handshake_failures_total", "listener" => listener)
                .increment(1);
            None
        }
        Err(_) => {
            tracing::warn!(%peer, listener, "TLS handshake did not finish in time");
            metrics::counter!("pulsar_tls_handshake_failures_total", "listener" => listener)
                .increment(1);
            None
        }
    }
}

/// The peer of an HTTP request: its address and, over HTTPS, its verified certificate (for
/// the `tls` provider). Axum hands it to handlers as `ConnectInfo<HttpPeer>`.
#[derive(Debug, Clone)]
pub struct HttpPeer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Its certificate (DER), when it presented one over HTTPS.
    pub cert: Option<Arc<[u8]>>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for HttpPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        HttpPeer {
            addr: *stream.remote_addr(),
            cert: None,
        }
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HttpsListener>>
    for HttpPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, HttpsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// The HTTPS port as axum sees it: TCP accepts and handshakes run in a task of their own;
/// finished connections come out of `accept`.
pub struct HttpsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, HttpPeer)>,
}

impl HttpsListener {
    /// Serves handshakes on `tcp` until `stop`.
    pub fn new(
        tcp: TcpListener,
        tls: Arc<ServerTls>,
        deadline: Duration,
        stop: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, addr) = tokio::select! {
                    () = stop.cancelled() => return,
                    a = tcp.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "HTTPS accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    if let Some(s) = handshake(&tls, stream, addr, deadline, "https").await {
                        let cert = s
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| Arc::<[u8]>::from(c.as_ref()));
                        let _ = tx.send((s, HttpPeer { addr, cert })).await;
                    }
                });
            }
        });
        Ok(HttpsListener { local, ready })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = HttpPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The acceptor stopped: nothing more will come (shutdown is under way).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(HttpPeer {
            addr: self.local,
            cert: None,
        })
    }
}
