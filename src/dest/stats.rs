//! What the destination says of itself, for the dashboard's header: one
//! `INFO` a second on a connection of its own, so that a slow `INFO` never
//! delays a batch.
//!
//! On a Redis Cluster every master is read (one connection each, the slot
//! map read again every minute or after a failed read), and the figures
//! are the sums, with one [`NodeStats`] per master.
//!
//! Best effort: a failed read gives `None` (the caller keeps the last
//! figures, whose `ts_ms` tells their age) and reconnects on the next one.

use super::cluster::topology::SlotMap;
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

/// One master of a cluster destination.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeStats {
    pub addr: String,
    /// Slots it serves.
    pub slots: usize,
    pub stats: DestStats,
    /// Failed applies the shards met at this master this run (retried or
    /// paused on); filled by the engine, not read from the server.
    pub errors: u64,
}

/// What one read found: the figures (summed over a cluster's masters) and,
/// for a cluster, each master's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DestReading {
    pub total: DestStats,
    pub nodes: Vec<NodeStats>,
}

/// Reads [`DestStats`] from one destination, connecting when needed.
pub struct StatsReader {
    addr: String,
    opts: ConnectOptions,
    conn: Option<Connection>,
    /// A cluster: its map, one connection per master, and reads left
    /// before the map is read again.
    cluster: Option<(SlotMap, Vec<Option<Connection>>, u32)>,
}

/// Reads between two readings of a cluster's slot map (one a second): a
/// resharding shows in the per-master figures within 10 s.
const MAP_EVERY: u32 = 10;

impl StatsReader {
    pub fn new(addr: String, opts: ConnectOptions) -> Self {
        StatsReader { addr, opts, conn: None, cluster: None }
    }

    /// The figures now; `None` when the destination did not answer.
    pub async fn read(&mut self, now_ms: i64) -> Option<DestReading> {
        // A cluster with a fresh map: every master is read below, the
        // address named in the task among them.
        if self.cluster.as_ref().is_some_and(|(_, _, left)| *left > 0) {
            return self.read_cluster(now_ms).await;
        }
        if self.conn.is_none() {
            self.conn = Connection::connect(&self.addr, &self.opts).await.ok();
        }
        let conn = self.conn.as_mut()?;
        // Plain `INFO` (no section list): Redis before 7 takes one section
        // only, and the default set holds all we read.
        let info = match conn.query(&Cmd::new("INFO")).await {
            Ok(v) => v,
            Err(_) => {
                self.conn = None;
                return None;
            }
        };
        let info = info.as_bytes()?;
        if info_field(info, "cluster_enabled") != Some("1") {
            return Some(DestReading { total: parse_info(info, now_ms), nodes: Vec::new() });
        }
        self.read_cluster(now_ms).await
    }

    async fn read_cluster(&mut self, now_ms: i64) -> Option<DestReading> {
        let stale = self.cluster.as_ref().is_none_or(|(_, _, left)| *left == 0);
        if stale {
            let map = SlotMap::read(self.conn.as_mut()?, &self.addr).await.ok()?;
            let conns = map.masters.iter().map(|_| None).collect();
            self.cluster = Some((map, conns, MAP_EVERY));
        }
        let (map, conns, left) = self.cluster.as_mut()?;
        *left = left.saturating_sub(1);
        let mut reading = DestReading { total: DestStats { ts_ms: now_ms, ..DestStats::default() }, nodes: Vec::new() };
        let counts = map.slot_counts();
        for ((addr, conn), slots) in map.masters.iter().zip(conns.iter_mut()).zip(counts) {
            if conn.is_none() {
                *conn = Connection::connect(addr, &self.opts).await.ok();
            }
            let stats = match conn.as_mut() {
                Some(c) => match c.query(&Cmd::new("INFO")).await {
                    Ok(v) => v.as_bytes().map(|b| parse_info(b, now_ms)),
                    Err(_) => None,
                },
                None => None,
            };
            let Some(stats) = stats else {
                // Read the map again next time: the master may have failed over.
                *conn = None;
                *left = 0;
                continue;
            };
            reading.total.keys += stats.keys;
            reading.total.used_memory += stats.used_memory;
            // A master without a limit makes the whole cluster's unlimited (0).
            reading.total.maxmemory = match (reading.nodes.is_empty(), reading.total.maxmemory, stats.maxmemory) {
                (true, _, m) => m,
                (false, 0, _) | (false, _, 0) => 0,
                (false, total, m) => total + m,
            };
            reading.total.ops_per_sec += stats.ops_per_sec;
            reading.nodes.push(NodeStats { addr: addr.clone(), slots, stats, errors: 0 });
        }
        Some(reading)
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
