//! Waiting on a running task's snapshots: until a condition holds, a shard
//! fails (which ends the wait: nothing a test waits for comes after a
//! failure), or the time is up. One loop for every engine test.

use std::time::{Duration, Instant};

use shardsync::engine::{snapshot::TaskSnapshot, EngineHandle};

/// Until `f` holds: `Err` naming `what` when a shard failed or `limit` passed.
pub async fn until(
    handle: &EngineHandle,
    what: &str,
    limit: Duration,
    f: impl Fn(&TaskSnapshot) -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    let mut status = handle.status.clone();
    loop {
        let snap = status.borrow_and_update().clone();
        if f(&snap) {
            return Ok(());
        }
        if let Some(s) = snap.failed() {
            return Err(format!("shard {} failed while waiting for {what}: {:?}", s.shard, s.last_error));
        }
        if start.elapsed() > limit {
            return Err(format!("not {what} within {limit:?}: {snap:#?}"));
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), status.changed()).await;
    }
}

/// [`until`], panicking with its message.
pub async fn wait_for(handle: &EngineHandle, what: &str, limit: Duration, f: impl Fn(&TaskSnapshot) -> bool) {
    if let Err(e) = until(handle, what, limit, f).await {
        panic!("{e}");
    }
}

/// Every shard incremental and caught up.
pub async fn synced(handle: &EngineHandle, limit: Duration) {
    wait_for(handle, "synced", limit, TaskSnapshot::all_synced).await;
}
