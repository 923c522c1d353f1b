//! [`LedgerWriter`]: appends to an OPEN ledger, striped over its ensemble.
//!
//! One task owns the ledger's write state (pending adds, LAC, ensemble, streams to bookies);
//! the handle sends it commands. Entry `e` goes to its write set; it completes once Qa bookies
//! of the write set acknowledged it **and** every lower entry completed, so completions reach
//! the caller strictly in entry order and the LAC only advances over a contiguous prefix.
//!
//! A bookie error or timeout triggers an **ensemble change**: a replacement bookie (not in the
//! ensemble) is chosen, a new segment starting at LAC + 1 is compare-and-set into the ledger
//! metadata, and every unconfirmed entry whose write set includes the replaced position is
//! resent. If the CAS finds the ledger no longer OPEN, a recoverer took it: every pending add
//! fails with `Fenced`, as it does when a bookie answers FENCED.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{EntryId, LedgerId};
use meta::{LedgerStore, MetaError, Version};
use proto::bookie::{AddBatch, AddRequest, StatusCode};
use proto::meta::{LedgerMetadata, LedgerState};
use rand::seq::SliceRandom;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::ClientConfig;
use super::bookies::Bookies;
use super::distribution::{replace_in_segments, write_set};
use super::error::{ClientError, Result};
use crate::entry::Entry;

/// The writer side of one ledger. Dropping it without [`LedgerWriter::close`] leaves the
/// ledger OPEN (a reader recovers it).
#[derive(Debug)]
pub struct LedgerWriter {
    id: LedgerId,
    tx: mpsc::Sender<Cmd>,
}

/// An add in flight: await it for the entry id, once the entry is confirmed.
#[derive(Debug)]
pub struct PendingAdd(oneshot::Receiver<Result<EntryId>>, LedgerId);

impl std::future::Future for PendingAdd {
    type Output = Result<EntryId>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let id = self.1;
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Closed(id))))
    }
}

enum Cmd {
    Add {
        payload: Bytes,
        reply: oneshot::Sender<Result<EntryId>>,
    },
    Close {
        reply: oneshot::Sender<Result<LedgerMetadata>>,
    },
}

impl LedgerWriter {
    pub(super) fn spawn(state: WriterState) -> Self {
        let id = state.id;
        let (tx, rx) = mpsc::channel(state.window.max(1));
        tokio::spawn(state.run(rx));
        LedgerWriter { id, tx }
    }

    /// The ledger id.
    pub fn id(&self) -> LedgerId {
        self.id
    }

    /// Queues an add (waiting while the window is full) and returns a future for its
    /// confirmation. Adds are ordered as `append` was called.
    pub async fn append(&self, payload: Bytes) -> Result<PendingAdd> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Add { payload, reply })
            .await
            .map_err(|_| ClientError::Closed(self.id))?;
        Ok(PendingAdd(rx, self.id))
    }

    /// Adds one entry and waits for its confirmation.
    pub async fn add(&self, payload: Bytes) -> Result<EntryId> {
        self.append(payload).await?.await
    }

    /// Waits for pending adds, then closes the ledger (metadata CLOSED with its last entry
    /// and length). Returns the final metadata.
    pub async fn close(self) -> Result<LedgerMetadata> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Close { reply })
            .await
            .map_err(|_| ClientError::Closed(self.id))?;
        rx.await.map_err(|_| ClientError::Closed(self.id))?
    }
}

struct Pending {
    entry: Entry,
    acked: BTreeSet<usize>,
    reply: Option<oneshot::Sender<Result<EntryId>>>,
    sent_at: Instant,
}

enum Event {
    Response {
        index: usize,
        generation: u64,
        status: StatusCode,
        entry: u64,
        message: String,
    },
    StreamEnded {
        index: usize,
        generation: u64,
        reason: String,
    },
}

/// Everything the writer task owns.
pub(super) struct WriterState {
    pub id: LedgerId,
    pub meta: LedgerMetadata,
    pub version: Version,
    pub ledgers: Arc<LedgerStore>,
    pub bookies: Arc<Bookies>,
    pub master_key: Bytes,
    pub add_timeout: Duration,
    pub window: usize,
    ensemble: Vec<String>,
    streams: Vec<Option<(u64, mpsc::Sender<AddBatch>)>>,
    generation: u64,
    events_tx: mpsc::Sender<Event>,
    events_rx: Option<mpsc::Receiver<Event>>,
    next_entry: u64,
    length: u64,
    lac: i64,
    lac_length: u64,
    pending: BTreeMap<u64, Pending>,
    failed: Option<ClientError>,
    /// Per ensemble position: retries of the same bookie so far (reset by an ack), and when
    /// the next one is due. While one is due, that position is not failed again.
    retries: Vec<u32>,
    retry_at: Vec<Option<Instant>>,
    retry_limit: u32,
}

impl WriterState {
    pub(super) fn new(
        id: LedgerId,
        meta: LedgerMetadata,
        version: Version,
        ledgers: Arc<LedgerStore>,
        bookies: Arc<Bookies>,
        master_key: Bytes,
        config: &ClientConfig,
    ) -> Self {
        let ensemble = meta
            .segments
            .last()
            .map(|s| s.bookies.clone())
            .unwrap_or_default();
        let (events_tx, events_rx) = mpsc::channel(4096);
        WriterState {
            id,
            streams: vec![None; ensemble.len()],
            retries: vec![0; ensemble.len()],
            retry_at: vec![None; ensemble.len()],
            retry_limit: config.same_bookie_retries,
            ensemble,
            meta,
            version,
            ledgers,
            bookies,
            master_key,
            add_timeout: config.add_timeout,
            window: config.window,
            generation: 0,
            events_tx,
            events_rx: Some(events_rx),
            next_entry: 0,
            length: 0,
            lac: -1,
            lac_length: 0,
            pending: BTreeMap::new(),
            failed: None,
        }
    }

    fn e(&self) -> usize {
        self.meta.ensemble_size as usize
    }
    fn qw(&self) -> usize {
        self.meta.write_quorum as usize
    }
    fn qa(&self) -> usize {
        self.meta.ack_quorum as usize
    }

    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>) {
        let mut events = self.events_rx.take().expect("events receiver");
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut closing: Option<oneshot::Sender<Result<LedgerMetadata>>> = None;
        loop {
            if let Some(reply) = closing.take() {
                if self.pending.is_empty() || self.failed.is_some() {
                    let res = self.close_metadata().await;
                    self.fail_all(ClientError::Closed(self.id));
                    let _ = reply.send(res);
                    return;
                }
                closing = Some(reply);
            }
            let accepting = closing.is_none() && self.pending.len() < self.window;
            tokio::select! {
                cmd = cmds.recv(), if accepting => match cmd {
                    Some(Cmd::Add { payload, reply }) => {
                        let mut batch = vec![(payload, reply)];
                        // Take whatever else is queued: one message per bookie for all of it.
                        while batch.len() + self.pending.len() < self.window {
                            match cmds.try_recv() {
                                Ok(Cmd::Add { payload, reply }) => batch.push((payload, reply)),
                                Ok(Cmd::Close { reply }) => {
                                    closing = Some(reply);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        self.on_adds(batch).await;
                    }
                    Some(Cmd::Close { reply }) => closing = Some(reply),
                    None => {
                        self.fail_all(ClientError::Closed(self.id));
                        return;
                    }
                },
                Some(ev) = events.recv() => self.on_event(ev).await,
                _ = tick.tick() => {
                    self.check_timeouts().await;
                    self.retry_due().await;
                }
            }
        }
    }

    async fn on_adds(&mut self, batch: Vec<(Bytes, oneshot::Sender<Result<EntryId>>)>) {
        if let Some(e) = &self.failed {
            for (_, reply) in batch {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        let mut per_bookie: Vec<Vec<u64>> = vec![Vec::new(); self.e()];
        for (payload, reply) in batch {
            let id = self.next_entry;
            self.next_entry += 1;
            self.length += payload.len() as u64;
            let entry = Entry::new(self.id, EntryId(id), self.lac, self.length, payload);
            for i in write_set(id, self.e(), self.qw()) {
                per_bookie[i].push(id);
            }
            self.pending.insert(
                id,
                Pending {
                    entry,
                    acked: BTreeSet::new(),
                    reply: Some(reply),
                    sent_at: Instant::now(),
                },
            );
        }
        for (index, ids) in per_bookie.into_iter().enumerate() {
            if !ids.is_empty() {
                self.send(index, &ids).await;
            }
        }
    }

    /// Sends entries to the bookie at ensemble `index`, opening its stream if needed.
    async fn send(&mut self, index: usize, ids: &[u64]) {
        let requests: Vec<AddRequest> = ids
            .iter()
            .filter_map(|id| self.pending.get(id))
            .map(|p| AddRequest {
                request_id: p.entry.entry.0,
                entry: Some(p.entry.to_proto()),
                master_key: self.master_key.clone(),
                recovery: false,
            })
            .collect();
        if requests.is_empty() {
            return;
        }
        if self.streams[index].is_none()
            && let Err(e) = self.open_stream(index).await
        {
            tracing::warn!(ledger = %self.id, bookie = %self.ensemble[index], error = %e, "cannot open add stream");
            self.bookie_failed(index).await;
            return;
        }
        let sent = match &self.streams[index] {
            Some((_, tx)) => tx.send(AddBatch { requests }).await.is_ok(),
            None => false,
        };
        if !sent {
            self.bookie_failed(index).await;
        }
    }

    async fn open_stream(&mut self, index: usize) -> Result<()> {
        let bookie = self.ensemble[index].clone();
        let mut client = self.bookies.client(&bookie).await?;
        let (tx, rx) = mpsc::channel::<AddBatch>(1024);
        let call = tokio::time::timeout(
            self.add_timeout,
            client.add_entries(ReceiverStream::new(rx)),
        )
        .await;
        let mut responses = match call {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                self.bookies.forget(&bookie);
                return Err(ClientError::Bookie {
                    bookie,
                    status: StatusCode::Io,
                    message: status.to_string(),
                });
            }
            Err(_) => {
                self.bookies.forget(&bookie);
                return Err(ClientError::Timeout(format!(
                    "opening an add stream to {bookie}"
                )));
            }
        };
        self.generation += 1;
        let generation = self.generation;
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let reason = loop {
                match responses.message().await {
                    Ok(Some(batch)) => {
                        for r in batch.responses {
                            let ev = Event::Response {
                                index,
                                generation,
                                status: r.status(),
                                entry: r.entry_id,
                                message: r.message,
                            };
                            if events.send(ev).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break "stream closed".to_owned(),
                    Err(s) => break s.to_string(),
                }
            };
            let _ = events
                .send(Event::StreamEnded {
                    index,
                    generation,
                    reason,
                })
                .await;
        });
        self.streams[index] = Some((generation, tx));
        Ok(())
    }

    fn current(&self, index: usize, generation: u64) -> bool {
        matches!(&self.streams[index], Some((g, _)) if *g == generation)
    }

    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Response {
                index,
                generation,
                status,
                entry,
                message,
            } => {
                if !self.current(index, generation) {
                    return;
                }
                match status {
                    StatusCode::Ok => {
                        self.retries[index] = 0;
                        if let Some(p) = self.pending.get_mut(&entry) {
                            p.acked.insert(index);
                        }
                        self.complete_in_order();
                    }
                    StatusCode::Fenced | StatusCode::Unauthorized => {
                        tracing::warn!(ledger = %self.id, bookie = %self.ensemble[index], ?status, "ledger fenced by a recoverer");
                        self.fail_all(ClientError::Fenced { ledger: self.id });
                    }
                    _ => {
                        tracing::warn!(ledger = %self.id, bookie = %self.ensemble[index], ?status, message, "bookie refused an add");
                        self.bookie_failed(index).await;
                    }
                }
            }
            Event::StreamEnded {
                index,
                generation,
                reason,
            } => {
                if !self.current(index, generation) {
                    return;
                }
                self.streams[index] = None;
                let needed = self.pending.iter().any(|(e, p)| {
                    !p.acked.contains(&index) && write_set(*e, self.e(), self.qw()).contains(&index)
                });
                if needed {
                    tracing::warn!(ledger = %self.id, bookie = %self.ensemble[index], reason, "add stream to bookie ended");
                    self.bookie_failed(index).await;
                }
            }
        }
    }

    /// Completes adds in entry order while the head of the queue has Qa acks.
    fn complete_in_order(&mut self) {
        let qa = self.qa();
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().acked.len() < qa {
                break;
            }
            let (id, mut p) = entry.remove_entry();
            self.lac = id as i64;
            self.lac_length = p.entry.length;
            if let Some(reply) = p.reply.take() {
                let _ = reply.send(Ok(EntryId(id)));
            }
        }
    }

    async fn check_timeouts(&mut self) {
        if self.failed.is_some() {
            return;
        }
        let now = Instant::now();
        let mut late = BTreeSet::new();
        for (e, p) in &self.pending {
            if now.duration_since(p.sent_at) < self.add_timeout {
                break;
            }
            for i in write_set(*e, self.e(), self.qw()) {
                if !p.acked.contains(&i) && self.retry_at[i].is_none() {
                    late.insert(i);
                }
            }
        }
        for index in late {
            tracing::warn!(ledger = %self.id, bookie = %self.ensemble[index], timeout = ?self.add_timeout, "add timed out");
            self.bookie_failed(index).await;
        }
    }

    /// Ensemble change: replaces the bookie at `index`.
    async fn bookie_failed(&mut self, index: usize) {
        if self.failed.is_some() || self.retry_at[index].is_some() {
            return;
        }
        let failed = self.ensemble[index].clone();
        self.bookies.forget(&failed);
        self.streams[index] = None;
        let writable = match self.bookies.writable().await {
            Ok(w) => w,
            Err(e) => return self.fail_all(e),
        };
        let failed_is_registered = writable.contains(&failed);
        let mut candidates: Vec<String> = writable
            .into_iter()
            .filter(|b| !self.ensemble.contains(b))
            .collect();
        candidates.shuffle(&mut rand::rng());
        let Some(replacement) = candidates.pop() else {
            if failed_is_registered && self.retries[index] < self.retry_limit {
                // No spare bookie, but this one is still registered: a slow bookie (or a
                // dropped stream) rather than a dead one. Try it again later — a timer event
                // (`retry_due`), so the task keeps serving — a bounded number of times.
                let attempt = self.retries[index];
                self.retries[index] += 1;
                let delay = (Duration::from_millis(200) * 2u32.pow(attempt.min(4)))
                    .min(Duration::from_secs(2));
                tracing::warn!(ledger = %self.id, bookie = failed, attempt = attempt + 1, ?delay, "no replacement bookie; retrying the same one");
                self.retry_at[index] = Some(Instant::now() + delay);
                return;
            }
            // Every writable bookie is already in the ensemble: no replacement.
            return self.fail_all(ClientError::NotEnoughBookies {
                needed: self.e(),
                available: self.ensemble.len() - 1,
            });
        };
        let first = (self.lac + 1) as u64;
        let mut new_ensemble = self.ensemble.clone();
        new_ensemble[index] = replacement.clone();
        loop {
            let mut meta = self.meta.clone();
            meta.segments = replace_in_segments(&meta.segments, first, index, &replacement);
            match self
                .ledgers
                .update(self.id, meta.clone(), self.version)
                .await
            {
                Ok(v) => {
                    self.meta = meta;
                    self.version = v;
                    break;
                }
                Err(MetaError::BadVersion { .. }) => match self.ledgers.get(self.id).await {
                    Ok((m, v)) if m.state == LedgerState::Open as i32 => {
                        self.meta = m;
                        self.version = v;
                    }
                    Ok(_) => return self.fail_all(ClientError::Fenced { ledger: self.id }),
                    Err(e) => return self.fail_all(e.into()),
                },
                Err(e) => return self.fail_all(e.into()),
            }
        }
        tracing::info!(ledger = %self.id, failed, replacement, first_entry = first, "ensemble changed");
        metrics::counter!("ledger_ensemble_changes_total").increment(1);
        self.ensemble = new_ensemble;
        let now = Instant::now();
        let mut resend = Vec::new();
        for (e, p) in self.pending.iter_mut() {
            p.acked.remove(&index);
            p.sent_at = now;
            if write_set(
                *e,
                self.meta.ensemble_size as usize,
                self.meta.write_quorum as usize,
            )
            .contains(&index)
            {
                resend.push(*e);
            }
        }
        Box::pin(self.send(index, &resend)).await;
    }

    /// Resends to every position whose same-bookie retry is due (see `bookie_failed`).
    async fn retry_due(&mut self) {
        let now = Instant::now();
        for index in 0..self.retry_at.len() {
            if self.retry_at[index].is_none_or(|at| at > now) {
                continue;
            }
            self.retry_at[index] = None;
            let (e, qw) = (self.e(), self.qw());
            let mut resend = Vec::new();
            for (entry, p) in self.pending.iter_mut() {
                if !p.acked.contains(&index) && write_set(*entry, e, qw).contains(&index) {
                    p.sent_at = now;
                    resend.push(*entry);
                }
            }
            self.send(index, &resend).await;
        }
    }

    fn fail_all(&mut self, e: ClientError) {
        if self.failed.is_none() {
            self.failed = Some(e.clone());
        }
        for (_, mut p) in std::mem::take(&mut self.pending) {
            if let Some(reply) = p.reply.take() {
                let _ = reply.send(Err(e.clone()));
            }
        }
        self.streams.iter_mut().for_each(|s| *s = None);
    }

    /// CAS the metadata to CLOSED at the LAC.
    async fn close_metadata(&mut self) -> Result<LedgerMetadata> {
        if let Some(ClientError::Fenced { .. }) = &self.failed {
            return Err(ClientError::Fenced { ledger: self.id });
        }
        loop {
            let mut meta = self.meta.clone();
            meta.state = LedgerState::Closed as i32;
            meta.last_entry_id = self.lac;
            meta.length = self.lac_length;
            match self
                .ledgers
                .update(self.id, meta.clone(), self.version)
                .await
            {
                Ok(v) => {
                    self.meta = meta.clone();
                    self.version = v;
                    return Ok(meta);
                }
                Err(MetaError::BadVersion { .. }) => {
                    let (m, v) = self.ledgers.get(self.id).await?;
                    if m.state == LedgerState::Open as i32 {
                        self.meta = m;
                        self.version = v;
                        continue;
                    }
                    if m.state == LedgerState::Closed as i32 && m.last_entry_id == self.lac {
                        return Ok(m);
                    }
                    return Err(ClientError::Fenced { ledger: self.id });
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}
