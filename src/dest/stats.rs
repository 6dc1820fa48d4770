//! What the destination says of itself, for the dashboard's header: one
//! `INFO` a second on a connection of its own, so that a slow `INFO` never
//! delays a batch.
//!
//! Best effort: a failed read gives `None` (the caller keeps the last
//! figures, whose `ts_ms` tells their age) and reconnects on the next one.

use crate::resp::info::{info_field, parse_keyspace};
use crate::resp::{Cmd, ConnectOptions, Connection};

/// The destination's figures (`INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DestStats {
    /// When it was read.
    pub ts_ms: i64,
    /// Keys in every DB (`INFO keyspace`), the tool's checkpoint keys included.
    pub keys: u64,
    pub used_memory: u64,
    /// 0: no limit.
    pub maxmemory: u64,
    /// `instantaneous_ops_per_sec`: every client's commands, not only ours.
    pub ops_per_sec: u64,
}

/// Reads [`DestStats`] from one destination, connecting when needed.
pub struct StatsReader {
    addr: String,
    opts: ConnectOptions,
    conn: Option<Connection>,
}

impl StatsReader {
    pub fn new(addr: String, opts: ConnectOptions) -> Self {
        StatsReader { addr, opts, conn: None }
    }

    /// The figures now; `None` when the destination did not answer.
    pub async fn read(&mut self, now_ms: i64) -> Option<DestStats> {
        if self.conn.is_none() {
            self.conn = Connection::connect(&self.addr, &self.opts).await.ok();
        }
        let conn = self.conn.as_mut()?;
        // Plain `INFO` (no section list): Redis before 7 takes one section
        // only, and the default set holds all three we read.
        match conn.query(&Cmd::new("INFO")).await {
            Ok(v) => v.as_bytes().map(|b| parse_info(b, now_ms)),
            Err(_) => {
                self.conn = None;
                None
            }
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
