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

use crate::resp::{Cmd, UpperName};

/// What the engine does with one replicated command.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Apply `cmd` on the destination, in destination database `db`: the
    /// command as it came (its bytes kept, [`Cmd::as_sent`]) unless the
    /// filter had to change it (a mapped DB number).
    Apply { db: u32, cmd: Cmd },
    /// The tool's own heartbeat came back: its value is the source's clock
    /// (ms) when it was written, so now − value is the lag.
    Heartbeat { sent_ms: i64 },
    /// Not applied, with the reason (keep-alives, filtered databases, the
    /// stream's own bookkeeping). Counted, never an error.
    Skip(SkipReason),
    /// Not applied and the operator must know: a command that in a merged
    /// destination would reach the other shards' data (`FLUSHALL`,
    /// `FLUSHDB`, `SWAPDB`, `FUNCTION FLUSH`…), refused by `sync.flush`;
    /// `why` says what it would do and how to have it applied.
    Refused { command: String, db: Option<u32>, why: String },
    /// Not applied, and the shard pauses until the operator resumes it
    /// (then goes on without it): the command cannot be mirrored, e.g. a
    /// `MOVE` from a DB the task does not copy into one it does, whose value
    /// is not in the stream. `reason` names the key, the DBs and the fix.
    Halt { command: String, reason: String },
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
    /// A `MOVE` between two source DBs the task merges into one
    /// destination DB: the key stays where it is.
    SameDb,
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
    /// The task merges several sources into the destination.
    merged: bool,
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
            merged: false,
            db: 0,
        }
    }

    /// The task has several sources: commands that reach every shard's
    /// data in the destination are refused even under `flush = "forward"`.
    pub fn merged(mut self, merged: bool) -> Self {
        self.merged = merged;
        self
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

    pub fn filter(&mut self, cmd: Cmd) -> Action {
        // Arguments are read in place (`arg_at`): a streamed command is
        // looked at, not taken apart; only the rare commands handled below
        // ask for all of them.
        let Some(name) = cmd.arg_at(0) else { return Action::Skip(SkipReason::KeepAlive) };
        let upper = UpperName::of(name);
        let name = upper.as_str();
        match name {
            "PING" | "REPLCONF" => return Action::Skip(SkipReason::KeepAlive),
            "SELECT" => {
                if let Some(db) = cmd.arg_at(1).and_then(|d| std::str::from_utf8(d).ok()?.parse().ok()) {
                    self.db = db;
                }
                return Action::Skip(SkipReason::Select);
            }
            _ => {}
        }
        if let Some(key) = cmd.arg_at(1) {
            if key == self.heartbeat_key && !is_keyless(name) {
                if name == "SET" {
                    if let Some(ms) = cmd.arg_at(2).and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()) {
                        return Action::Heartbeat { sent_ms: ms };
                    }
                }
                return Action::Skip(SkipReason::HeartbeatKey);
            }
            if key.starts_with(&self.ckpt_prefix) && !is_keyless(name) {
                return Action::Skip(SkipReason::HeartbeatKey);
            }
        }
        let refuse = |why: &str| Action::Refused { command: name.into(), db: None, why: why.to_owned() };
        const WIPES: &str = "in a merged destination it would also delete the other shards' keys; delete this \
                             shard's keys yourself if intended, or set flush = \"forward\"";
        match name {
            "FLUSHALL" if !self.forward_flush => return refuse(WIPES),
            "FLUSHDB" if !self.forward_flush => {
                return Action::Refused { command: name.into(), db: Some(self.db), why: WIPES.to_owned() };
            }
            // Forwarded on request, and only from a single source: in a
            // merged destination it would wipe the other shards' keys.
            "FLUSHALL" | "FLUSHDB" if self.merged => {
                let db = (name == "FLUSHDB").then_some(self.db);
                return Action::Refused {
                    command: name.into(),
                    db,
                    why: "the task merges several sources, and it would also delete the other shards' keys; \
                          flush = \"forward\" applies it only when the task has a single source"
                        .to_owned(),
                };
            }
            // With a DB selection it would also wipe databases this task
            // does not own, so it is refused then too.
            "FLUSHALL" if self.db_map.is_some() => {
                return refuse(
                    "with a database selection it would also delete the destination's DBs this task does not copy; \
                     delete this shard's keys yourself if intended",
                );
            }
            "SWAPDB" => return self.swapdb(&cmd.args()),
            "FUNCTION" | "SCRIPT" => {
                if let Some(refusal) = self.library_wipe(name, &cmd.args()) {
                    return refusal;
                }
            }
            "MOVE" => return self.move_key(cmd),
            "COPY" => {
                if let Some(action) = self.copy_to_db(&cmd.args()) {
                    return action;
                }
            }
            _ => {}
        }
        // Transactions and pub/sub are not tied to a database's keys, but
        // MULTI/EXEC must reach the same connection in order, so they follow
        // the current DB like any write.
        match self.target_db(self.db) {
            Some(db) => Action::Apply { db, cmd },
            None if matches!(name, "MULTI" | "EXEC" | "PUBLISH") => Action::Apply { db: self.first_db(), cmd },
            None => Action::Skip(SkipReason::FilteredDb),
        }
    }

    fn first_db(&self) -> u32 {
        self.db_map.as_ref().and_then(|m| m.values().next().copied()).unwrap_or(0)
    }

    /// `SWAPDB a b`: it swaps every shard's data of those destination DBs,
    /// so it is applied (mapped) only on request and with a single source.
    fn swapdb(&self, args: &[Bytes]) -> Action {
        let refuse = |why: String| Action::Refused { command: "SWAPDB".into(), db: None, why };
        let dbs: Option<(u32, u32)> = (|| Some((db_arg(args.get(1)?)?, db_arg(args.get(2)?)?)))();
        let Some((a, b)) = dbs else { return refuse("its DB numbers are unreadable".to_owned()) };
        if !self.forward_flush {
            return refuse(format!(
                "it would swap destination DBs {a} and {b} for every shard in a merged destination; set \
                 flush = \"forward\" to apply it when the task has a single source"
            ));
        }
        if self.merged {
            return refuse(format!(
                "the task merges several sources, and swapping DBs {a} and {b} would move the other shards' keys \
                 too; swap them yourself after the cut-over if intended"
            ));
        }
        match (self.target_db(a), self.target_db(b)) {
            (Some(ta), Some(tb)) if ta != tb => {
                let args = vec![args[0].clone(), Bytes::from(ta.to_string()), Bytes::from(tb.to_string())];
                Action::Apply { db: self.target_db(self.db).unwrap_or(ta), cmd: Cmd::from_bytes(args) }
            }
            (Some(t), Some(_)) => {
                refuse(format!("DBs {a} and {b} are both copied into destination DB {t}: there is nothing to swap"))
            }
            _ => refuse(format!(
                "the task does not copy both DBs {a} and {b}, so the destination cannot mirror the swap; copy both \
                 DBs, or resynchronise after it"
            )),
        }
    }

    /// `FUNCTION FLUSH`/`DELETE`, `FUNCTION RESTORE … FLUSH`, `SCRIPT FLUSH`:
    /// they remove what every shard loaded, so they pass only on request
    /// and with a single source. `None`: any other form.
    fn library_wipe(&self, name: &str, args: &[Bytes]) -> Option<Action> {
        let sub = UpperName::of(args.get(1).map(|a| a.as_ref()).unwrap_or_default());
        let wipes = match (name, sub.as_str()) {
            ("FUNCTION", "FLUSH" | "DELETE") | ("SCRIPT", "FLUSH") => true,
            ("FUNCTION", "RESTORE") => args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"FLUSH")),
            _ => false,
        };
        if !wipes || (self.forward_flush && !self.merged) {
            return None;
        }
        let command = format!("{name} {}", sub.as_str());
        let why = if self.merged {
            "the task merges several sources, and it would also remove what the other shards loaded; run it on \
             the destination yourself if intended"
        } else {
            "it removes scripts or functions from the destination; set flush = \"forward\" to apply it"
        };
        Some(Action::Refused { command, db: None, why: why.to_owned() })
    }

    /// `MOVE key db`, mirrored for the DBs the task copies (see the module
    /// docs).
    fn move_key(&self, cmd: Cmd) -> Action {
        let args = cmd.args();
        let (Some(key), Some(to)) = (args.get(1), args.get(2).and_then(db_arg)) else {
            return self.plain(cmd);
        };
        match (self.target_db(self.db), self.target_db(to)) {
            (Some(from), Some(into)) if from == into => Action::Skip(SkipReason::SameDb),
            (Some(from), Some(into)) => Action::Apply {
                db: from,
                cmd: Cmd::from_bytes(vec![args[0].clone(), key.clone(), Bytes::from(into.to_string())]),
            },
            // Out of the copied DBs: the destination mirrors only those.
            (Some(from), None) => {
                Action::Apply { db: from, cmd: Cmd::from_bytes(vec![Bytes::from_static(b"DEL"), key.clone()]) }
            }
            (None, Some(into)) => Action::Halt {
                command: "MOVE".into(),
                reason: format!(
                    "MOVE of key {} from source DB {} (not copied) into DB {to} (copied into destination DB {into}): \
                     its value is not in the stream, so the destination would miss it. Copy DB {} too, or write \
                     the key on the destination yourself, then resume (the MOVE is skipped)",
                    crate::display::quoted_key(key),
                    self.db,
                    self.db
                ),
            },
            (None, None) => Action::Skip(SkipReason::FilteredDb),
        }
    }

    /// `COPY src dst DB n …`: the target DB mapped; `None` without `DB`.
    fn copy_to_db(&self, args: &[Bytes]) -> Option<Action> {
        let at = args.iter().skip(3).position(|a| a.eq_ignore_ascii_case(b"DB"))? + 3;
        let to = args.get(at + 1).and_then(db_arg)?;
        Some(match (self.target_db(self.db), self.target_db(to)) {
            (Some(from), Some(into)) => {
                let mut args = args.to_vec();
                args[at + 1] = Bytes::from(into.to_string());
                Action::Apply { db: from, cmd: Cmd::from_bytes(args) }
            }
            (Some(_), None) => Action::Skip(SkipReason::FilteredDb),
            (None, Some(into)) => Action::Halt {
                command: "COPY".into(),
                reason: format!(
                    "COPY of key {} from source DB {} (not copied) into DB {to} (copied into destination DB {into}): \
                     its value is not in the stream, so the destination would miss the copy. Copy DB {} too, or \
                     write the key on the destination yourself, then resume (the COPY is skipped)",
                    crate::display::quoted_key(args.get(1)?),
                    self.db,
                    self.db
                ),
            },
            (None, None) => Action::Skip(SkipReason::FilteredDb),
        })
    }

    /// The current DB's mapping, as for any write.
    fn plain(&self, cmd: Cmd) -> Action {
        match self.target_db(self.db) {
            Some(db) => Action::Apply { db, cmd },
            None => Action::Skip(SkipReason::FilteredDb),
        }
    }
}

/// A DB number argument.
fn db_arg(arg: &Bytes) -> Option<u32> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// Commands whose second argument is not a key.
fn is_keyless(upper: &str) -> bool {
    matches!(
        upper,
        "PUBLISH" | "SPUBLISH" | "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "SCRIPT" | "FUNCTION"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(parts: &[&str]) -> Cmd {
        Cmd::from_args(parts)
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
    fn commands_passed_on_keep_their_bytes_and_changed_ones_do_not() {
        let came = |parts: &[&str]| {
            let args: Vec<Bytes> = parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes())).collect();
            let mut wire = format!("*{}\r\n", parts.len());
            for p in parts {
                wire.push_str(&format!("${}\r\n{p}\r\n", p.len()));
            }
            Cmd::as_sent(args, Bytes::from(wire))
        };
        let wire_of = |action: Action| match action {
            Action::Apply { cmd, .. } => cmd.wire().cloned(),
            other => panic!("not applied: {other:?}"),
        };
        let mut f = StreamFilter::new("HB", Some([(0, 0), (2, 1)].into_iter().collect()), false);
        assert!(wire_of(f.filter(came(&["SET", "a", "1"]))).is_some());
        assert!(wire_of(f.filter(came(&["MULTI"]))).is_some());
        // MOVE into a mapped DB carries the mapped number: rebuilt.
        assert_eq!(wire_of(f.filter(came(&["MOVE", "a", "2"]))), None);
        assert_eq!(wire_of(f.filter(came(&["COPY", "a", "b", "DB", "2"]))), None);
    }

    #[test]
    fn writes_follow_the_selected_db() {
        let mut f = filter();
        assert_eq!(f.filter(cmd(&["set", "a", "1"])), Action::Apply { db: 0, cmd: cmd(&["set", "a", "1"]) });
        assert_eq!(f.filter(cmd(&["SELECT", "3"])), Action::Skip(SkipReason::Select));
        assert_eq!(f.filter(cmd(&["SET", "b", "2"])), Action::Apply { db: 3, cmd: cmd(&["SET", "b", "2"]) });
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
        assert_eq!(f.filter(cmd(&["MULTI"])), Action::Apply { db: 0, cmd: cmd(&["MULTI"]) }, "transactions pass");
        assert_eq!(f.filter(cmd(&["SET", "SHARDSYNC_HEARTBEAT:ckpt:s1", "x"])), Action::Skip(SkipReason::HeartbeatKey));
        // A channel named like the key is not the key.
        assert!(matches!(f.filter(cmd(&["PUBLISH", "SHARDSYNC_HEARTBEAT", "x"])), Action::Apply { .. }));
    }

    fn refused(a: &Action) -> Option<(&str, Option<u32>)> {
        match a {
            Action::Refused { command, db, .. } => Some((command.as_str(), *db)),
            _ => None,
        }
    }

    #[test]
    fn flushes_are_refused_by_default_and_forwarded_on_request() {
        let mut f = filter();
        f.filter(cmd(&["SELECT", "4"]));
        assert_eq!(refused(&f.filter(cmd(&["FLUSHDB"]))), Some(("FLUSHDB", Some(4))));
        assert_eq!(refused(&f.filter(cmd(&["flushall", "ASYNC"]))), Some(("FLUSHALL", None)));
        let mut f = StreamFilter::new("HB", None, true);
        assert!(matches!(f.filter(cmd(&["FLUSHALL"])), Action::Apply { .. }));
        // Never in a merged destination, where it would wipe the other shards' keys.
        let mut f = StreamFilter::new("HB", None, true).merged(true);
        assert_eq!(refused(&f.filter(cmd(&["FLUSHALL"]))), Some(("FLUSHALL", None)));
        f.filter(cmd(&["SELECT", "2"]));
        assert_eq!(refused(&f.filter(cmd(&["FLUSHDB"]))), Some(("FLUSHDB", Some(2))));
    }

    #[test]
    fn swapdb_follows_the_flush_policy_and_needs_a_single_source() {
        let map = BTreeMap::from([(0, 0), (1, 1), (2, 0)]);
        let mut f = StreamFilter::new("HB", Some(map.clone()), false);
        assert_eq!(refused(&f.filter(cmd(&["SWAPDB", "0", "1"]))), Some(("SWAPDB", None)));
        // Forwarded on request, mapped, with one source only.
        let mut f = StreamFilter::new("HB", Some(map.clone()), true);
        assert_eq!(f.filter(cmd(&["SWAPDB", "1", "0"])), Action::Apply { db: 0, cmd: cmd(&["SWAPDB", "1", "0"]) });
        assert!(refused(&f.filter(cmd(&["SWAPDB", "0", "2"]))).is_some(), "both merged into DB 0");
        assert!(refused(&f.filter(cmd(&["SWAPDB", "0", "5"]))).is_some(), "DB 5 is not copied");
        let mut f = StreamFilter::new("HB", Some(map), true).merged(true);
        assert!(refused(&f.filter(cmd(&["SWAPDB", "0", "1"]))).is_some(), "several sources");
    }

    #[test]
    fn library_wipes_pass_only_on_request_with_a_single_source() {
        let mut f = filter();
        assert_eq!(refused(&f.filter(cmd(&["FUNCTION", "FLUSH"]))), Some(("FUNCTION FLUSH", None)));
        assert_eq!(refused(&f.filter(cmd(&["FUNCTION", "DELETE", "lib"]))), Some(("FUNCTION DELETE", None)));
        assert_eq!(refused(&f.filter(cmd(&["script", "flush"]))), Some(("SCRIPT FLUSH", None)));
        assert!(refused(&f.filter(cmd(&["FUNCTION", "RESTORE", "payload", "FLUSH"]))).is_some());
        assert!(matches!(f.filter(cmd(&["FUNCTION", "LOAD", "code"])), Action::Apply { .. }));
        assert!(matches!(f.filter(cmd(&["FUNCTION", "RESTORE", "payload", "APPEND"])), Action::Apply { .. }));
        let mut one = StreamFilter::new("HB", None, true);
        assert!(matches!(one.filter(cmd(&["FUNCTION", "FLUSH"])), Action::Apply { .. }));
        let mut merged = StreamFilter::new("HB", None, true).merged(true);
        assert!(refused(&merged.filter(cmd(&["SCRIPT", "FLUSH"]))).is_some());
    }

    #[test]
    fn move_mirrors_the_copied_dbs() {
        // DBs 0 and 1 copied as is, 2 merged into 0, 3 not copied.
        let map = BTreeMap::from([(0, 0), (1, 1), (2, 0)]);
        let mut f = StreamFilter::new("HB", Some(map), false);
        assert_eq!(f.filter(cmd(&["MOVE", "k", "1"])), Action::Apply { db: 0, cmd: cmd(&["MOVE", "k", "1"]) });
        assert_eq!(f.filter(cmd(&["MOVE", "k", "2"])), Action::Skip(SkipReason::SameDb), "0 and 2 are one DB");
        assert_eq!(f.filter(cmd(&["MOVE", "k", "3"])), Action::Apply { db: 0, cmd: cmd(&["DEL", "k"]) });
        f.filter(cmd(&["SELECT", "1"]));
        assert_eq!(f.filter(cmd(&["MOVE", "k", "2"])), Action::Apply { db: 1, cmd: cmd(&["MOVE", "k", "0"]) });
        f.filter(cmd(&["SELECT", "3"]));
        assert!(matches!(f.filter(cmd(&["MOVE", "k", "1"])), Action::Halt { .. }), "its value is not in the stream");
        assert_eq!(f.filter(cmd(&["MOVE", "k", "4"])), Action::Skip(SkipReason::FilteredDb));
    }

    #[test]
    fn copy_to_a_db_is_mapped() {
        let map = BTreeMap::from([(0, 0), (1, 5)]);
        let mut f = StreamFilter::new("HB", Some(map), false);
        assert_eq!(
            f.filter(cmd(&["COPY", "a", "b", "db", "1", "REPLACE"])),
            Action::Apply { db: 0, cmd: cmd(&["COPY", "a", "b", "db", "5", "REPLACE"]) }
        );
        assert_eq!(f.filter(cmd(&["COPY", "a", "b", "DB", "7"])), Action::Skip(SkipReason::FilteredDb));
        assert_eq!(f.filter(cmd(&["COPY", "a", "b"])), Action::Apply { db: 0, cmd: cmd(&["COPY", "a", "b"]) });
        f.filter(cmd(&["SELECT", "7"]));
        assert!(matches!(f.filter(cmd(&["COPY", "a", "b", "DB", "1"])), Action::Halt { .. }));
    }
}
