//! What the engine shows of itself: plain `Clone` data that front ends (TUI,
//! headless) read from a `watch` channel and that a UI test can build by hand.

use serde::Serialize;

pub use super::accounting::KeysSkipped;

/// A shard's phase, as named in the `--json` progress records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardState {
    Connecting,
    Handshake,
    /// Receiving and applying the full copy.
    Rdb,
    Incremental,
    Reconnecting,
    /// Paused by the operator, or stopped with the task.
    Stopped,
    Failed,
}

impl ShardState {
    pub fn as_str(self) -> &'static str {
        match self {
            ShardState::Connecting => "connecting",
            ShardState::Handshake => "handshake",
            ShardState::Rdb => "rdb",
            ShardState::Incremental => "incremental",
            ShardState::Reconnecting => "reconnecting",
            ShardState::Stopped => "stopped",
            ShardState::Failed => "failed",
        }
    }
}

/// Something the operator must see that is not a failure (a refused
/// `FLUSHALL`, a skipped module value, a key kept in `skip` mode…).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub ts_ms: i64,
    /// The source replication offset it happened at, when it comes from the stream.
    pub offset: Option<u64>,
    pub message: String,
}

/// One shard's progress. The serialized fields are exactly the `--json`
/// progress record of `docs/output-formats.md`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardSnapshot {
    pub ts_ms: i64,
    pub shard: String,
    pub state: ShardState,
    /// RDB bytes received, and the total when the master announced it
    /// (`$<len>`; unknown for a diskless `$EOF:` transfer until it ends).
    pub rdb_bytes: u64,
    pub rdb_total: Option<u64>,
    /// RDB bytes whose keys the destination has confirmed (the parser's
    /// position after the last applied key): with `rdb_bytes`, how far the
    /// copy has got on either side.
    #[serde(skip)]
    pub rdb_applied: u64,
    /// Keys of the full copy written and confirmed by the destination.
    pub keys_applied: u64,
    /// Keys of the full copy not written, by reason (see
    /// [`KeysSkipped`]); with `keys_applied`, every key of the snapshot.
    pub keys_skipped: KeysSkipped,
    /// The RDB version of the last snapshot the source sent (Valkey 9
    /// sends 11 to a replica that does not announce its version).
    #[serde(skip)]
    pub rdb_version: Option<u32>,
    /// Keys the source holds now in the copied DBs (polled once a second,
    /// the heartbeat key left out); `None` until the first poll answers.
    pub source_keys: Option<u64>,
    /// The source's `master_repl_offset` (polled), the offset received, and
    /// the offset the destination has acknowledged.
    pub source_offset: Option<u64>,
    #[serde(skip)]
    pub received_offset: Option<u64>,
    pub applied_offset: Option<u64>,
    pub lag_bytes: Option<u64>,
    /// Now minus the source clock of the newest heartbeat the destination
    /// has applied ([`ShardSnapshot::refresh_lag`]): it keeps growing while
    /// nothing is applied, whatever the state. `None` before the first
    /// heartbeat is applied, or when it cannot be written on the source.
    pub lag_ms: Option<u64>,
    /// The source clock (ms) of the newest heartbeat the destination has
    /// applied.
    #[serde(skip)]
    pub heartbeat_applied_ms: Option<i64>,
    pub ops_per_sec: u64,
    pub errors: u64,
    #[serde(skip)]
    pub last_error: Option<String>,
    /// The newest alerts (bounded); `alerts_total` counts every alert ever
    /// raised, so a front end can tell which ones it has not shown.
    #[serde(skip)]
    pub alerts: Vec<Alert>,
    #[serde(skip)]
    pub alerts_total: u64,
    /// Stopped by a destination error that needs the operator (the error is
    /// `last_error`); a resume applies the failed batch again.
    #[serde(skip)]
    pub paused_on_error: bool,
    /// Full copies started and source links re-established, since the start.
    #[serde(skip)]
    pub full_syncs: u64,
    #[serde(skip)]
    pub reconnects: u64,
    /// What the shard is waiting for, when it waits on purpose (another
    /// full copy on the same host).
    #[serde(skip)]
    pub waiting: Option<String>,
}

impl ShardSnapshot {
    pub fn new(shard: &str) -> Self {
        ShardSnapshot {
            ts_ms: 0,
            shard: shard.to_string(),
            state: ShardState::Connecting,
            rdb_bytes: 0,
            rdb_total: None,
            rdb_applied: 0,
            keys_applied: 0,
            keys_skipped: KeysSkipped::default(),
            rdb_version: None,
            source_keys: None,
            source_offset: None,
            received_offset: None,
            applied_offset: None,
            lag_bytes: None,
            lag_ms: None,
            heartbeat_applied_ms: None,
            ops_per_sec: 0,
            errors: 0,
            last_error: None,
            alerts: Vec::new(),
            alerts_total: 0,
            paused_on_error: false,
            full_syncs: 0,
            reconnects: 0,
            waiting: None,
        }
    }

    /// Sets `lag_ms` as of `now_ms` from the newest heartbeat applied.
    pub fn refresh_lag(&mut self, now_ms: i64) {
        self.lag_ms = self.heartbeat_applied_ms.map(|h| now_ms.saturating_sub(h).max(0) as u64);
    }

    /// What the last full copy came to, for closing lines: "1,234 keys
    /// written and confirmed, skipped: none"; `None` before any.
    pub fn copy_summary(&self) -> Option<String> {
        if self.keys_applied == 0 && self.keys_skipped.total() == 0 {
            return None;
        }
        Some(format!(
            "{} keys written and confirmed, skipped: {}",
            crate::human::group_digits(self.keys_applied),
            self.keys_skipped.describe()
        ))
    }

    /// Incremental and caught up: everything the source has written (its
    /// own heartbeats aside) is applied.
    pub fn is_synced(&self) -> bool {
        self.state == ShardState::Incremental
            && matches!((self.source_offset, self.applied_offset), (Some(s), Some(a)) if a >= s)
    }
}

/// What the destination says of itself (polled once a second with `INFO`),
/// for the dashboard's header. Not part of the `--json` records.
pub use crate::dest::stats::{DestStats, NodeStats};

/// The whole task.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskSnapshot {
    pub shards: Vec<ShardSnapshot>,
    /// `None` until the first poll answers (and while it cannot).
    pub destination: Option<DestStats>,
    /// A cluster destination: each master's figures (empty otherwise).
    pub destination_nodes: Vec<NodeStats>,
    /// Only in the closing snapshot: what the shutdown could not finish
    /// (a helper still running at the deadline, a heartbeat key not deleted).
    pub closing_notes: Vec<String>,
}

impl TaskSnapshot {
    pub fn all_synced(&self) -> bool {
        !self.shards.is_empty() && self.shards.iter().all(ShardSnapshot::is_synced)
    }

    pub fn failed(&self) -> Option<&ShardSnapshot> {
        self.shards.iter().find(|s| s.state == ShardState::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_record_has_exactly_the_contract_fields() {
        let mut s = ShardSnapshot::new("server1");
        s.state = ShardState::Incremental;
        s.source_offset = Some(10);
        s.applied_offset = Some(10);
        s.last_error = Some("secret detail".into());
        let v = serde_json::to_value(&s).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "ts_ms",
            "shard",
            "state",
            "rdb_bytes",
            "rdb_total",
            "keys_applied",
            "keys_skipped",
            "source_keys",
            "source_offset",
            "applied_offset",
            "lag_bytes",
            "lag_ms",
            "ops_per_sec",
            "errors",
        ];
        want.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(v["state"], "incremental");
        let skipped: Vec<&str> = v["keys_skipped"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(skipped, ["collision", "empty", "filtered_db", "kept", "module", "own"]);
        assert!(s.is_synced());
    }

    #[test]
    fn synced_needs_incremental_and_caught_up() {
        let mut s = ShardSnapshot::new("a");
        s.state = ShardState::Rdb;
        s.source_offset = Some(5);
        s.applied_offset = Some(5);
        assert!(!s.is_synced());
        s.state = ShardState::Incremental;
        s.applied_offset = Some(4);
        assert!(!s.is_synced());
        let t = TaskSnapshot::default();
        assert!(!t.all_synced());
    }
}
