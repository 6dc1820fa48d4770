//! The tasks a running task keeps beside its shards (heartbeats, offset and
//! destination polls, the snapshot publisher, the command loop), spawned
//! through one [`Tracked`] so that a stop can wait for every one of them
//! with a deadline and say by name which did not finish. A helper may leave
//! a closing note (a heartbeat key it could not delete); notes and the names
//! of helpers still running at the deadline end up in the closing snapshot.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::task::TaskTracker;

/// Named, tracked helper tasks.
#[derive(Clone, Default)]
pub(super) struct Tracked {
    tracker: TaskTracker,
    running: Arc<Mutex<BTreeMap<u64, String>>>,
    notes: Arc<Mutex<Vec<String>>>,
    next: Arc<AtomicU64>,
}

/// Takes a helper off the running list however it ends, a panic included.
struct Finished {
    running: Arc<Mutex<BTreeMap<u64, String>>>,
    id: u64,
}

impl Drop for Finished {
    fn drop(&mut self) {
        if let Ok(mut r) = self.running.lock() {
            r.remove(&self.id);
        }
    }
}

impl Tracked {
    /// Spawns `fut` under `name`; what it returns, if anything, is a closing note.
    pub(super) fn spawn<F>(&self, name: impl Into<String>, fut: F)
    where
        F: Future<Output = Option<String>> + Send + 'static,
    {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut r) = self.running.lock() {
            r.insert(id, name.into());
        }
        let finished = Finished { running: self.running.clone(), id };
        let notes = self.notes.clone();
        self.tracker.spawn(async move {
            let _finished = finished;
            if let Some(note) = fut.await {
                if let Ok(mut n) = notes.lock() {
                    n.push(note);
                }
            }
        });
    }

    /// Waits up to `deadline` for every helper (they must have been told to
    /// stop); returns the notes, then one line naming those still running.
    pub(super) async fn wait(&self, deadline: Duration) -> Vec<String> {
        self.tracker.close();
        let timed_out = tokio::time::timeout(deadline, self.tracker.wait()).await.is_err();
        let mut notes = self.notes.lock().map(|n| n.clone()).unwrap_or_default();
        if timed_out {
            let names: Vec<String> = self.running.lock().map(|r| r.values().cloned().collect()).unwrap_or_default();
            notes.push(format!(
                "{} did not finish within {:.1} s of the stop: {}",
                if names.len() == 1 { "a helper task" } else { "helper tasks" },
                deadline.as_secs_f64(),
                names.join(", ")
            ));
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_every_helper_and_keeps_their_notes() {
        let t = Tracked::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        t.spawn("slow", async move {
            let _ = rx.await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some("heartbeat key k on a:1 could not be deleted".to_owned())
        });
        t.spawn("quick", async { None });
        let _ = tx.send(());
        let notes = t.wait(Duration::from_secs(5)).await;
        assert_eq!(notes, vec!["heartbeat key k on a:1 could not be deleted".to_owned()]);
    }

    #[tokio::test]
    async fn names_the_helpers_still_running_at_the_deadline() {
        let t = Tracked::default();
        t.spawn("heartbeat s1", std::future::pending());
        t.spawn("done", async { None });
        let notes = t.wait(Duration::from_millis(100)).await;
        assert_eq!(notes, vec!["a helper task did not finish within 0.1 s of the stop: heartbeat s1".to_owned()]);
    }

    #[tokio::test]
    async fn a_panicking_helper_is_not_reported_as_running() {
        let t = Tracked::default();
        t.spawn("boom", async { panic!("helper panicked on purpose") });
        let notes = t.wait(Duration::from_secs(5)).await;
        assert!(notes.is_empty(), "{notes:?}");
    }
}
