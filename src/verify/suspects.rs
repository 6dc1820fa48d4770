//! The suspect set: keys found different once, kept for the re-check rounds
//! that tell a real difference from a key caught mid-write.
//!
//! Verify reads source and destination while the sync may still be applying
//! writes, so one reading proves nothing. Each suspect keeps what was seen
//! last, not the value: the kind and detail of the difference and 64-bit
//! digests of both sides. A re-check reads the key again:
//!
//! * equal now (or gone from the source): resolved, forgotten;
//! * still different, both digests as before, and first seen so at least
//!   `stable_for` ago: **confirmed**, a difference that the sync is not
//!   about to fix (neither side moved);
//! * still different but a digest changed: the key is being written; it
//!   stays a suspect with the new digests and a new "since".
//!
//! What is still a suspect after the last round was written during the
//! re-checks: **unsettled**, neither proven equal nor proven different.
//!
//! The set is bounded ([`SuspectSet::new`]'s `capacity`): beyond it, a
//! difference is counted (`overflow`) but neither kept nor re-checked. The
//! set is pure bookkeeping: times are passed in, so it is tested without
//! clocks or servers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::DiffKind;

/// Where a key lives: the shard (index into the task's sources) and the
/// source DB.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct KeyAt {
    pub shard: usize,
    pub db: u32,
    pub key: Bytes,
}

/// One reading of a key that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub kind: DiffKind,
    pub detail: String,
    /// Digest of the source's value (and TTL) as read.
    pub source_digest: u64,
    /// Digest of the destination's value (and TTL) as read.
    pub dest_digest: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Suspect {
    pub seen: Seen,
    /// When the key was first seen with these digests.
    pub since: Instant,
    /// Re-checks that found a digest changed.
    pub changes: u32,
}

/// What a re-check did to a suspect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Equal now, or the key left the source: not a difference.
    Resolved,
    /// Different, and stable on both sides: a difference.
    Confirmed(Seen),
    /// Still moving, or not yet stable for long enough.
    Pending,
}

#[derive(Debug)]
pub(crate) struct SuspectSet {
    pending: HashMap<KeyAt, Suspect>,
    capacity: usize,
    /// Differences seen once but not kept: the set was full.
    overflow: u64,
}

impl SuspectSet {
    pub(crate) fn new(capacity: usize) -> SuspectSet {
        SuspectSet { pending: HashMap::new(), capacity, overflow: 0 }
    }

    /// Records a difference seen at `now`. False when the set is full: the
    /// difference is only counted.
    pub(crate) fn add(&mut self, at: KeyAt, seen: Seen, now: Instant) -> bool {
        if self.pending.len() >= self.capacity && !self.pending.contains_key(&at) {
            self.overflow += 1;
            return false;
        }
        self.pending.insert(at, Suspect { seen, since: now, changes: 0 });
        true
    }

    /// Applies a re-check of `at` taken at `now`: `reading` is `None` when
    /// the key is equal now (or gone from the source).
    pub(crate) fn recheck(&mut self, at: &KeyAt, reading: Option<Seen>, now: Instant, stable_for: Duration) -> Verdict {
        let Some(suspect) = self.pending.get_mut(at) else {
            return Verdict::Resolved;
        };
        let Some(seen) = reading else {
            self.pending.remove(at);
            return Verdict::Resolved;
        };
        let same = seen.source_digest == suspect.seen.source_digest
            && seen.dest_digest == suspect.seen.dest_digest
            && seen.kind == suspect.seen.kind;
        if !same {
            suspect.seen = seen;
            suspect.since = now;
            suspect.changes += 1;
            return Verdict::Pending;
        }
        if now.saturating_duration_since(suspect.since) >= stable_for {
            self.pending.remove(at);
            return Verdict::Confirmed(seen);
        }
        Verdict::Pending
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub(crate) fn overflow(&self) -> u64 {
        self.overflow
    }

    /// The keys to re-check, grouped by shard and DB, each group sorted.
    pub(crate) fn keys_by_shard_db(&self) -> Vec<((usize, u32), Vec<Bytes>)> {
        let mut groups: std::collections::BTreeMap<(usize, u32), Vec<Bytes>> = Default::default();
        for at in self.pending.keys() {
            groups.entry((at.shard, at.db)).or_default().push(at.key.clone());
        }
        groups
            .into_iter()
            .map(|(g, mut keys)| {
                keys.sort_unstable();
                (g, keys)
            })
            .collect()
    }

    /// What is left: the unsettled keys, sorted.
    pub(crate) fn into_remaining(self) -> Vec<(KeyAt, Suspect)> {
        let mut left: Vec<_> = self.pending.into_iter().collect();
        left.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(key: &str) -> KeyAt {
        KeyAt { shard: 0, db: 0, key: Bytes::copy_from_slice(key.as_bytes()) }
    }

    fn seen(kind: DiffKind, src: u64, dst: u64) -> Seen {
        Seen { kind, detail: format!("{kind}: {src}/{dst}"), source_digest: src, dest_digest: dst }
    }

    const STABLE: Duration = Duration::from_secs(1);

    #[test]
    fn a_key_equal_on_recheck_is_resolved() {
        let t0 = Instant::now();
        let mut set = SuspectSet::new(10);
        assert!(set.add(at("k"), seen(DiffKind::Value, 1, 2), t0));
        assert_eq!(set.recheck(&at("k"), None, t0 + Duration::from_millis(500), STABLE), Verdict::Resolved);
        assert!(set.is_empty());
        // An unknown key is nothing to report either.
        assert_eq!(set.recheck(&at("other"), Some(seen(DiffKind::Value, 1, 2)), t0, STABLE), Verdict::Resolved);
    }

    #[test]
    fn a_stable_difference_is_confirmed_only_after_stable_for() {
        let t0 = Instant::now();
        let mut set = SuspectSet::new(10);
        set.add(at("k"), seen(DiffKind::Missing, 1, 0), t0);
        let again = seen(DiffKind::Missing, 1, 0);
        assert_eq!(
            set.recheck(&at("k"), Some(again.clone()), t0 + Duration::from_millis(500), STABLE),
            Verdict::Pending
        );
        assert_eq!(
            set.recheck(&at("k"), Some(again.clone()), t0 + Duration::from_millis(1500), STABLE),
            Verdict::Confirmed(again)
        );
        assert!(set.is_empty());
    }

    #[test]
    fn a_key_written_between_rounds_stays_pending_and_ends_unsettled() {
        let t0 = Instant::now();
        let mut set = SuspectSet::new(10);
        set.add(at("hot"), seen(DiffKind::Value, 1, 0), t0);
        for (round, digest) in [(1u64, 2u64), (2, 3), (3, 4), (4, 5)] {
            let now = t0 + Duration::from_secs(2 * round);
            assert_eq!(set.recheck(&at("hot"), Some(seen(DiffKind::Value, digest, 0)), now, STABLE), Verdict::Pending);
        }
        let left = set.into_remaining();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].1.changes, 4);
        assert_eq!(left[0].1.seen.source_digest, 5);
    }

    #[test]
    fn a_destination_still_moving_is_not_confirmed() {
        // The sync is still applying writes to this key: the source is
        // stable, the destination changes; that is lag, not a difference.
        let t0 = Instant::now();
        let mut set = SuspectSet::new(10);
        set.add(at("k"), seen(DiffKind::Value, 7, 1), t0);
        let later = t0 + Duration::from_secs(3);
        assert_eq!(set.recheck(&at("k"), Some(seen(DiffKind::Value, 7, 2)), later, STABLE), Verdict::Pending);
        // Once it stops moving (and still differs), it is confirmed.
        let stable = seen(DiffKind::Value, 7, 2);
        assert_eq!(
            set.recheck(&at("k"), Some(stable.clone()), later + Duration::from_secs(1), STABLE),
            Verdict::Confirmed(stable)
        );
    }

    #[test]
    fn a_change_of_kind_restarts_the_clock() {
        let t0 = Instant::now();
        let mut set = SuspectSet::new(10);
        set.add(at("k"), seen(DiffKind::Missing, 1, 0), t0);
        let now = t0 + Duration::from_secs(5);
        assert_eq!(set.recheck(&at("k"), Some(seen(DiffKind::Type, 1, 0)), now, STABLE), Verdict::Pending);
    }

    #[test]
    fn the_set_is_bounded_and_counts_what_it_drops() {
        let t0 = Instant::now();
        let mut set = SuspectSet::new(2);
        assert!(set.add(at("a"), seen(DiffKind::Value, 1, 0), t0));
        assert!(set.add(at("b"), seen(DiffKind::Value, 1, 0), t0));
        assert!(!set.add(at("c"), seen(DiffKind::Value, 1, 0), t0));
        // A key already kept is updated, not counted twice.
        assert!(set.add(at("a"), seen(DiffKind::Ttl, 1, 0), t0));
        assert_eq!((set.len(), set.overflow()), (2, 1));
    }

    #[test]
    fn keys_are_grouped_by_shard_and_db() {
        let t0 = Instant::now();
        let mut set = SuspectSet::new(10);
        for (shard, db, key) in [(1, 0, "z"), (0, 1, "b"), (1, 0, "a"), (0, 0, "c")] {
            set.add(KeyAt { shard, db, key: Bytes::from(key) }, seen(DiffKind::Value, 1, 0), t0);
        }
        let groups = set.keys_by_shard_db();
        let shape: Vec<String> = groups.iter().map(|((shard, db), keys)| format!("{shard}/{db}: {keys:?}")).collect();
        assert_eq!(shape, [r#"0/0: [b"c"]"#, r#"0/1: [b"b"]"#, r#"1/0: [b"a", b"z"]"#]);
    }
}
