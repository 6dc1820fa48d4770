//! The engine's side connections to a source master: the heartbeat writer
//! (lag in milliseconds) and the offset poller (lag in bytes).
//!
//! Both are best effort by design: a source where the heartbeat cannot be
//! written (an ACL without write rights, a read-only replica) still syncs,
//! with `lag_ms` unavailable; a failed poll only leaves the last offset shown.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::status::{ShardEvent, StatusTx};
use crate::clock::now_ms;
use crate::resp::info::{info_field, parse_keyspace};
use crate::resp::{Cmd, ConnectOptions, Connection, RespError, Value};

/// Sleep unless cancelled; false when cancelled.
async fn nap(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

/// The open connection, connecting first when there is none (a failed
/// attempt is retried on the caller's next round).
async fn connected<'a>(
    conn: &'a mut Option<Connection>,
    addr: &str,
    opts: &ConnectOptions,
) -> Option<&'a mut Connection> {
    if conn.is_none() {
        *conn = Connection::connect(addr, opts).await.ok();
    }
    conn.as_mut()
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
    let mut conn: Option<Connection> = None;
    let mut refused = false;
    loop {
        if let Some(c) = connected(&mut conn, &addr, &opts).await {
            let set = Cmd::new("SET").arg(&key).arg(now_ms().to_string());
            match c.send(&set).await {
                Ok(Value::Error(e)) => {
                    if !refused {
                        refused = true;
                        let message = format!(
                            "heartbeat key {key} cannot be written on {addr} ({e}); the shard syncs, but lag in ms is unavailable (grant SET on that key to measure it)"
                        );
                        status.send(ShardEvent::HeartbeatRefused { message }).await;
                    }
                }
                Ok(_) => refused = false,
                Err(_) => conn = None,
            }
        }
        // A refused heartbeat is retried rarely: the cause is configuration.
        let wait = if refused { Duration::from_secs(10).max(every) } else { every };
        if !nap(&cancel, wait).await {
            break;
        }
    }
    // The key must not outlive the task: delete it, or say that it could not be.
    let not_deleted = |why: String| {
        Some(format!(
            "heartbeat key {key} on {addr} was not deleted: {why}; `shardsync finish` removes it after the cut-over"
        ))
    };
    let mut c = match conn {
        Some(c) => c,
        None => match tokio::time::timeout(Duration::from_secs(2), Connection::connect(&addr, &opts)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return not_deleted(e.to_string()),
            Err(_) => return not_deleted("no connection within 2 s".to_owned()),
        },
    };
    match tokio::time::timeout(Duration::from_secs(2), c.send(&Cmd::new("DEL").arg(&key))).await {
        Ok(Ok(Value::Error(e))) => not_deleted(e.to_string()),
        Ok(Ok(_)) => None,
        Ok(Err(e)) => not_deleted(e.to_string()),
        Err(_) => not_deleted("no answer within 2 s".to_owned()),
    }
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
    let mut conn: Option<Connection> = None;
    for _ in 0..600 {
        if let Some(c) = connected(&mut conn, &addr, &opts).await {
            match c.query(&Cmd::new("INFO").arg("persistence")).await {
                Ok(v) if v.as_bytes().and_then(|b| info_field(b, "rdb_bgsave_in_progress")) == Some("0") => break,
                Ok(_) => {}
                Err(_) => conn = None,
            }
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
    let mut conn: Option<Connection> = None;
    loop {
        if let Some(c) = connected(&mut conn, &poll.addr, &poll.opts).await {
            match master_repl_offset(c).await {
                Ok(Some(off)) => {
                    status.send(ShardEvent::SourceOffset(off)).await;
                }
                Ok(None) => {}
                Err(_) => conn = None,
            }
        }
        if let Some(c) = conn.as_mut() {
            match source_keys(c, &poll).await {
                Ok(keys) => {
                    status.send(ShardEvent::SourceKeys(keys)).await;
                }
                Err(_) => conn = None,
            }
        }
        if !nap(&cancel, every).await {
            break;
        }
    }
}

/// Keys in the copied DBs, without the heartbeat key.
async fn source_keys(c: &mut Connection, poll: &SourcePoll) -> Result<u64, RespError> {
    let cmds = [Cmd::new("INFO").arg("keyspace"), Cmd::new("EXISTS").arg(&poll.heartbeat_key)];
    let replies = c.pipeline(&cmds).await?;
    let keyspace = replies.first().and_then(|v| v.as_bytes()).map(parse_keyspace).unwrap_or_default();
    let copied = |db: &u32| poll.dbs.as_ref().is_none_or(|dbs| dbs.contains(db));
    let keys: u64 = keyspace.iter().filter(|(db, _)| copied(db)).map(|(_, k)| k.keys).sum();
    // The heartbeat key lives in DB 0 while the task runs.
    let heartbeat = u64::from(replies.get(1).and_then(Value::as_int) == Some(1) && copied(&0));
    Ok(keys.saturating_sub(heartbeat))
}

async fn master_repl_offset(c: &mut Connection) -> Result<Option<u64>, RespError> {
    let v = c.query(&Cmd::new("INFO").arg("replication")).await?;
    Ok(v.as_bytes().and_then(|b| info_field(b, "master_repl_offset")).and_then(|s| s.parse().ok()))
}
