//! Where entries go and when enough bookies answered: pure functions, no I/O, unit-tested.
//!
//! Round-robin striping (BookKeeper's `RoundRobinDistributionSchedule`): entry `e` of a
//! segment with ensemble size E goes to the bookies at indices `(e + k) mod E`, k < Qw.
//! There are E distinct write quorums; quorum `q` is indices `q, q+1, …, q+Qw−1 (mod E)`.

/// Ensemble indices of the write set of `entry`.
pub fn write_set(entry: u64, ensemble: usize, write_quorum: usize) -> Vec<usize> {
    (0..write_quorum)
        .map(|k| ((entry % ensemble as u64) as usize + k) % ensemble)
        .collect()
}

/// Whether `entry`'s write set contains ensemble index `bookie`.
pub fn stores(entry: u64, bookie: usize, ensemble: usize, write_quorum: usize) -> bool {
    write_set(entry, ensemble, write_quorum).contains(&bookie)
}

/// Quorum coverage: true when every write quorum has at least `Qw − Qa + 1` members in
/// `answered` (ensemble indices that gave a valid answer). Then no ack quorum can still form
/// without one of them — the condition for fencing and for declaring an entry absent.
pub fn covered(answered: &[bool], write_quorum: usize, ack_quorum: usize) -> bool {
    let e = answered.len();
    let need = write_quorum - ack_quorum + 1;
    (0..e).all(|q| (0..write_quorum).filter(|k| answered[(q + k) % e]).count() >= need)
}

/// Answers needed from an entry's write set before declaring it absent.
pub fn absent_threshold(write_quorum: usize, ack_quorum: usize) -> usize {
    write_quorum - ack_quorum + 1
}

/// What recovery concludes about one entry from the answers of its write set so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryVerdict {
    /// Some bookie has a valid copy: the entry exists and must be re-added.
    Found,
    /// Enough bookies (Qw − Qa + 1) say they lack it: no ack quorum can hold it.
    Absent,
    /// Not decided yet: wait for more answers.
    Undecided,
    /// Every bookie answered and neither holds: recovery cannot decide (too many failures).
    Unknown,
}

/// Decides an entry during recovery from `found` / `absent` / `failed` answer counts out of a
/// write set of `write_quorum` bookies. A single copy is enough to keep the entry (it may have
/// been acknowledged); absence needs `Qw − Qa + 1` answers, since with fewer the writer could
/// still have reached Qa on the bookies that did not answer.
pub fn entry_verdict(
    found: usize,
    absent: usize,
    failed: usize,
    write_quorum: usize,
    ack_quorum: usize,
) -> EntryVerdict {
    if found > 0 {
        EntryVerdict::Found
    } else if absent >= absent_threshold(write_quorum, ack_quorum) {
        EntryVerdict::Absent
    } else if found + absent + failed >= write_quorum {
        EntryVerdict::Unknown
    } else {
        EntryVerdict::Undecided
    }
}

/// The segment list after replacing the bookie at ensemble position `index` for entries from
/// `first` on: the last segment is rewritten if it starts at `first` (no entry of it was
/// confirmed with the old ensemble), else a new segment is appended.
pub fn replace_in_segments(
    segments: &[proto::meta::Segment],
    first: u64,
    index: usize,
    replacement: &str,
) -> Vec<proto::meta::Segment> {
    let mut out = segments.to_vec();
    let mut bookies = out.last().map(|s| s.bookies.clone()).unwrap_or_default();
    if let Some(slot) = bookies.get_mut(index) {
        *slot = replacement.to_owned();
    }
    match out.last_mut() {
        Some(last) if last.first_entry_id == first => last.bookies = bookies,
        _ => out.push(proto::meta::Segment {
            first_entry_id: first,
            bookies,
        }),
    }
    out
}

/// Validates E ≥ Qw ≥ Qa ≥ 1.
pub fn check_quorums(
    ensemble: usize,
    write_quorum: usize,
    ack_quorum: usize,
) -> Result<(), String> {
    if ack_quorum == 0 || write_quorum < ack_quorum || ensemble < write_quorum {
        return Err(format!(
            "need E >= Qw >= Qa >= 1, got E={ensemble} Qw={write_quorum} Qa={ack_quorum}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn striping_is_round_robin() {
        assert_eq!(write_set(0, 3, 2), vec![0, 1]);
        assert_eq!(write_set(1, 3, 2), vec![1, 2]);
        assert_eq!(write_set(2, 3, 2), vec![2, 0]);
        assert_eq!(write_set(5, 5, 5), vec![0, 1, 2, 3, 4]);
        assert!(stores(2, 0, 3, 2));
        assert!(!stores(1, 0, 3, 2));
        // Every bookie stores Qw/E of the entries.
        let n = (0..300).filter(|e| stores(*e, 1, 3, 2)).count();
        assert_eq!(n, 200);
    }

    #[test]
    fn coverage_needs_every_write_quorum() {
        // E=3 Qw=2 Qa=2: one answer per quorum; quorums {0,1},{1,2},{2,0}.
        assert!(!covered(&[true, false, false], 2, 2));
        assert!(covered(&[true, false, true], 2, 2));
        assert!(covered(&[false, true, true], 2, 2));
        // E=3 Qw=3 Qa=2: two answers per quorum (the single quorum is everyone).
        assert!(!covered(&[true, false, false], 3, 2));
        assert!(covered(&[true, true, false], 3, 2));
        // E=Qw=Qa: any one answer covers.
        assert!(covered(&[false, true, false], 3, 3));
        // E=1.
        assert!(covered(&[true], 1, 1));
        assert!(!covered(&[false], 1, 1));
    }

    #[test]
    fn recovery_verdicts() {
        use EntryVerdict::*;
        // Qw=2 Qa=2: one "absent" suffices (the writer needed both).
        assert_eq!(entry_verdict(0, 1, 0, 2, 2), Absent);
        // Qw=3 Qa=2: two "absent" needed; one absent + one failed is not enough yet.
        assert_eq!(entry_verdict(0, 1, 1, 3, 2), Undecided);
        assert_eq!(entry_verdict(0, 2, 0, 3, 2), Absent);
        assert_eq!(entry_verdict(0, 1, 2, 3, 2), Unknown);
        // Any copy wins, even against absences.
        assert_eq!(entry_verdict(1, 2, 0, 3, 2), Found);
        // Qw=Qa=3: a single absence proves the writer never got all three.
        assert_eq!(entry_verdict(0, 1, 0, 3, 3), Absent);
    }

    #[test]
    fn ensemble_change_segments() {
        use proto::meta::Segment;
        let seg = |first, b: &[&str]| Segment {
            first_entry_id: first,
            bookies: b.iter().map(|s| s.to_string()).collect(),
        };
        let start = vec![seg(0, &["a", "b", "c"])];
        // Entries confirmed up to 9: the new segment starts at 10.
        let next = replace_in_segments(&start, 10, 1, "d");
        assert_eq!(
            next,
            vec![seg(0, &["a", "b", "c"]), seg(10, &["a", "d", "c"])]
        );
        // A second failure before anything new was confirmed rewrites that segment.
        let again = replace_in_segments(&next, 10, 0, "e");
        assert_eq!(
            again,
            vec![seg(0, &["a", "b", "c"]), seg(10, &["e", "d", "c"])]
        );
        // Nothing confirmed at all: the first segment itself changes.
        assert_eq!(
            replace_in_segments(&start, 0, 2, "x"),
            vec![seg(0, &["a", "b", "x"])]
        );
    }

    #[test]
    fn quorum_validation() {
        assert!(check_quorums(3, 2, 2).is_ok());
        assert!(check_quorums(1, 1, 1).is_ok());
        assert!(check_quorums(2, 3, 2).is_err());
        assert!(check_quorums(3, 2, 3).is_err());
        assert!(check_quorums(3, 2, 0).is_err());
    }
}
