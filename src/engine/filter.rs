//! What to do with each command of a source's replication stream.
//!
//! The master replicates every write, plus things that must not reach a
//! merged destination as-is: its `PING` keep-alives, our own heartbeat key,
//! writes to databases the task does not copy, and `FLUSHALL`/`FLUSHDB`,
//! which in a merged destination would wipe the other shards' keys too. The
//! filter is pure: it sees one command at a time (with the source's current
//! database, which it tracks from `SELECT`) and answers with an `Action`.

use std::collections::BTreeMap;

use bytes::Bytes;

/// What the engine does with one replicated command.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Apply on the destination, in destination database `db`.
    Apply { db: u32, args: Vec<Bytes> },
    /// The tool's own heartbeat came back: its value is the source's clock
    /// (ms) when it was written, so now − value is the lag.
    Heartbeat { sent_ms: i64 },
    /// Not applied, with the reason (keep-alives, filtered databases, the
    /// stream's own bookkeeping). Counted, never an error.
    Skip(SkipReason),
    /// Not applied and the operator must know: `FLUSHALL`/`FLUSHDB` under
    /// the `refuse` policy.
    Refused { command: String, db: Option<u32> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// The master's `PING`/`REPLCONF` keep-alives.
    KeepAlive,
    /// A `SELECT`: tracked, applied implicitly with the next command.
    Select,
    /// A write to a database the task does not copy.
    FilteredDb,
    /// A write to the heartbeat key other than the heartbeat itself (its
    /// deletion when a task stops).
    HeartbeatKey,
}

/// Per-shard stream filter state.
#[derive(Debug, Clone)]
pub struct StreamFilter {
    heartbeat_key: Bytes,
    /// `<heartbeat key>:ckpt:`: checkpoint keys, which a source that was
    /// itself a destination (a cascade) holds and never forwards.
    ckpt_prefix: Bytes,
    /// Source DB → destination DB; `None` copies every DB to the same number.
    db_map: Option<BTreeMap<u32, u32>>,
    forward_flush: bool,
    /// The source's current DB. A full resynchronization's stream says
    /// `SELECT` before its first write; a continued one does not (see
    /// [`StreamFilter::starting_in`]).
    db: u32,
}

impl StreamFilter {
    /// `db_map`: the databases copied and where they go (`None`: all, same
    /// number). `forward_flush`: apply `FLUSHALL`/`FLUSHDB` instead of refusing.
    pub fn new(heartbeat_key: &str, db_map: Option<BTreeMap<u32, u32>>, forward_flush: bool) -> Self {
        StreamFilter {
            heartbeat_key: Bytes::copy_from_slice(heartbeat_key.as_bytes()),
            ckpt_prefix: Bytes::from(format!("{heartbeat_key}:ckpt:")),
            db_map,
            forward_flush,
            db: 0,
        }
    }

    /// Starts in source DB `db` instead of 0: a stream continued after a
    /// checkpoint (`+CONTINUE`) goes on in the DB it was in there, since
    /// the master does not repeat its `SELECT`.
    pub fn starting_in(mut self, db: u32) -> Self {
        self.db = db;
        self
    }

    /// The source DB the stream is in (after the last command filtered).
    pub fn source_db(&self) -> u32 {
        self.db
    }

    fn target_db(&self, db: u32) -> Option<u32> {
        match &self.db_map {
            None => Some(db),
            Some(m) => m.get(&db).copied(),
        }
    }

    pub fn filter(&mut self, args: Vec<Bytes>) -> Action {
        let Some(name) = args.first() else { return Action::Skip(SkipReason::KeepAlive) };
        let upper = UpperName::of(name);
        let name = upper.as_str();
        match name {
            "PING" | "REPLCONF" => return Action::Skip(SkipReason::KeepAlive),
            "SELECT" => {
                if let Some(db) = args.get(1).and_then(|d| std::str::from_utf8(d).ok()?.parse().ok()) {
                    self.db = db;
                }
                return Action::Skip(SkipReason::Select);
            }
            _ => {}
        }
        if let Some(key) = args.get(1) {
            if key == &self.heartbeat_key && !is_keyless(name) {
                if name == "SET" {
                    if let Some(ms) = args.get(2).and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()) {
                        return Action::Heartbeat { sent_ms: ms };
                    }
                }
                return Action::Skip(SkipReason::HeartbeatKey);
            }
            if key.starts_with(&self.ckpt_prefix) && !is_keyless(name) {
                return Action::Skip(SkipReason::HeartbeatKey);
            }
        }
        match name {
            "FLUSHALL" if !self.forward_flush => return Action::Refused { command: name.into(), db: None },
            "FLUSHDB" if !self.forward_flush => return Action::Refused { command: name.into(), db: Some(self.db) },
            // Forwarded on request; with a DB selection it would also wipe
            // databases this task does not own, so it is refused then too.
            "FLUSHALL" if self.db_map.is_some() => {
                return Action::Refused { command: "FLUSHALL (with a database selection)".into(), db: None };
            }
            _ => {}
        }
        // Transactions and pub/sub are not tied to a database's keys, but
        // MULTI/EXEC must reach the same connection in order, so they follow
        // the current DB like any write.
        match self.target_db(self.db) {
            Some(db) => Action::Apply { db, args },
            None if matches!(name, "MULTI" | "EXEC" | "PUBLISH") => Action::Apply { db: self.first_db(), args },
            None => Action::Skip(SkipReason::FilteredDb),
        }
    }

    fn first_db(&self) -> u32 {
        self.db_map.as_ref().and_then(|m| m.values().next().copied()).unwrap_or(0)
    }
}

/// Commands whose second argument is not a key.
fn is_keyless(upper: &str) -> bool {
    matches!(
        upper,
        "PUBLISH" | "SPUBLISH" | "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "SCRIPT" | "FUNCTION"
    )
}

/// A command name upper-cased on the stack: the filter runs for every
/// replicated command, and a heap string per command showed in profiles.
/// Names longer than any command this filter knows read as "".
struct UpperName {
    buf: [u8; 24],
    len: usize,
}

impl UpperName {
    fn of(name: &[u8]) -> Self {
        let mut buf = [0u8; 24];
        let len = if name.len() <= buf.len() { name.len() } else { 0 };
        for (d, s) in buf.iter_mut().zip(&name[..len]) {
            *d = s.to_ascii_uppercase();
        }
        UpperName { buf, len }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(parts: &[&str]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect()
    }

    fn filter() -> StreamFilter {
        StreamFilter::new("SHARDSYNC_HEARTBEAT", None, false)
    }

    #[test]
    fn keepalives_are_skipped() {
        let mut f = filter();
        assert_eq!(f.filter(cmd(&["PING"])), Action::Skip(SkipReason::KeepAlive));
        assert_eq!(f.filter(cmd(&["REPLCONF", "GETACK", "*"])), Action::Skip(SkipReason::KeepAlive));
    }

    #[test]
    fn writes_follow_the_selected_db() {
        let mut f = filter();
        assert_eq!(f.filter(cmd(&["set", "a", "1"])), Action::Apply { db: 0, args: cmd(&["set", "a", "1"]) });
        assert_eq!(f.filter(cmd(&["SELECT", "3"])), Action::Skip(SkipReason::Select));
        assert_eq!(f.filter(cmd(&["SET", "b", "2"])), Action::Apply { db: 3, args: cmd(&["SET", "b", "2"]) });
    }

    #[test]
    fn a_continued_stream_starts_in_its_checkpoint_db() {
        let mut f = StreamFilter::new("HB", None, false).starting_in(1);
        assert_eq!(f.source_db(), 1);
        assert!(matches!(f.filter(cmd(&["SET", "a", "1"])), Action::Apply { db: 1, .. }));
        f.filter(cmd(&["SELECT", "0"]));
        assert_eq!(f.source_db(), 0);
    }

    #[test]
    fn db_selection_and_mapping() {
        let map = BTreeMap::from([(0, 0), (2, 5)]);
        let mut f = StreamFilter::new("HB", Some(map), false);
        assert!(matches!(f.filter(cmd(&["SET", "a", "1"])), Action::Apply { db: 0, .. }));
        f.filter(cmd(&["SELECT", "1"]));
        assert_eq!(f.filter(cmd(&["SET", "a", "1"])), Action::Skip(SkipReason::FilteredDb));
        f.filter(cmd(&["SELECT", "2"]));
        assert!(matches!(f.filter(cmd(&["SET", "a", "1"])), Action::Apply { db: 5, .. }));
    }

    #[test]
    fn heartbeat_is_measured_not_applied() {
        let mut f = filter();
        assert_eq!(
            f.filter(cmd(&["SET", "SHARDSYNC_HEARTBEAT", "1764064200000"])),
            Action::Heartbeat { sent_ms: 1764064200000 }
        );
        assert_eq!(f.filter(cmd(&["DEL", "SHARDSYNC_HEARTBEAT"])), Action::Skip(SkipReason::HeartbeatKey));
        assert_eq!(f.filter(cmd(&["MULTI"])), Action::Apply { db: 0, args: cmd(&["MULTI"]) }, "transactions pass");
        assert_eq!(f.filter(cmd(&["SET", "SHARDSYNC_HEARTBEAT:ckpt:s1", "x"])), Action::Skip(SkipReason::HeartbeatKey));
        // A channel named like the key is not the key.
        assert!(matches!(f.filter(cmd(&["PUBLISH", "SHARDSYNC_HEARTBEAT", "x"])), Action::Apply { .. }));
    }

    #[test]
    fn flushes_are_refused_by_default_and_forwarded_on_request() {
        let mut f = filter();
        f.filter(cmd(&["SELECT", "4"]));
        assert_eq!(f.filter(cmd(&["FLUSHDB"])), Action::Refused { command: "FLUSHDB".into(), db: Some(4) });
        assert_eq!(f.filter(cmd(&["flushall", "ASYNC"])), Action::Refused { command: "FLUSHALL".into(), db: None });
        let mut f = StreamFilter::new("HB", None, true);
        assert!(matches!(f.filter(cmd(&["FLUSHALL"])), Action::Apply { .. }));
    }
}
