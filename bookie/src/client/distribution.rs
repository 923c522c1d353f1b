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
    fn quorum_validation() {
        assert!(check_quorums(3, 2, 2).is_ok());
        assert!(check_quorums(1, 1, 1).is_ok());
        assert!(check_quorums(2, 3, 2).is_err());
        assert!(check_quorums(3, 2, 3).is_err());
        assert!(check_quorums(3, 2, 0).is_err());
    }
}
