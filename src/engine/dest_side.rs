//! The engine's side connection to the destination: a once-a-second `INFO`
//! for the dashboard's header (keys, memory, ops/s), kept apart from the
//! writer's connections so that a slow `INFO` never delays a batch.
//!
//! Best effort like the source-side pollers: a failed poll leaves the last
//! figures in place (their `ts_ms` tells their age) and reconnects on the
//! next round.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::snapshot::DestStats;
use crate::clock::now_ms;
use crate::resp::info::{info_field, parse_keyspace};
use crate::resp::{Cmd, ConnectOptions, Connection};

/// Polls `INFO` on the destination every `every` into `shared`, until cancelled.
pub async fn poll_stats(
    addr: String,
    opts: ConnectOptions,
    every: Duration,
    shared: Arc<Mutex<Option<DestStats>>>,
    cancel: CancellationToken,
) {
    let mut conn: Option<Connection> = None;
    loop {
        if conn.is_none() {
            conn = Connection::connect(&addr, &opts).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            // Plain `INFO` (no section list): Redis before 7 takes one
            // section only, and the default set holds all three we read.
            match c.query(&Cmd::new("INFO")).await {
                Ok(v) => {
                    if let Some(stats) = v.as_bytes().map(|b| parse_info(b, now_ms())) {
                        if let Ok(mut s) = shared.lock() {
                            *s = Some(stats);
                        }
                    }
                }
                Err(_) => conn = None,
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The figures of an `INFO` reply; a missing field reads as 0.
pub fn parse_info(info: &[u8], ts_ms: i64) -> DestStats {
    let num = |name: &str| info_field(info, name).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let keys = parse_keyspace(info).values().map(|d| d.keys).sum();
    DestStats {
        ts_ms,
        keys,
        used_memory: num("used_memory"),
        maxmemory: num("maxmemory"),
        ops_per_sec: num("instantaneous_ops_per_sec"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_figures_and_keyspace_sum() {
        let info = b"# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:0\r\n\
                     # Stats\r\ninstantaneous_ops_per_sec:42\r\n# Keyspace\r\n\
                     db0:keys=10,expires=1,avg_ttl=0\r\ndb3:keys=5,expires=0,avg_ttl=0\r\n";
        let s = parse_info(info, 7);
        assert_eq!(s, DestStats { ts_ms: 7, keys: 15, used_memory: 1 << 20, maxmemory: 0, ops_per_sec: 42 });
        assert_eq!(parse_info(b"", 0).keys, 0);
    }
}
