//! The managed ledger's write-side state machine: which ledger takes the next append, when to
//! roll over, and how a ledger is ended (closed by its writer, or recovered when the writer
//! failed or its close did). Pure: it takes events and returns actions; the writer task
//! ([`super::writer`]) does the I/O. Unit-tested without a runtime.

use std::time::{Duration, Instant};

use common::LedgerId;

/// When a ledger is full.
#[derive(Debug, Clone, Copy)]
pub struct RollLimits {
    /// Entries per ledger.
    pub max_entries: u64,
    /// Bytes per ledger.
    pub max_bytes: u64,
    /// Age of a ledger.
    pub max_age: Duration,
}

/// Where the write side is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// A ledger takes appends.
    Writing {
        ledger: LedgerId,
        appended: u64,
        bytes: u64,
        opened: Instant,
        /// An add to it failed: no more appends go to it.
        failed: bool,
    },
    /// The last ledger has no writer but is still OPEN in its metadata (its close failed, or
    /// it was never closed): it must be recovered before a new one is created.
    Unsealed(LedgerId),
    /// No open ledger (the last one is closed or there is none): the next append creates one.
    Sealed,
    /// Ownership was lost: nothing may be written or created again; the new owner recovers.
    Abandoned,
    /// Closed gracefully (the topic was unloaded).
    Closed,
}

/// How the previous ledger is ended before a new one is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Close it through its writer (every pending add first).
    Close(LedgerId),
    /// Recover it: fence, and let the bookies decide its last entry.
    Recover(LedgerId),
    /// Nothing to end.
    Nothing,
}

/// What to do with an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Write it to this ledger.
    Write(LedgerId),
    /// End the previous ledger, create a new one, then ask again.
    Roll(End),
    /// Refuse it.
    Refuse(Refusal),
}

/// Why an append is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Ownership was lost.
    NotOwner,
    /// The managed ledger was closed.
    Closed,
}

/// The write side of one managed ledger.
#[derive(Debug)]
pub struct Rollover {
    limits: RollLimits,
    state: State,
}

impl Rollover {
    /// A managed ledger whose `ledger` was just created for writes.
    pub fn new(limits: RollLimits, ledger: LedgerId, now: Instant) -> Self {
        let mut r = Rollover {
            limits,
            state: State::Sealed,
        };
        r.created(ledger, now);
        r
    }

    /// A managed ledger that takes no appends (a terminated one).
    pub fn closed(limits: RollLimits) -> Self {
        Rollover {
            limits,
            state: State::Closed,
        }
    }

    /// What the next append does.
    pub fn next(&self, now: Instant) -> Next {
        match &self.state {
            State::Abandoned => Next::Refuse(Refusal::NotOwner),
            State::Closed => Next::Refuse(Refusal::Closed),
            State::Sealed => Next::Roll(End::Nothing),
            State::Unsealed(l) => Next::Roll(End::Recover(*l)),
            State::Writing { ledger, failed, .. } if *failed => Next::Roll(End::Recover(*ledger)),
            State::Writing {
                ledger,
                appended,
                bytes,
                opened,
                ..
            } => {
                if *appended >= self.limits.max_entries
                    || *bytes >= self.limits.max_bytes
                    || now.saturating_duration_since(*opened) >= self.limits.max_age
                {
                    Next::Roll(End::Close(*ledger))
                } else {
                    Next::Write(*ledger)
                }
            }
        }
    }

    /// The ledger being written, if any.
    pub fn current(&self) -> Option<LedgerId> {
        match self.state {
            State::Writing { ledger, .. } | State::Unsealed(ledger) => Some(ledger),
            _ => None,
        }
    }

    /// An append of `len` bytes went to the current ledger.
    pub fn appended(&mut self, len: u64) {
        if let State::Writing {
            appended, bytes, ..
        } = &mut self.state
        {
            *appended += 1;
            *bytes += len;
        }
    }

    /// An add to `ledger` failed (a late report about an older ledger changes nothing).
    pub fn add_failed(&mut self, failed_ledger: LedgerId) {
        if let State::Writing { ledger, failed, .. } = &mut self.state
            && *ledger == failed_ledger
        {
            *failed = true;
        }
    }

    /// The writer refused an append to the current ledger (it stopped): recover it.
    pub fn writer_gone(&mut self) {
        if let State::Writing { ledger, .. } = self.state {
            self.state = State::Unsealed(ledger);
        }
    }

    /// The previous ledger was closed or recovered: its end is recorded.
    pub fn ended(&mut self) {
        if matches!(self.state, State::Writing { .. } | State::Unsealed(_)) {
            self.state = State::Sealed;
        }
    }

    /// Ending the previous ledger failed: it stays to be recovered by the next attempt.
    pub fn end_failed(&mut self, ledger: LedgerId) {
        if matches!(self.state, State::Writing { .. } | State::Unsealed(_)) {
            self.state = State::Unsealed(ledger);
        }
    }

    /// A new ledger was created and is on the ledger list.
    pub fn created(&mut self, ledger: LedgerId, now: Instant) {
        if matches!(self.state, State::Sealed) {
            self.state = State::Writing {
                ledger,
                appended: 0,
                bytes: 0,
                opened: now,
                failed: false,
            };
        }
    }

    /// Ownership was lost.
    pub fn abandon(&mut self) {
        self.state = State::Abandoned;
    }

    /// The managed ledger is being closed; returns the ledger to close, if one is open.
    pub fn close(&mut self) -> End {
        let end = match self.state {
            State::Writing { ledger, failed, .. } if !failed => End::Close(ledger),
            State::Writing { ledger, .. } | State::Unsealed(ledger) => End::Recover(ledger),
            _ => End::Nothing,
        };
        if !matches!(self.state, State::Abandoned) {
            self.state = State::Closed;
        }
        end
    }

    /// Entries and bytes appended to the open ledger (zeros when none is open).
    pub fn written(&self) -> (u64, u64) {
        match self.state {
            State::Writing {
                appended, bytes, ..
            } => (appended, bytes),
            _ => (0, 0),
        }
    }

    /// Whether a ledger is open for writes.
    pub fn is_writing(&self) -> bool {
        matches!(self.state, State::Writing { .. })
    }

    /// Whether ownership was lost.
    pub fn is_abandoned(&self) -> bool {
        self.state == State::Abandoned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L1: LedgerId = LedgerId(1);
    const L2: LedgerId = LedgerId(2);

    fn limits() -> RollLimits {
        RollLimits {
            max_entries: 3,
            max_bytes: 100,
            max_age: Duration::from_secs(60),
        }
    }

    #[test]
    fn appends_go_to_the_open_ledger_until_it_is_full() {
        let t0 = Instant::now();
        let mut r = Rollover::new(limits(), L1, t0);
        for _ in 0..3 {
            assert_eq!(r.next(t0), Next::Write(L1));
            r.appended(1);
        }
        assert_eq!(r.next(t0), Next::Roll(End::Close(L1)));
        r.ended();
        assert_eq!(r.next(t0), Next::Roll(End::Nothing));
        r.created(L2, t0);
        assert_eq!(r.next(t0), Next::Write(L2));
    }

    #[test]
    fn size_and_age_roll_too() {
        let t0 = Instant::now();
        let mut r = Rollover::new(limits(), L1, t0);
        r.appended(100);
        assert_eq!(r.next(t0), Next::Roll(End::Close(L1)));
        let r = Rollover::new(limits(), L1, t0);
        assert_eq!(
            r.next(t0 + Duration::from_secs(61)),
            Next::Roll(End::Close(L1))
        );
    }

    #[test]
    fn a_failed_add_makes_the_next_append_recover_the_ledger() {
        let t0 = Instant::now();
        let mut r = Rollover::new(limits(), L1, t0);
        r.add_failed(LedgerId(99));
        assert_eq!(
            r.next(t0),
            Next::Write(L1),
            "a stale report changes nothing"
        );
        r.add_failed(L1);
        assert_eq!(r.next(t0), Next::Roll(End::Recover(L1)));
    }

    #[test]
    fn a_failed_end_is_retried_by_recovery_before_any_new_ledger() {
        let t0 = Instant::now();
        let mut r = Rollover::new(limits(), L1, t0);
        for _ in 0..3 {
            r.appended(1);
        }
        assert_eq!(r.next(t0), Next::Roll(End::Close(L1)));
        r.end_failed(L1);
        assert_eq!(r.next(t0), Next::Roll(End::Recover(L1)));
        r.end_failed(L1);
        assert_eq!(r.next(t0), Next::Roll(End::Recover(L1)));
        r.ended();
        // Creating failed (no bookies): the next append tries again, with nothing to end.
        assert_eq!(r.next(t0), Next::Roll(End::Nothing));
        assert_eq!(r.current(), None);
    }

    #[test]
    fn a_stopped_writer_is_recovered() {
        let t0 = Instant::now();
        let mut r = Rollover::new(limits(), L1, t0);
        r.writer_gone();
        assert_eq!(r.next(t0), Next::Roll(End::Recover(L1)));
    }

    #[test]
    fn abandoned_refuses_everything_and_never_creates() {
        let t0 = Instant::now();
        let mut r = Rollover::new(limits(), L1, t0);
        r.abandon();
        assert_eq!(r.next(t0), Next::Refuse(Refusal::NotOwner));
        r.created(L2, t0);
        assert_eq!(r.next(t0), Next::Refuse(Refusal::NotOwner));
        assert_eq!(r.close(), End::Nothing, "the new owner recovers, not us");
        assert!(r.is_abandoned());
    }

    #[test]
    fn close_ends_the_open_ledger_the_right_way() {
        let t0 = Instant::now();
        let mut r = Rollover::new(limits(), L1, t0);
        assert_eq!(r.close(), End::Close(L1));
        assert_eq!(r.next(t0), Next::Refuse(Refusal::Closed));
        let mut r = Rollover::new(limits(), L1, t0);
        r.add_failed(L1);
        assert_eq!(r.close(), End::Recover(L1));
        let mut r = Rollover::new(limits(), L1, t0);
        r.appended(1);
        r.ended();
        assert_eq!(r.close(), End::Nothing);
    }
}
