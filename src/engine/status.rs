//! How the parts of a shard report into its shared [`ShardSnapshot`]: [`set`]
//! changes it under its lock, [`alert`] adds a line to its alerts (what the
//! dashboard's event log and the headless output show).
//!
//! Both the shard's loop (`shard`) and its destination side (`applier`)
//! report; neither owns these, so that neither needs the other for them.

use std::sync::Mutex;

use super::snapshot::{Alert, ShardSnapshot};
use crate::clock::now_ms;

/// Alerts kept in a snapshot.
const ALERTS_KEPT: usize = 200;

/// Changes the shared snapshot (nothing when its lock is poisoned).
pub(super) fn set<F: FnOnce(&mut ShardSnapshot)>(shared: &Mutex<ShardSnapshot>, f: F) {
    if let Ok(mut s) = shared.lock() {
        f(&mut s);
    }
}

/// Adds an alert stamped now, at source `offset` when it concerns one.
pub(super) fn alert(shared: &Mutex<ShardSnapshot>, offset: Option<u64>, message: String) {
    set(shared, |s| {
        s.alerts_total += 1;
        s.alerts.push(Alert { ts_ms: now_ms(), offset, message });
        // Bounded: the newest alerts matter; the log keeps them all.
        if s.alerts.len() > ALERTS_KEPT {
            s.alerts.remove(0);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_counted_and_bounded() {
        let shared = Mutex::new(ShardSnapshot::new("s1"));
        for i in 0..ALERTS_KEPT + 5 {
            alert(&shared, Some(i as u64), format!("alert {i}"));
        }
        let s = shared.lock().unwrap();
        assert_eq!(s.alerts_total, (ALERTS_KEPT + 5) as u64);
        assert_eq!(s.alerts.len(), ALERTS_KEPT);
        assert_eq!(s.alerts[0].message, "alert 5");
        assert!(s.alerts[0].ts_ms > 0);
    }
}
