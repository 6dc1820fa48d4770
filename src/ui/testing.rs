//! Test helpers: screens drawn to text, keys, and hand-built library
//! answers and engine snapshots (for tests only; the real ones come from
//! servers).

use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::widgets::Widget;
use ratatui::Terminal;

use crate::engine::snapshot::{Alert, DestStats, ShardSnapshot, ShardState, TaskSnapshot};
use crate::probe::{DbKeys, Role, ServerFacts, ServerMode};

use super::msg::Msg;

/// The screen `widget` draws at `width`×`height`, as text lines (styles
/// dropped: snapshots compare what a reader sees).
pub fn screen<W: Widget>(widget: W, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("a test backend always opens");
    terminal.draw(|f| f.render_widget(widget, f.area())).expect("drawing to a test backend cannot fail");
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..height {
        let mut line = String::new();
        for x in 0..width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

pub fn ch(c: char) -> Msg {
    key(KeyCode::Char(c))
}

pub fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

/// Keys for typing `text`.
pub fn typed(text: &str) -> Vec<Msg> {
    text.chars().map(ch).collect()
}

/// A master (or a replica of `replica_of`) holding `keys` per DB.
pub fn facts(addr: &str, version: &str, replica_of: Option<&str>, keys: &[(u32, u64)]) -> ServerFacts {
    ServerFacts {
        addr: addr.to_owned(),
        version: version.to_owned(),
        server: crate::dest::ServerVersion::redis(
            crate::dest::RedisVersion::parse(version).unwrap_or(crate::dest::RedisVersion::new(0, 0, 0)),
        ),
        role: match replica_of {
            Some(m) => Role::Replica { master: m.to_owned(), link_up: true },
            None => Role::Master,
        },
        mode: ServerMode::Standalone,
        used_memory: 2 << 20,
        used_memory_dataset: Some(1 << 20),
        maxmemory: 0,
        maxmemory_policy: Some("noeviction".into()),
        databases: Some(16),
        keyspace: keys.iter().map(|(db, k)| (*db, DbKeys { keys: *k, expires: 0 })).collect::<BTreeMap<_, _>>(),
        master_repl_offset: Some(1000),
        repl_backlog_size: Some(1 << 20),
        replica_buffer_limit: None,
        psync_command: Some(true),
        read_only: None,
        total_system_memory: Some(8 << 30),
        connect_ms: 1,
        commands_used: Default::default(),
        modules: None,
    }
}

/// 2025-11-25 09:50:00 UTC: every hand-built snapshot's clock.
pub const T0: i64 = 1_764_064_200_000;

/// A shard in `state` with figures that look like a real run's.
pub fn shard(name: &str, state: ShardState, ts_ms: i64) -> ShardSnapshot {
    let mut s = ShardSnapshot::new(name);
    s.ts_ms = ts_ms;
    s.state = state;
    match state {
        ShardState::Rdb => {
            s.rdb_total = Some(800 << 20);
            s.rdb_bytes = 520 << 20;
            s.rdb_applied = 300 << 20;
            s.keys_applied = 1_234_567;
            s.source_keys = Some(3_460_112);
            s.source_offset = Some(98_765_432);
            s.ops_per_sec = 48_200;
            s.full_syncs = 1;
        }
        ShardState::Incremental => {
            s.rdb_total = Some(800 << 20);
            s.rdb_bytes = 800 << 20;
            s.rdb_applied = 800 << 20;
            s.keys_applied = 3_456_789;
            s.source_keys = Some(3_461_020);
            s.keys_skipped.own = 1;
            s.source_offset = Some(123_456_789);
            s.received_offset = Some(123_456_789);
            s.applied_offset = Some(123_456_700);
            s.lag_bytes = Some(89);
            s.lag_ms = Some(3);
            s.ops_per_sec = 1_250;
            s.full_syncs = 1;
        }
        ShardState::Reconnecting => {
            s.keys_applied = 2_000_000;
            s.source_keys = Some(2_000_417);
            s.source_offset = Some(55_000_000);
            s.applied_offset = Some(54_000_000);
            s.lag_bytes = Some(1_000_000);
            s.lag_ms = Some(4_200);
            s.reconnects = 2;
            s.full_syncs = 1;
            s.last_error = Some("shard server2: source 10.0.0.12:6379 closed the connection".into());
        }
        ShardState::Failed => {
            s.keys_applied = 10;
            s.errors = 1;
            s.last_error = Some(
                "shard server3: source 10.0.0.13:6379 refused PSYNC: NOPERM this user has no permissions to run the 'psync' command"
                    .into(),
            );
        }
        _ => {}
    }
    s
}

pub fn alert(s: &mut ShardSnapshot, ts_ms: i64, offset: Option<u64>, message: &str) {
    s.alerts.push(Alert { ts_ms, offset, message: message.to_owned() });
    s.alerts_total += 1;
}

pub fn dest_stats(ts_ms: i64) -> DestStats {
    DestStats { ts_ms, keys: 5_678_901, used_memory: 1_610_612_736, maxmemory: 8 << 30, ops_per_sec: 51_000 }
}

pub fn task_snapshot(shards: Vec<ShardSnapshot>, ts_ms: i64) -> TaskSnapshot {
    TaskSnapshot {
        shards,
        destination: Some(dest_stats(ts_ms)),
        destination_nodes: Vec::new(),
        closing_notes: Vec::new(),
    }
}
