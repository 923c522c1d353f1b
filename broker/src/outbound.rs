//! A connection's outbound queue, bounded in frames and counted in bytes.
//!
//! Every frame for a client goes through one queue that the connection's writer task drains.
//! A client that stops reading its socket must not stall anyone else nor pin unbounded
//! memory: dispatchers never wait on a congested queue ([`Outbound::is_congested`]: full, or
//! holding more than [`MAX_QUEUED_BYTES`]), they pick another consumer and come back, and the
//! writer closes a connection whose socket takes no bytes for a whole stall period.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{SendError, TrySendError};

/// Bytes queued for one connection past which dispatchers send it nothing more (a message
/// already under way may overshoot it by its own size).
pub const MAX_QUEUED_BYTES: usize = 16 << 20;

/// The sending side; cheap to clone (every consumer of the connection holds one).
#[derive(Debug, Clone)]
pub struct Outbound {
    tx: mpsc::Sender<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// The writer's side.
#[derive(Debug)]
pub struct OutboundRx {
    rx: mpsc::Receiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// A queue of at most `frames` frames.
pub fn channel(frames: usize) -> (Outbound, OutboundRx) {
    let (tx, rx) = mpsc::channel(frames);
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outbound {
            tx,
            queued: queued.clone(),
        },
        OutboundRx { rx, queued },
    )
}

impl Outbound {
    /// Queues a frame, waiting for room (control answers: bounded by the client's requests).
    pub async fn send(&self, frame: Bytes) -> Result<(), SendError<Bytes>> {
        let n = frame.len();
        self.queued.fetch_add(n, Ordering::SeqCst);
        self.tx.send(frame).await.inspect_err(|_| {
            self.queued.fetch_sub(n, Ordering::SeqCst);
        })
    }

    /// Queues a frame if there is room now.
    pub fn try_send(&self, frame: Bytes) -> Result<(), TrySendError<Bytes>> {
        let n = frame.len();
        self.queued.fetch_add(n, Ordering::SeqCst);
        self.tx.try_send(frame).inspect_err(|_| {
            self.queued.fetch_sub(n, Ordering::SeqCst);
        })
    }

    /// Whether a dispatcher should pass this connection by for now: its queue is full or
    /// holds more than [`MAX_QUEUED_BYTES`] (the client reads slower than it is sent to).
    pub fn is_congested(&self) -> bool {
        self.tx.capacity() == 0 || self.queued.load(Ordering::SeqCst) > MAX_QUEUED_BYTES
    }

    /// Bytes queued and not yet written to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Resolves once the writer is gone (the connection is closing).
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

impl OutboundRx {
    /// The next frame (`None`: every sender is gone).
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.rx.try_recv().ok()
    }

    /// Records that `n` bytes of taken frames reached the socket.
    pub fn written(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_are_counted_until_written() {
        let (tx, mut rx) = channel(4);
        assert!(!tx.is_congested());
        tx.try_send(Bytes::from(vec![0u8; MAX_QUEUED_BYTES + 1]))
            .unwrap();
        assert!(tx.is_congested(), "over the byte limit");
        let f = rx.recv().await.unwrap();
        rx.written(f.len());
        assert_eq!(tx.queued_bytes(), 0);
        for _ in 0..4 {
            tx.try_send(Bytes::from_static(b"x")).unwrap();
        }
        assert!(tx.is_congested(), "no frame slot left");
        assert!(tx.try_send(Bytes::from_static(b"x")).is_err());
        assert_eq!(tx.queued_bytes(), 4, "a refused frame is not counted");
    }
}
