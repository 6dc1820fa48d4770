//! The key accounting of a full copy: every key a snapshot holds ends up
//! written on the destination — its last command confirmed by the
//! destination, not merely sent — or skipped for a counted reason.
//!
//! Three counts meet here. The parser counts the keys it read, per DB, and
//! keeps what the snapshot's `RESIZEDB` opcodes declared each DB held when
//! it was taken ([`SnapshotTally`]); the consumer counts the tool's own keys
//! it left out; the writer counts, batch by batch, the keys it confirmed and
//! the ones that already existed ([`KeyAccount::add`]). When the snapshot is
//! applied, [`KeyAccount::close`] checks that the first equals the sum of
//! the others, before the checkpoint may call the copy whole. A difference
//! means keys went missing between the source and the destination: the
//! shard fails with the numbers, and the checkpoint still says "copying",
//! so the next run copies the shard again.

use serde::Serialize;

use super::consumer::SnapshotTally;
use crate::dest::ApplyReport;

/// Snapshot keys not written, by reason: the `keys_skipped` object of the
/// `--json` progress records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KeysSkipped {
    /// `conflict = "intercept"`: the key already existed on the destination
    /// (another shard holds it, or the destination did), and was not
    /// overwritten. Each has its own alert.
    pub collision: u64,
    /// `conflict = "skip"`: the destination's key was kept.
    pub kept: u64,
    /// In a DB the task does not copy.
    pub filtered_db: u64,
    /// The tool's own keys (heartbeat, checkpoints): never copied.
    pub own: u64,
    /// Empty collections, which Redis drops when loading too.
    pub empty: u64,
    /// Holding a module's value, left out by `sync.modules = "skip"`.
    pub module: u64,
}

impl KeysSkipped {
    pub fn total(&self) -> u64 {
        self.collision + self.kept + self.filtered_db + self.own + self.empty + self.module
    }

    /// "3 collisions, 1 tool's own key", or "none".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            (self.collision, "collision", "collisions"),
            (self.kept, "kept on the destination", "kept on the destination"),
            (self.filtered_db, "in a DB not copied", "in DBs not copied"),
            (self.own, "tool's own key", "tool's own keys"),
            (self.empty, "empty collection", "empty collections"),
            (self.module, "module value", "module values"),
        ]
        .iter()
        .filter(|(n, ..)| *n > 0)
        .map(|(n, one, many)| format!("{} {}", crate::human::group_digits(*n), if *n == 1 { one } else { many }))
        .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// A snapshot's keys that do not add up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountingError {
    #[error(
        "the full copy is incomplete: the snapshot held {read} keys, but only {accounted} are accounted for \
         ({written} written and confirmed by the destination; skipped: {skipped}): {missing} keys did not reach \
         the destination. The checkpoint still marks this copy unfinished, so `run` copies the shard again in full; \
         please report this with the log"
    )]
    Unaccounted { read: String, accounted: String, written: String, skipped: String, missing: String },
    #[error(
        "the snapshot's header says db {db} held {declared} keys when it was taken, but {read} were read from it: \
         the snapshot arrived incomplete. The checkpoint still marks this copy unfinished, so `run` copies the \
         shard again in full; please report this with the log"
    )]
    Declared { db: u64, declared: String, read: String },
}

/// The confirmed side of a full copy's accounting, added up batch by batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyAccount {
    /// Keys whose last command the destination confirmed.
    pub written: u64,
    pub skipped: KeysSkipped,
}

/// Before Redis 4.0 (RDB 8) a snapshot left out keys that had expired,
/// while `RESIZEDB` still counted them: fewer keys than declared is then
/// no proof of a loss.
const FIRST_RDB_WITH_EXPIRED_KEYS: u32 = 8;

impl KeyAccount {
    /// Adds what one apply attempt of a snapshot batch confirmed.
    pub fn add(&mut self, report: &ApplyReport) {
        self.written += report.keys_written;
        self.skipped.collision += report.collisions.len() as u64;
        self.skipped.kept += report.kept;
    }

    /// Closes the account of an applied snapshot: `tally` is what it held,
    /// `filtered` the keys the rewrite left out for their DB.
    pub fn close(&mut self, tally: &SnapshotTally, filtered: u64, modules: u64) -> Result<(), AccountingError> {
        use crate::human::group_digits as n;
        self.skipped.own = tally.own;
        self.skipped.empty = tally.read.empty;
        self.skipped.filtered_db = filtered;
        self.skipped.module = modules;
        for (&db, &declared) in &tally.read.declared {
            let read = tally.read.per_db.get(&db).copied().unwrap_or(0);
            let fewer_allowed = tally.version < FIRST_RDB_WITH_EXPIRED_KEYS && read < declared;
            if read != declared && !fewer_allowed {
                return Err(AccountingError::Declared { db, declared: n(declared), read: n(read) });
            }
        }
        let accounted = self.written + self.skipped.total();
        if accounted != tally.read.keys {
            return Err(AccountingError::Unaccounted {
                read: n(tally.read.keys),
                accounted: n(accounted),
                written: n(self.written),
                skipped: self.skipped.describe(),
                missing: n(tally.read.keys.abs_diff(accounted)),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::Collision;
    use crate::rdb::KeyTally;
    use bytes::Bytes;
    use std::collections::BTreeMap;

    fn tally(keys: u64, empty: u64, own: u64, declared: &[(u64, u64)], per_db: &[(u64, u64)]) -> SnapshotTally {
        SnapshotTally {
            read: KeyTally {
                keys,
                empty,
                per_db: per_db.iter().copied().collect::<BTreeMap<_, _>>(),
                declared: declared.iter().copied().collect::<BTreeMap<_, _>>(),
            },
            own,
            version: 10,
        }
    }

    fn report(written: u64, collisions: usize, kept: u64) -> ApplyReport {
        let c = Collision { db: 0, key: Bytes::from_static(b"k"), offset: 0, uncertain: false };
        ApplyReport { keys_written: written, collisions: vec![c; collisions], kept, ..ApplyReport::default() }
    }

    #[test]
    fn every_key_written_or_skipped_for_a_reason_closes_the_account() {
        let mut a = KeyAccount::default();
        a.add(&report(90, 2, 0));
        a.add(&report(3, 0, 0));
        // 100 read: 93 written, 2 collisions, 1 own, 1 empty, 3 in a DB not copied.
        let t = tally(100, 1, 1, &[(0, 97), (5, 3)], &[(0, 97), (5, 3)]);
        assert_eq!(a.close(&t, 3, 0), Ok(()));
        assert_eq!(a.skipped, KeysSkipped { collision: 2, kept: 0, filtered_db: 3, own: 1, empty: 1, module: 0 });
        assert_eq!(a.skipped.describe(), "2 collisions, 3 in DBs not copied, 1 tool's own key, 1 empty collection");
    }

    #[test]
    fn a_key_neither_written_nor_skipped_fails_with_the_numbers() {
        let mut a = KeyAccount::default();
        a.add(&report(1_000, 0, 0));
        let e = a.close(&tally(1_712, 0, 0, &[], &[(0, 1_712)]), 0, 0).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("held 1,712 keys, but only 1,000 are accounted for"), "{text}");
        assert!(text.contains("712 keys did not reach"), "{text}");
        assert!(text.contains("skipped: none"), "{text}");
    }

    #[test]
    fn fewer_keys_read_than_declared_is_a_loss_from_redis_4() {
        let mut a = KeyAccount::default();
        a.add(&report(9, 0, 0));
        let t = tally(9, 0, 0, &[(0, 10)], &[(0, 9)]);
        assert!(matches!(a.close(&t, 0, 0), Err(AccountingError::Declared { db: 0, .. })));
        // Redis 3.2 (RDB 7) left expired keys out of its snapshots.
        let old = SnapshotTally { version: 7, ..t.clone() };
        assert_eq!(a.close(&old, 0, 0), Ok(()));
        // More than declared is never right.
        let more = SnapshotTally { version: 7, ..tally(11, 0, 0, &[(0, 10)], &[(0, 11)]) };
        assert!(a.close(&more, 0, 0).is_err());
    }

    #[test]
    fn skip_mode_kept_keys_count() {
        let mut a = KeyAccount::default();
        a.add(&report(4, 0, 6));
        assert_eq!(a.close(&tally(10, 0, 0, &[], &[(0, 10)]), 0, 0), Ok(()));
        assert_eq!(a.skipped.kept, 6);
    }
}
