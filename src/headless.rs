//! The headless front end's rendering: one progress line per shard per
//! second, or the NDJSON records of `docs/output-formats.md`, from the same engine
//! snapshots the TUI draws. Pure functions; the loop that calls them lives
//! with the `run` command.

use serde_json::json;

use crate::engine::snapshot::{NodeStats, ShardSnapshot, TaskSnapshot};
pub use crate::human::{group_digits, human_bytes};

/// A human progress line for one shard.
pub fn progress_line(s: &ShardSnapshot) -> String {
    let mut line = format!("{:<12} {:<12} keys {:>12}", s.shard, s.state.as_str(), group_digits(s.keys_applied));
    match s.rdb_total {
        Some(total) if s.rdb_bytes < total => {
            line.push_str(&format!("  rdb {}/{}", human_bytes(s.rdb_bytes), human_bytes(total)))
        }
        None if s.rdb_bytes > 0 => line.push_str(&format!("  rdb {}", human_bytes(s.rdb_bytes))),
        _ => {}
    }
    if let (Some(applied), Some(source)) = (s.applied_offset, s.source_offset) {
        line.push_str(&format!("  offset {applied}/{source}"));
    }
    if let Some(lag) = s.lag_bytes {
        line.push_str(&format!("  lag {}", human_bytes(lag)));
    }
    match s.lag_ms {
        Some(ms) => line.push_str(&format!(" {ms} ms")),
        None if s.state == crate::engine::snapshot::ShardState::Incremental => line.push_str(" (ms n/a)"),
        None => {}
    }
    line.push_str(&format!("  {} ops/s", group_digits(s.ops_per_sec)));
    if s.errors > 0 {
        line.push_str(&format!("  errors {}", s.errors));
    }
    if let Some(e) = &s.last_error {
        line.push_str(&format!("  last error: {e}"));
    }
    line
}

/// The `--json` record of one shard (exactly the contract's fields).
pub fn progress_json(s: &ShardSnapshot) -> String {
    serde_json::to_string(s).unwrap_or_else(|e| json!({ "event": "error", "error": e.to_string() }).to_string())
}

/// The closing record of an `--until-synced` run that caught up.
pub fn synced_json() -> String {
    json!({ "event": "synced" }).to_string()
}

/// The closing record of a run where a shard failed.
pub fn failed_json(shard: &str, error: &str) -> String {
    json!({ "event": "failed", "shard": shard, "error": error }).to_string()
}

/// Every line for one tick: one per shard, then one per master of a
/// cluster destination.
pub fn render_tick(t: &TaskSnapshot, as_json: bool) -> Vec<String> {
    let shards = t.shards.iter().map(|s| if as_json { progress_json(s) } else { progress_line(s) });
    let nodes = t.destination_nodes.iter().map(|n| if as_json { node_json(n) } else { node_line(n) });
    shards.chain(nodes).collect()
}

/// The `--json` record of one master of a cluster destination.
pub fn node_json(n: &NodeStats) -> String {
    json!({
        "ts_ms": n.stats.ts_ms,
        "destination_node": n.addr,
        "slots": n.slots,
        "keys": n.stats.keys,
        "used_memory": n.stats.used_memory,
        "maxmemory": n.stats.maxmemory,
        "ops_per_sec": n.stats.ops_per_sec,
        "errors": n.errors,
    })
    .to_string()
}

/// The progress line of one master of a cluster destination.
pub fn node_line(n: &NodeStats) -> String {
    let mut line = format!(
        "{:<12} {}  {} slots  keys {}  mem {}  {} ops/s",
        "dest master",
        n.addr,
        group_digits(n.slots as u64),
        group_digits(n.stats.keys),
        crate::human::human_bytes(n.stats.used_memory),
        group_digits(n.stats.ops_per_sec)
    );
    if n.errors > 0 {
        line.push_str(&format!("  errors {}", group_digits(n.errors)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::snapshot::ShardState;

    fn snap() -> ShardSnapshot {
        let mut s = ShardSnapshot::new("server1");
        s.state = ShardState::Incremental;
        s.keys_applied = 500_000;
        s.rdb_bytes = 1 << 20;
        s.rdb_total = Some(1 << 20);
        s.source_offset = Some(123_456);
        s.applied_offset = Some(123_400);
        s.lag_bytes = Some(56);
        s.lag_ms = Some(3);
        s.ops_per_sec = 41_000;
        s
    }

    #[test]
    fn line_shows_state_counts_offsets_and_lag() {
        assert_eq!(
            progress_line(&snap()),
            "server1      incremental  keys      500,000  offset 123400/123456  lag 56 B 3 ms  41,000 ops/s"
        );
    }

    #[test]
    fn rdb_progress_and_errors_are_shown() {
        let mut s = snap();
        s.state = ShardState::Rdb;
        s.rdb_bytes = 512 * 1024;
        s.errors = 2;
        s.last_error = Some("destination 127.0.0.1:7000 answered -OOM".into());
        let l = progress_line(&s);
        assert!(l.contains("rdb 512.0 KB/1.0 MB"), "{l}");
        assert!(l.contains("errors 2  last error: destination 127.0.0.1:7000 answered -OOM"), "{l}");
    }

    #[test]
    fn json_record_and_closing_events() {
        let v: serde_json::Value = serde_json::from_str(&progress_json(&snap())).unwrap();
        assert_eq!(v["shard"], "server1");
        assert_eq!(v["lag_ms"], 3);
        assert_eq!(synced_json(), r#"{"event":"synced"}"#);
        let f: serde_json::Value = serde_json::from_str(&failed_json("server2", "boom")).unwrap();
        assert_eq!(f["event"], "failed");
        assert_eq!(f["shard"], "server2");
    }

    #[test]
    fn a_cluster_destination_adds_one_record_per_master() {
        let node = NodeStats {
            addr: "10.0.1.21:6379".into(),
            slots: 5461,
            stats: crate::engine::snapshot::DestStats {
                ts_ms: 7,
                keys: 1_890_000,
                used_memory: 520 << 20,
                maxmemory: 0,
                ops_per_sec: 17_000,
            },
            errors: 0,
        };
        let t = TaskSnapshot { shards: vec![snap()], destination_nodes: vec![node.clone()], ..TaskSnapshot::default() };
        let json = render_tick(&t, true);
        assert_eq!(json.len(), 2);
        assert_eq!(
            json[1],
            r#"{"destination_node":"10.0.1.21:6379","errors":0,"keys":1890000,"maxmemory":0,"ops_per_sec":17000,"slots":5461,"ts_ms":7,"used_memory":545259520}"#
        );
        assert_eq!(
            render_tick(&t, false)[1],
            "dest master  10.0.1.21:6379  5,461 slots  keys 1,890,000  mem 520.0 MB  17,000 ops/s"
        );
        let failing = NodeStats { errors: 1_204, ..node };
        assert!(node_line(&failing).ends_with("17,000 ops/s  errors 1,204"), "{}", node_line(&failing));
    }
}
