//! Watches on etcd: one task per [`Watcher`] that forwards events in revision order and
//! re-establishes the etcd watch from the next revision when the stream breaks, so a
//! reconnect neither loses nor repeats an event.

use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio::sync::mpsc;

use super::{EtcdStore, to_kv};
use crate::error::{MetaError, Result};
use crate::store::{EventKind, KeyValue, Revision, Version, WATCH_BUFFER, WatchEvent, Watcher};

/// Starts a watch on `prefix` from `from` (or from now).
pub(super) async fn start(
    store: EtcdStore,
    prefix: String,
    from: Option<Revision>,
) -> Result<Watcher> {
    let next = match from {
        Some(r) if r.0 > 0 => r.0,
        // "From now": pin the revision so a reconnect resumes where this watch began.
        _ => {
            let page = store_revision(&store, &prefix).await?;
            page + 1
        }
    };
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    let task = tokio::spawn(forward(store, prefix, next, tx));
    Ok(Watcher::new(rx, task))
}

async fn store_revision(store: &EtcdStore, prefix: &str) -> Result<u64> {
    use crate::store::MetadataStore;
    Ok(store.range(prefix, None, 1).await?.revision.0)
}

enum StreamEnd {
    /// The receiver is gone: stop quietly.
    Closed,
    /// A final error to report.
    Fatal(MetaError),
    /// The stream broke; reconnect from `next`.
    Broken(String),
}

async fn forward(
    store: EtcdStore,
    prefix: String,
    mut next: u64,
    tx: mpsc::Sender<Result<WatchEvent>>,
) {
    let retry_for = store.options().connect_timeout;
    let mut failing_since: Option<tokio::time::Instant> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        match run_once(&store, &prefix, &mut next, &tx, &mut failing_since).await {
            StreamEnd::Closed => return,
            StreamEnd::Fatal(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            StreamEnd::Broken(reason) => {
                let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > retry_for {
                    let e = MetaError::Unavailable {
                        endpoints: store.endpoints.clone(),
                        timeout: retry_for,
                        reason: format!("watch could not be re-established: {reason}"),
                    };
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                tracing::debug!(prefix, next, reason, "etcd watch broken, re-establishing");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = tx.closed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn run_once(
    store: &EtcdStore,
    prefix: &str,
    next: &mut u64,
    tx: &mpsc::Sender<Result<WatchEvent>>,
    failing_since: &mut Option<tokio::time::Instant>,
) -> StreamEnd {
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(*next as i64);
    let mut client = store.client();
    let open = tokio::time::timeout(
        store.options().request_timeout,
        client.watch(prefix, Some(opts)),
    )
    .await;
    let mut stream = match open {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return StreamEnd::Broken(e.to_string()),
        Err(_) => return StreamEnd::Broken("watch request timed out".into()),
    };
    loop {
        let msg = tokio::select! {
            m = stream.message() => m,
            () = tx.closed() => return StreamEnd::Closed,
        };
        let resp = match msg {
            Ok(Some(r)) => r,
            Ok(None) => return StreamEnd::Broken("watch stream ended".into()),
            Err(e) => return StreamEnd::Broken(e.to_string()),
        };
        if resp.created() {
            *failing_since = None;
        }
        if resp.canceled() {
            if resp.compact_revision() > 0 {
                return StreamEnd::Fatal(MetaError::Compacted {
                    requested: Revision(*next),
                    compacted: Revision(resp.compact_revision() as u64),
                });
            }
            return StreamEnd::Broken(format!("watch canceled: {}", resp.cancel_reason()));
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let event = match to_kv(kv) {
                Err(e) => return StreamEnd::Fatal(e),
                Ok(kv) => match ev.event_type() {
                    EventType::Put => WatchEvent {
                        kind: EventKind::Put,
                        kv,
                    },
                    EventType::Delete => WatchEvent {
                        kind: EventKind::Delete,
                        kv: KeyValue {
                            value: bytes::Bytes::new(),
                            version: Version(kv.version.0),
                            lease: None,
                            ..kv
                        },
                    },
                },
            };
            *next = event.kv.version.0 + 1;
            if tx.send(Ok(event)).await.is_err() {
                return StreamEnd::Closed;
            }
        }
    }
}
