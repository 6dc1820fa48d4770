//! The engine's side loops on a source master: the heartbeat writer (lag in
//! milliseconds), the offset poller (lag in bytes) and the full-copy slot's
//! release. The conversations are [`crate::source::side`]'s; these decide
//! when to ask and what an answer means for the shard.
//!
//! Both polls are best effort by design: a source where the heartbeat
//! cannot be written (an ACL without write rights, a read-only replica)
//! still syncs, with `lag_ms` unavailable; a failed poll only leaves the
//! last offset shown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::status::{ShardEvent, StatusTx};
use crate::clock::now_ms;
use crate::resp::ConnectOptions;
use crate::source::side::{Beat, SideConn};

/// Sleep unless cancelled; false when cancelled.
async fn nap(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// `SET <key> <now-ms>` on the source every `every`, until cancelled; then
/// the key is deleted, as the contract says it never outlives the task.
/// Returns what went wrong when it could not be deleted (a closing note).
pub async fn heartbeat(
    addr: String,
    opts: ConnectOptions,
    key: String,
    every: Duration,
    status: StatusTx,
    cancel: CancellationToken,
) -> Option<String> {
    let mut side = SideConn::new(addr, opts);
    let mut refused = false;
    loop {
        match side.beat(&key, now_ms()).await {
            Beat::Refused(e) => {
                if !refused {
                    refused = true;
                    let addr = side.addr();
                    let message = format!(
                        "heartbeat key {key} cannot be written on {addr} ({e}); the shard syncs, but lag in ms is \
                         unavailable (grant SET on that key to measure it)"
                    );
                    status.send(ShardEvent::HeartbeatRefused { message }).await;
                }
            }
            Beat::Written => refused = false,
            Beat::Unreachable => {}
        }
        // A refused heartbeat is retried rarely: the cause is configuration.
        let wait = if refused { Duration::from_secs(10).max(every) } else { every };
        if !nap(&cancel, wait).await {
            break;
        }
    }
    // The key must not outlive the task: delete it, or say that it could not be.
    side.delete_within(&key, Duration::from_secs(2)).await.err().map(|why| {
        format!(
            "heartbeat key {key} on {} was not deleted: {why}; `shardsync finish` removes it after the cut-over",
            side.addr()
        )
    })
}

/// Holds a host's full-copy slot until the source's snapshot child has
/// exited (`rdb_bgsave_in_progress:0`): the master reaps it a little after
/// the last byte is sent, and the next master on the host must not fork
/// before. Gives up after a minute (a fork that long is not ours to wait for).
pub async fn release_after_fork(
    permit: tokio::sync::OwnedSemaphorePermit,
    addr: String,
    opts: ConnectOptions,
    cancel: CancellationToken,
) {
    let mut side = SideConn::new(addr, opts);
    for _ in 0..600 {
        if side.bgsave_in_progress().await == Some(false) {
            break;
        }
        if !nap(&cancel, Duration::from_millis(100)).await {
            break;
        }
    }
    drop(permit);
}

/// What the poller reads of a source.
pub struct SourcePoll {
    pub addr: String,
    pub opts: ConnectOptions,
    /// The source DBs the task copies; `None`: all.
    pub dbs: Option<Vec<u32>>,
    /// The heartbeat key, left out of the key count.
    pub heartbeat_key: String,
}

/// Polls the master's `master_repl_offset` (`INFO replication`) and its
/// live key count in the copied DBs (`INFO keyspace`, the heartbeat key
/// left out), every `every`.
pub async fn poll_offset(poll: SourcePoll, every: Duration, status: StatusTx, cancel: CancellationToken) {
    let mut side = SideConn::new(poll.addr, poll.opts);
    loop {
        if let Some(off) = side.master_offset().await {
            status.send(ShardEvent::SourceOffset(off)).await;
        }
        if let Some(keys) = side.live_keys(poll.dbs.as_deref(), &poll.heartbeat_key).await {
            status.send(ShardEvent::SourceKeys(keys)).await;
        }
        if !nap(&cancel, every).await {
            break;
        }
    }
}
