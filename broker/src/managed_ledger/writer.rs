//! The managed ledger's write side as two tasks, so no lock is held across a roll or a CAS and
//! a roll never stalls the connections that publish to the topic (their appends wait in the
//! queue; their receipts come later):
//!
//! - the **write task** owns the ledger list record (and its version), the open ledger's
//!   writer and the [`Rollover`] state machine; it takes appends, trims and the close in queue
//!   order, and does the I/O the state machine asks for (close or recover the old ledger,
//!   create and CAS the new one);
//! - the **completion task** awaits the adds in the order they were written (the ledger
//!   client completes them in entry order), then caches each entry, advances the last
//!   durable position and answers the appender — whether or not the appender still waits, so a
//!   producer that went away cannot hide a durable entry from consumers. Once ownership is
//!   lost it acknowledges nothing more.

use std::sync::Arc;
use std::time::Instant;

use bookie::client::{CreateOptions, LedgerClient, LedgerWriter, PendingAdd};
use bytes::Bytes;
use common::{LedgerId, Position};
use meta::records::encode;
use meta::{MetaError, PutCondition, Version};
use proto::meta::{LedgerMetadata, ManagedLedgerEntry, ManagedLedgerInfo};
use tokio::sync::{mpsc, oneshot};

use super::Inner;
use super::rollover::{End, Next, Refusal, Rollover};
use crate::error::{BrokerError, Result};

/// Appends queued ahead of the write task (backpressure on publishers beyond that).
pub(super) const QUEUE: usize = 1024;

/// What the write task is asked to do.
pub(super) enum Cmd {
    /// Append an entry; the reply is its durable position.
    Append {
        payload: Bytes,
        reply: oneshot::Sender<Result<Position>>,
        hook: Option<super::DurableHook>,
    },
    /// Remove closed ledgers at or before a mark from the list; the reply names them (the
    /// caller deletes them from the bookies).
    Trim {
        mark: Position,
        retention: super::Retention,
        reply: oneshot::Sender<Result<Vec<LedgerId>>>,
    },
    /// Close the open ledger (graceful unload); appends are refused afterwards.
    Close { reply: oneshot::Sender<Result<()>> },
    /// Close the open ledger and mark the list terminated; the reply is the last entry.
    Terminate {
        reply: oneshot::Sender<Result<Option<Position>>>,
    },
    /// Report the ledger list as the write task knows it.
    Stats {
        reply: oneshot::Sender<super::LedgerListStats>,
    },
}

/// An add in flight, for the completion task.
struct Completion {
    ledger: LedgerId,
    pending: PendingAdd,
    payload: Bytes,
    reply: oneshot::Sender<Result<Position>>,
    hook: Option<super::DurableHook>,
}

/// Creates a ledger for `topic` and CASes it onto the list; `BadVersion` means another
/// broker took the topic.
pub(super) async fn new_ledger(
    inner: &Inner,
    mut info: ManagedLedgerInfo,
    version: Option<Version>,
) -> Result<(LedgerWriter, ManagedLedgerInfo, Version)> {
    let writer = inner
        .client
        .create(topic_ledger_options(
            quorums(inner).await?,
            "managed-ledger",
            &inner.name,
        ))
        .await?;
    info.ledgers.push(ManagedLedgerEntry {
        ledger_id: writer.id().0,
        entries: 0,
        size: 0,
        closed_ms: 0,
    });
    let cond = version.map_or(PutCondition::Absent, PutCondition::Version);
    let mut rec = info.clone();
    match meta::cas::put_checked(inner.store.as_ref(), &inner.key, encode(&mut rec), cond).await {
        Ok(v) => Ok((writer, info, v)),
        Err(MetaError::BadVersion { .. } | MetaError::AlreadyExists { .. }) => {
            Err(BrokerError::NotOwner(inner.name.clone()))
        }
        Err(e) => Err(e.into()),
    }
}

/// How a ledger of `topic` is created: its quorums, and custom metadata naming the
/// application, the `component` that wrote it and the topic (what `ledgers metadata` shows).
pub(crate) fn topic_ledger_options(
    (ensemble, write_quorum, ack_quorum): (usize, usize, usize),
    component: &'static str,
    topic: &str,
) -> CreateOptions {
    CreateOptions {
        ensemble,
        write_quorum,
        ack_quorum,
        password: Bytes::new(),
        custom: [
            ("application".to_owned(), Bytes::from_static(b"magnetar")),
            (
                "component".to_owned(),
                Bytes::from_static(component.as_bytes()),
            ),
            ("topic".to_owned(), Bytes::copy_from_slice(topic.as_bytes())),
        ]
        .into(),
    }
}

/// The quorums of the topic's next ledger: its namespace's persistence policy (read from the
/// store at each ledger, so a changed policy applies from the next roll), else the broker's.
async fn quorums(inner: &Inner) -> Result<(usize, usize, usize)> {
    let c = &inner.config;
    let defaults = (c.ensemble, c.write_quorum, c.ack_quorum);
    let Some(ns) = &c.policies else {
        return Ok(defaults);
    };
    let namespace = crate::ownership::bundles::namespace_of(&inner.name);
    Ok(match ns.namespace(namespace).await? {
        Some((policies, _)) => match policies.persistence {
            Some(p) if p.ensemble > 0 => (
                p.ensemble as usize,
                p.write_quorum as usize,
                p.ack_quorum as usize,
            ),
            _ => defaults,
        },
        None => defaults,
    })
}

/// Starts both tasks for a managed ledger whose `writer` was just created (`None`: a
/// terminated one, which takes no append); returns the queue.
pub(super) fn spawn(
    inner: Arc<Inner>,
    info: ManagedLedgerInfo,
    version: Version,
    writer: Option<LedgerWriter>,
) -> mpsc::Sender<Cmd> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let (done_tx, done_rx) = mpsc::channel(QUEUE);
    let (failed_tx, failed_rx) = mpsc::unbounded_channel();
    let limits = inner.config.limits();
    let roll = match &writer {
        Some(w) => Rollover::new(limits, w.id(), Instant::now()),
        None => Rollover::closed(limits),
    };
    let task = WriteTask {
        roll,
        writer,
        info,
        version,
        completions: done_tx,
        inner: inner.clone(),
        entries_added: 0,
    };
    tokio::spawn(task.run(rx, failed_rx));
    tokio::spawn(complete(inner, done_rx, failed_tx));
    tx
}

/// What the write task owns.
struct WriteTask {
    inner: Arc<Inner>,
    roll: Rollover,
    writer: Option<LedgerWriter>,
    /// The ledger list as stored, and its version (the task is its only writer).
    info: ManagedLedgerInfo,
    version: Version,
    completions: mpsc::Sender<Completion>,
    /// Appends written since the topic was loaded.
    entries_added: u64,
}

impl WriteTask {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Cmd>,
        mut failed: mpsc::UnboundedReceiver<LedgerId>,
    ) {
        loop {
            tokio::select! {
                biased;
                _ = self.inner.abandoned.cancelled(), if !self.roll.is_abandoned() => {
                    // Dropping the writer leaves the ledger OPEN: the new owner recovers it.
                    self.roll.abandon();
                    self.writer = None;
                }
                Some(ledger) = failed.recv() => self.roll.add_failed(ledger),
                cmd = rx.recv() => match cmd {
                    None => return,
                    Some(Cmd::Append { payload, reply, hook }) => {
                        self.append(payload, reply, hook).await
                    }
                    Some(Cmd::Trim { mark, retention, reply }) => {
                        let _ = reply.send(self.trim(mark, retention).await);
                    }
                    Some(Cmd::Close { reply }) => {
                        let _ = reply.send(self.close().await);
                    }
                    Some(Cmd::Terminate { reply }) => {
                        let _ = reply.send(self.terminate().await);
                    }
                    Some(Cmd::Stats { reply }) => {
                        let _ = reply.send(self.stats());
                    }
                },
            }
        }
    }

    async fn append(
        &mut self,
        payload: Bytes,
        reply: oneshot::Sender<Result<Position>>,
        hook: Option<super::DurableHook>,
    ) {
        // Every way out answers `reply`; the hook hears of every failure too.
        let fail = |reply: oneshot::Sender<Result<Position>>,
                    hook: Option<super::DurableHook>,
                    e: BrokerError| {
            if let Some(h) = hook {
                h(Err(()));
            }
            let _ = reply.send(Err(e));
        };
        // A roll takes at most: close (fails) → recover → create; then the write.
        for _ in 0..4 {
            match self.roll.next(Instant::now()) {
                Next::Refuse(r) => {
                    fail(reply, hook, self.refusal(r));
                    return;
                }
                Next::Roll(end) => {
                    if let Err(e) = self.roll_over(end).await {
                        fail(reply, hook, e);
                        return;
                    }
                }
                Next::Write(ledger) => {
                    let Some(writer) = self.writer.as_ref() else {
                        self.roll.writer_gone();
                        continue;
                    };
                    let len = payload.len() as u64;
                    match writer.append(payload.clone()).await {
                        Ok(pending) => {
                            self.roll.appended(len);
                            self.entries_added += 1;
                            let c = Completion {
                                ledger,
                                pending,
                                payload,
                                reply,
                                hook,
                            };
                            if let Err(mpsc::error::SendError(c)) = self.completions.send(c).await {
                                fail(c.reply, c.hook, BrokerError::ShuttingDown);
                            }
                        }
                        Err(e) => {
                            self.roll.writer_gone();
                            self.writer = None;
                            fail(reply, hook, e.into());
                        }
                    }
                    return;
                }
            }
        }
        fail(reply, hook, BrokerError::NotOwner(self.inner.name.clone()));
    }

    fn refusal(&self, r: Refusal) -> BrokerError {
        match r {
            Refusal::NotOwner => BrokerError::NotOwner(self.inner.name.clone()),
            Refusal::Closed if self.inner.terminated.get().is_some() => {
                BrokerError::TopicTerminated(self.inner.name.clone())
            }
            Refusal::Closed => BrokerError::ShuttingDown,
        }
    }

    /// Ends the previous ledger as the state machine says, then creates the next one. A close
    /// that fails is not an error: the state machine turns it into a recovery.
    async fn roll_over(&mut self, end: End) -> Result<()> {
        match end {
            End::Close(ledger) => {
                let closed = match self.writer.take() {
                    Some(w) => w.close().await,
                    None => Err(bookie::client::ClientError::Closed(ledger)),
                };
                match closed {
                    Ok(m) => self.ended(&m),
                    Err(e) => {
                        tracing::warn!(topic = self.inner.name, %ledger, error = %e, "close failed; recovering the ledger");
                        self.roll.end_failed(ledger);
                        return Ok(());
                    }
                }
            }
            End::Recover(ledger) => {
                self.writer = None;
                match self.inner.client.recover(ledger, b"").await {
                    Ok(m) => self.ended(&m),
                    Err(e) => {
                        self.roll.end_failed(ledger);
                        return Err(e.into());
                    }
                }
            }
            End::Nothing => {}
        }
        match new_ledger(&self.inner, self.info.clone(), Some(self.version)).await {
            Ok((writer, info, version)) => {
                tracing::debug!(topic = self.inner.name, ledger = %writer.id(), "managed ledger rolled over");
                self.roll.created(writer.id(), Instant::now());
                self.writer = Some(writer);
                self.info = info;
                self.version = version;
                Ok(())
            }
            Err(e @ BrokerError::NotOwner(_)) => {
                tracing::warn!(
                    topic = self.inner.name,
                    "ledger list changed under us: another broker owns the topic"
                );
                self.roll.abandon();
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Records how a ledger ended: its entries in the list record and the closed list.
    fn ended(&mut self, m: &LedgerMetadata) {
        self.roll.ended();
        self.record_end(m);
    }

    /// The ended ledger's entries, size and close time in the list, and the ledger in the
    /// closed list when it has entries.
    fn record_end(&mut self, m: &LedgerMetadata) {
        let entries = (m.last_entry_id + 1) as u64;
        if let Some(e) = self
            .info
            .ledgers
            .iter_mut()
            .find(|l| l.ledger_id == m.ledger_id)
        {
            e.entries = entries;
            e.size = m.length;
            e.closed_ms = super::now_ms();
        }
        let mut closed = self.inner.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        if entries > 0 && !closed.iter().any(|(l, _)| l.0 == m.ledger_id) {
            closed.push((LedgerId(m.ledger_id), entries));
        }
    }

    fn stats(&self) -> super::LedgerListStats {
        let (entries, bytes) = self.roll.written();
        let current = self.roll.current();
        super::LedgerListStats {
            ledgers: self
                .info
                .ledgers
                .iter()
                .map(|l| {
                    if Some(LedgerId(l.ledger_id)) == current {
                        (LedgerId(l.ledger_id), entries, bytes)
                    } else {
                        (LedgerId(l.ledger_id), l.entries, l.size)
                    }
                })
                .collect(),
            current: current.filter(|_| self.roll.is_writing()),
            entries_added: self.entries_added,
            state: if self.inner.terminated.get().is_some() {
                "Terminated"
            } else if self.roll.is_abandoned() {
                "Fenced"
            } else if self.roll.is_writing() {
                "LedgerOpened"
            } else {
                "ClosedLedger"
            },
        }
    }

    /// The consumed ledgers (wholly at or before `mark`, never the open one) that retention
    /// does not keep, oldest first: as Pulsar trims, a ledger goes when it is older than the
    /// retention time or the topic is over the retention size without it, and the first
    /// ledger kept keeps every later one.
    fn doomed(&self, mark: Position, retention: super::Retention) -> Vec<LedgerId> {
        let current = self.roll.current();
        let consumed: Vec<LedgerId> = {
            let closed = self.inner.ledgers.lock().unwrap_or_else(|e| e.into_inner());
            closed
                .iter()
                .filter(|(l, n)| *l < mark.ledger || (*l == mark.ledger && mark.entry.0 + 1 >= *n))
                .filter(|(l, _)| Some(*l) != current)
                .map(|(l, _)| *l)
                .collect()
        };
        let (_, open_bytes) = self.roll.written();
        let total: u64 = self.info.ledgers.iter().map(|l| l.size).sum::<u64>() + open_bytes;
        let now = super::now_ms();
        let mut deleted = 0u64;
        let mut doomed = Vec::new();
        for id in consumed {
            let Some(l) = self.info.ledgers.iter().find(|l| l.ledger_id == id.0) else {
                continue;
            };
            let expired = retention
                .time
                .is_some_and(|t| now.saturating_sub(l.closed_ms) >= t.as_millis() as u64);
            let over = retention.size.is_some_and(|s| total - deleted > s);
            if !(expired || over) {
                break;
            }
            deleted += l.size;
            doomed.push(id);
        }
        doomed
    }

    async fn trim(&mut self, mark: Position, retention: super::Retention) -> Result<Vec<LedgerId>> {
        if self.roll.is_abandoned() {
            return Err(BrokerError::NotOwner(self.inner.name.clone()));
        }
        let doomed = self.doomed(mark, retention);
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let mut info = self.info.clone();
        info.ledgers
            .retain(|l| !doomed.contains(&LedgerId(l.ledger_id)));
        self.store_info(info).await?;
        self.inner
            .ledgers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(l, _)| !doomed.contains(l));
        Ok(doomed)
    }

    /// Closes (or recovers) the open ledger, records its end, and CASes the list with
    /// `terminated` set; then no append is taken again.
    async fn terminate(&mut self) -> Result<Option<Position>> {
        if let Some(last) = self.inner.terminated.get() {
            return Ok(*last);
        }
        if self.roll.is_abandoned() {
            return Err(BrokerError::NotOwner(self.inner.name.clone()));
        }
        let ended = match self.roll.close() {
            End::Close(_) => match self.writer.take() {
                Some(w) => Some(w.close().await?),
                None => None,
            },
            End::Recover(ledger) => {
                self.writer = None;
                Some(self.inner.client.recover(ledger, b"").await?)
            }
            End::Nothing => None,
        };
        if let Some(m) = ended {
            self.record_end(&m);
        }
        let mut info = self.info.clone();
        let empty: Vec<LedgerId> = info
            .ledgers
            .iter()
            .filter(|l| l.entries == 0)
            .map(|l| LedgerId(l.ledger_id))
            .collect();
        info.ledgers.retain(|l| l.entries > 0);
        info.terminated = true;
        self.store_info(info).await?;
        let last = self
            .info
            .ledgers
            .last()
            .map(|l| Position::new(LedgerId(l.ledger_id), common::EntryId(l.entries - 1)));
        let _ = self.inner.terminated.set(last);
        // The ledger opened for writes and never written: nothing refers to it now.
        for id in empty {
            if let Err(e) = self.inner.client.delete(id).await {
                tracing::warn!(topic = self.inner.name, ledger = %id, error = %e, "cannot delete an empty ledger");
            }
        }
        tracing::info!(topic = self.inner.name, ?last, "managed ledger terminated");
        Ok(last)
    }

    /// Replaces the ledger list record (CAS on the version this task wrote last); a
    /// conflict means another broker took the topic: this one stops writing.
    async fn store_info(&mut self, info: ManagedLedgerInfo) -> Result<()> {
        let mut rec = info.clone();
        match meta::cas::put_checked(
            self.inner.store.as_ref(),
            &self.inner.key,
            encode(&mut rec),
            PutCondition::Version(self.version),
        )
        .await
        {
            Ok(v) => {
                self.info = info;
                self.version = v;
                Ok(())
            }
            Err(MetaError::BadVersion { .. }) => {
                self.roll.abandon();
                Err(BrokerError::NotOwner(self.inner.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn close(&mut self) -> Result<()> {
        match self.roll.close() {
            End::Close(ledger) => {
                if let Some(w) = self.writer.take() {
                    let m = w.close().await?;
                    tracing::debug!(topic = self.inner.name, %ledger, last = m.last_entry_id, "ledger closed");
                }
            }
            End::Recover(ledger) => {
                self.writer = None;
                self.inner.client.recover(ledger, b"").await?;
            }
            End::Nothing => {}
        }
        Ok(())
    }
}

/// The completion task: see the module doc.
async fn complete(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<Completion>,
    failed: mpsc::UnboundedSender<LedgerId>,
) {
    let mut reported: Option<LedgerId> = None;
    while let Some(c) = rx.recv().await {
        let result = match c.pending.await {
            Ok(_) if inner.abandoned.is_cancelled() => {
                Err(BrokerError::NotOwner(inner.name.clone()))
            }
            Ok(entry) => {
                let pos = Position::new(c.ledger, entry);
                inner.durable(pos, c.payload);
                if let Some(h) = c.hook {
                    h(Ok(pos));
                }
                let _ = c.reply.send(Ok(pos));
                continue;
            }
            Err(e) => {
                if reported != Some(c.ledger) {
                    reported = Some(c.ledger);
                    let _ = failed.send(c.ledger);
                }
                Err(e.into())
            }
        };
        if let Some(h) = c.hook {
            h(Err(()));
        }
        let _ = c.reply.send(result);
    }
}

/// Reads the ledger list record's ledgers' ends: recovers (fences and closes) every ledger a
/// previous owner may still write, drops empty ones.
pub(super) async fn fence_previous(
    client: &LedgerClient,
    info: &mut ManagedLedgerInfo,
) -> Result<()> {
    for l in info.ledgers.iter_mut() {
        let id = LedgerId(l.ledger_id);
        match client.ledgers().get(id).await {
            Ok((m, _)) if m.state == proto::meta::LedgerState::Closed as i32 => {
                l.entries = (m.last_entry_id + 1) as u64;
                l.size = m.length;
            }
            Ok(_) => {
                let m = client.recover(id, b"").await?;
                l.entries = (m.last_entry_id + 1) as u64;
                l.size = m.length;
            }
            Err(MetaError::NotFound { .. }) => l.entries = 0,
            Err(e) => return Err(e.into()),
        }
    }
    info.ledgers.retain(|l| l.entries > 0);
    // A ledger whose close time is unknown (closed by recovery here, or recorded before the
    // field existed) counts as closed now, so retention by time never deletes it early.
    for l in info.ledgers.iter_mut().filter(|l| l.closed_ms == 0) {
        l.closed_ms = super::now_ms();
    }
    Ok(())
}
