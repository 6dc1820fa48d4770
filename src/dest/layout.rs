//! How a run of replicated commands, and a checkpoint move, become
//! destination commands: the one place that knows how a standalone
//! destination keeps a shard's checkpoint.
//!
//! With checkpoints in the destination (the default), the whole run goes
//! out as one `MULTI` … `EXEC` that also sets the shard's checkpoint key to
//! the offset after the run's last command: the destination holds both or
//! neither, so a resume after any crash neither repeats nor skips a write.
//! The source's own `MULTI`/`EXEC` markers are dropped inside it (a
//! transaction cannot nest; the run is atomic anyway, and the applier never
//! cuts a run inside a source transaction).
//!
//! Without them, the run goes out as it came, the source's transactions as
//! units. Either way a unit that spans databases carries its own `SELECT`s
//! (the writer selects only before a unit), and leaves the connection in
//! the database its `EXEC` is tagged with.

use bytes::Bytes;

use super::{ApplyBatch, ApplyCmd, CheckpointRecord, Guard, Origin, ReplyRule, CHECKPOINT_DB};
use crate::resp::Cmd;

/// Where and how a shard's checkpoint is kept on its destination; given
/// by [`super::Destination::open`], used by the pure batcher to lay out
/// what it cuts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    key: Bytes,
    /// The destination keeps the checkpoint (`checkpoint = "destination"`
    /// and it takes `MULTI`/`EXEC`); otherwise only the local file does.
    in_destination: bool,
    /// A Redis Cluster: a transaction stays within one slot, so a run is
    /// laid out per slot (see [`Layout::slot_units`]).
    cluster: bool,
}

impl Layout {
    pub fn new(key: Bytes, in_destination: bool) -> Self {
        Layout { key, in_destination, cluster: false }
    }

    /// The layout for a Redis Cluster destination.
    pub fn cluster(key: Bytes, in_destination: bool) -> Self {
        Layout { key, in_destination, cluster: true }
    }

    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The checkpoint key of one cluster slot: the shard's key with a hash
    /// tag that puts it in `slot`, so it can move in the same transaction
    /// as that slot's writes.
    pub fn slot_key(&self, slot: u16) -> Bytes {
        let tag = &super::cluster::slot::slot_tags()[usize::from(slot)];
        let mut key = Vec::with_capacity(self.key.len() + tag.len() + 3);
        key.extend_from_slice(&self.key);
        key.extend_from_slice(b":{");
        key.extend_from_slice(tag.as_bytes());
        key.push(b'}');
        Bytes::from(key)
    }

    /// Cluster: the shard's checkpoint key and every slot's (what `finish`
    /// removes and `verify` leaves out of the counts).
    pub fn all_keys(&self) -> impl Iterator<Item = Bytes> + '_ {
        let slots = super::cluster::slot::SLOTS as u16;
        std::iter::once(self.key.clone()).chain((0..slots).map(|s| self.slot_key(s)))
    }

    /// Cluster: lays out a run as one unit per slot, each moving that
    /// slot's checkpoint key from `before(slot)` to `record` in the same
    /// `MULTI`/`EXEC` as the slot's commands (in their order). A command
    /// without a key (routing key empty: sent to every master) ends the
    /// units before it and goes alone, so nothing crosses it. Returns the
    /// slots whose checkpoint the run moves.
    pub fn slot_units(
        &self,
        run: ApplyBatch,
        record: &CheckpointRecord,
        before: impl Fn(u16) -> Option<u64>,
        out: &mut Vec<ApplyCmd>,
    ) -> Vec<u16> {
        let mut touched = Vec::new();
        let mut segment: Vec<(u16, Vec<ApplyCmd>)> = Vec::new();
        let mut index: std::collections::HashMap<u16, usize> = std::collections::HashMap::new();
        let mut close = |segment: &mut Vec<(u16, Vec<ApplyCmd>)>,
                         index: &mut std::collections::HashMap<u16, usize>,
                         out: &mut Vec<ApplyCmd>| {
            for (slot, cmds) in segment.drain(..) {
                self.slot_unit(slot, cmds, record, before(slot), out);
                touched.push(slot);
            }
            index.clear();
        };
        for c in run.into_cmds() {
            if c.rule.is_marker() {
                continue;
            }
            if c.origin.key.is_empty() {
                close(&mut segment, &mut index, out);
                out.push(c);
                continue;
            }
            let slot = super::cluster::slot::slot_of(&c.origin.key);
            match index.get(&slot) {
                Some(&i) => segment[i].1.push(c),
                None => {
                    index.insert(slot, segment.len());
                    segment.push((slot, vec![c]));
                }
            }
        }
        close(&mut segment, &mut index, out);
        touched
    }

    /// One slot's unit: `cmds` (all in `slot`) and the move of the slot's
    /// checkpoint from `before` to `record`, in one transaction.
    pub fn slot_unit(
        &self,
        slot: u16,
        cmds: Vec<ApplyCmd>,
        record: &CheckpointRecord,
        before: Option<u64>,
        out: &mut Vec<ApplyCmd>,
    ) {
        let after = record.offset.unwrap_or(0);
        let key = self.slot_key(slot);
        let origin = Origin { db: CHECKPOINT_DB, key: key.clone(), offset: after };
        let mut multi = ApplyCmd::new(Cmd::new("MULTI"), origin.clone()).rule(ReplyRule::MultiOnce);
        multi.guard =
            Some(Box::new(Guard::Checkpoint { key: key.clone(), replid: record.replid.clone(), before, after }));
        out.push(multi);
        out.push(ApplyCmd::new(Cmd::new("SET").arg(&key).arg_bytes(record.encode()), origin.clone()));
        out.extend(cmds);
        out.push(ApplyCmd::new(Cmd::new("EXEC"), origin).rule(ReplyRule::Exec));
    }

    pub fn in_destination(&self) -> bool {
        self.in_destination
    }

    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// Sets the checkpoint to `record` outside a stream run (a full copy's
    /// "copying" mark, its end, a failover's new replication ID).
    pub fn checkpoint_set(&self, record: &CheckpointRecord) -> ApplyCmd {
        let origin = Origin { db: CHECKPOINT_DB, key: self.key.clone(), offset: record.offset.unwrap_or(0) };
        ApplyCmd::new(Cmd::new("SET").arg(&self.key).arg_bytes(record.encode()), origin)
    }

    /// Lays out a run that moves the checkpoint from offset `before` to
    /// `record` (when the destination keeps it), else as it came.
    pub fn run(&self, run: &mut ApplyBatch, moves: Option<(CheckpointRecord, u64)>, out: &mut impl Sink) {
        let ckpt = moves.filter(|_| self.in_destination).map(|(record, before)| CheckpointMove {
            key: self.key.clone(),
            record,
            before,
        });
        lay_out(run, ckpt, out)
    }
}

/// The checkpoint a run moves: key, the record after the run, and the
/// offset the destination's checkpoint is at before it.
pub struct CheckpointMove {
    pub key: Bytes,
    pub record: CheckpointRecord,
    pub before: u64,
}

/// Where laid-out commands go: a vector, or straight into the batch the
/// writer sends (a stream run under load is thousands of commands, and
/// each move through a vector first showed in profiles).
pub trait Sink {
    fn reserve(&mut self, n: usize);
    fn push(&mut self, c: ApplyCmd);
    /// Every command of `run`, in order, leaving it empty (its memory kept
    /// for the next run).
    fn append(&mut self, run: &mut ApplyBatch);
}

impl Sink for Vec<ApplyCmd> {
    fn reserve(&mut self, n: usize) {
        Vec::reserve(self, n)
    }

    fn push(&mut self, c: ApplyCmd) {
        Vec::push(self, c)
    }

    fn append(&mut self, run: &mut ApplyBatch) {
        self.extend(run.drain_cmds())
    }
}

impl Sink for ApplyBatch {
    fn reserve(&mut self, n: usize) {
        ApplyBatch::reserve(self, n)
    }

    fn push(&mut self, c: ApplyCmd) {
        ApplyBatch::push(self, c)
    }

    fn append(&mut self, run: &mut ApplyBatch) {
        ApplyBatch::move_from(self, run)
    }
}

/// Lays out `run` (filtered stream commands, the source's transaction
/// markers tagged `Multi`/`Exec`). See the module docs.
pub fn lay_out(run: &mut ApplyBatch, checkpoint: Option<CheckpointMove>, out: &mut impl Sink) {
    // A run under load is thousands of commands: grown once, not by doubling.
    out.reserve(run.len() + 4);
    match checkpoint {
        Some(ckpt) => wrap(run, ckpt, out),
        None => plain(run, out),
    }
}

fn select(db: u32) -> ApplyCmd {
    ApplyCmd::new(Cmd::new("SELECT").arg(db.to_string()), Origin { db, ..Origin::default() })
}

fn wrap(run: &mut ApplyBatch, ckpt: CheckpointMove, out: &mut impl Sink) {
    let after = ckpt.record.offset.unwrap_or(ckpt.before);
    let origin = Origin { db: CHECKPOINT_DB, key: ckpt.key.clone(), offset: after };
    let mut multi = ApplyCmd::new(Cmd::new("MULTI"), origin.clone()).rule(ReplyRule::MultiOnce);
    multi.guard = Some(Box::new(Guard::Checkpoint {
        key: ckpt.key.clone(),
        replid: ckpt.record.replid.clone(),
        before: Some(ckpt.before),
        after,
    }));
    out.push(multi);
    out.push(ApplyCmd::new(Cmd::new("SET").arg(&ckpt.key).arg_bytes(ckpt.record.encode()), origin.clone()));
    let mut db = CHECKPOINT_DB;
    // Most runs: commands in the checkpoint's DB, no source transaction
    // markers. They go over as they are, the whole run at once.
    if run.meta.iter().all(|m| m.origin.db == CHECKPOINT_DB && !m.rule.is_marker()) {
        out.append(run);
        out.push(ApplyCmd::new(Cmd::new("EXEC"), origin).rule(ReplyRule::Exec));
        return;
    }
    for c in run.drain_cmds() {
        if c.rule.is_marker() {
            continue;
        }
        if c.origin.db != db {
            db = c.origin.db;
            out.push(select(db));
        }
        out.push(c);
    }
    // Back to the checkpoint's DB, where the next run's MULTI expects the
    // connection: no SELECT round trip between runs.
    if db != CHECKPOINT_DB {
        out.push(select(CHECKPOINT_DB));
    }
    out.push(ApplyCmd::new(Cmd::new("EXEC"), origin).rule(ReplyRule::Exec));
}

fn plain(run: &mut ApplyBatch, out: &mut impl Sink) {
    // Without a source transaction, nothing below changes a command.
    if !run.meta.iter().any(|m| m.rule == ReplyRule::Multi) {
        return out.append(run);
    }
    let mut in_unit: Option<u32> = None;
    for mut c in run.drain_cmds() {
        match (&c.rule, in_unit) {
            (ReplyRule::Multi, _) => in_unit = Some(c.origin.db),
            (ReplyRule::Exec, Some(db)) => {
                c.origin.db = db;
                in_unit = None;
            }
            (_, Some(db)) if c.origin.db != db => {
                in_unit = Some(c.origin.db);
                out.push(select(c.origin.db));
            }
            _ => {}
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &str, db: u32, offset: u64) -> ApplyCmd {
        let rule = match args {
            "MULTI" => ReplyRule::Multi,
            "EXEC" => ReplyRule::Exec,
            _ => ReplyRule::Ok,
        };
        ApplyCmd::new(Cmd::from_args(args.split(' ')), Origin { db, key: Bytes::new(), offset }).rule(rule)
    }

    fn shown(out: &[ApplyCmd]) -> Vec<String> {
        out.iter()
            .map(|c| {
                let args: Vec<String> = c.cmd.args().iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
                format!("{}@{}", args.join(" "), c.origin.db)
            })
            .collect()
    }

    #[test]
    fn a_checkpointed_run_is_one_unit_with_its_selects_and_no_nested_transaction() {
        let run = vec![
            cmd("INCR a", 0, 10),
            cmd("MULTI", 2, 20),
            cmd("LPUSH l x", 2, 30),
            cmd("EXEC", 2, 40),
            cmd("SET b 1", 0, 50),
        ];
        let record = CheckpointRecord { replid: "r".repeat(40), offset: Some(50), db: None, updated_ms: 1 };
        let ckpt = CheckpointMove { key: Bytes::from_static(b"HB:ckpt:s1"), record: record.clone(), before: 5 };
        let mut out = Vec::new();
        lay_out(&mut run.into_iter().collect(), Some(ckpt), &mut out);
        let set = format!("SET HB:ckpt:s1 {}@0", String::from_utf8_lossy(&record.encode()));
        assert_eq!(
            shown(&out),
            ["MULTI@0", &set, "INCR a@0", "SELECT 2@2", "LPUSH l x@2", "SELECT 0@0", "SET b 1@0", "EXEC@0"]
        );
        assert_eq!(out[0].rule, ReplyRule::MultiOnce);
        assert_eq!(
            out[0].guard.as_deref().cloned(),
            Some(Guard::Checkpoint {
                key: Bytes::from_static(b"HB:ckpt:s1"),
                replid: "r".repeat(40),
                before: Some(5),
                after: 50
            })
        );
        assert_eq!(out.last().unwrap().rule, ReplyRule::Exec);
    }

    #[test]
    fn a_cluster_run_is_one_unit_per_slot_each_moving_its_own_checkpoint() {
        let layout = Layout::cluster(Bytes::from_static(b"HB:ckpt:s1"), true);
        let keyed = |args: &str, key: &'static [u8], offset| {
            let mut c = cmd(args, 0, offset);
            c.origin.key = Bytes::from_static(key);
            c
        };
        let run = vec![
            keyed("INCR foo", b"foo", 10),
            keyed("LPUSH bar x", b"bar", 20),
            keyed("INCR {foo}2", b"{foo}2", 30),
            keyed("SCRIPT LOAD s", b"", 40),
            keyed("INCR foo", b"foo", 50),
        ];
        let record = CheckpointRecord { replid: "r".repeat(40), offset: Some(50), db: Some(0), updated_ms: 1 };
        let mut out = Vec::new();
        let touched = layout.slot_units(run.into_iter().collect(), &record, |s| (s == 12182).then_some(7), &mut out);
        assert_eq!(touched, [12182, 5061, 12182]);
        let foo_key = layout.slot_key(12182);
        assert_eq!(crate::dest::cluster::slot::slot_of(&foo_key), 12182);
        let names: Vec<String> = shown(&out).into_iter().map(|s| s.split(' ').next().unwrap().to_owned()).collect();
        assert_eq!(
            names,
            [
                "MULTI@0", "SET", "INCR", "INCR", "EXEC@0", // foo's slot: both its commands
                "MULTI@0", "SET", "LPUSH", "EXEC@0", // bar's slot
                "SCRIPT", // alone, to every master
                "MULTI@0", "SET", "INCR", "EXEC@0",
            ]
        );
        assert_eq!(
            out[0].guard.as_deref().cloned(),
            Some(Guard::Checkpoint { key: foo_key.clone(), replid: "r".repeat(40), before: Some(7), after: 50 })
        );
        assert!(matches!(out[5].guard.as_deref(), Some(Guard::Checkpoint { before: None, .. })));
    }

    #[test]
    fn a_run_ending_in_another_db_returns_to_the_checkpoint_db() {
        let record = CheckpointRecord { replid: "r".repeat(40), offset: Some(9), db: None, updated_ms: 1 };
        let ckpt = CheckpointMove { key: Bytes::from_static(b"k"), record, before: 1 };
        let mut out = Vec::new();
        lay_out(&mut [cmd("SET a 1", 3, 9)].into_iter().collect(), Some(ckpt), &mut out);
        let names: Vec<String> = shown(&out).into_iter().filter(|s| !s.starts_with("SET k")).collect();
        assert_eq!(names, ["MULTI@0", "SELECT 3@3", "SET a 1@3", "SELECT 0@0", "EXEC@0"]);
    }

    #[test]
    fn without_checkpoints_source_transactions_stay_units_with_their_selects() {
        let run = vec![
            cmd("SET a 1", 1, 1),
            cmd("MULTI", 1, 2),
            cmd("SET b 1", 1, 3),
            cmd("SET c 1", 4, 4),
            cmd("EXEC", 4, 5),
        ];
        let mut out = Vec::new();
        lay_out(&mut run.into_iter().collect(), None, &mut out);
        assert_eq!(shown(&out), ["SET a 1@1", "MULTI@1", "SET b 1@1", "SELECT 4@4", "SET c 1@4", "EXEC@4"]);
    }

    #[test]
    fn a_run_in_the_checkpoint_db_without_transactions_goes_over_whole_into_either_sink() {
        let run =
            || -> ApplyBatch { [cmd("SET a 1", 0, 1), cmd("INCR b", 0, 2), cmd("DEL c", 0, 3)].into_iter().collect() };
        let record = CheckpointRecord { replid: "r".repeat(40), offset: Some(3), db: None, updated_ms: 1 };
        let ckpt = || CheckpointMove { key: Bytes::from_static(b"k"), record: record.clone(), before: 1 };
        let set = format!("SET k {}@0", String::from_utf8_lossy(&record.encode()));
        let expected = ["MULTI@0", &set, "SET a 1@0", "INCR b@0", "DEL c@0", "EXEC@0"];
        let mut out = Vec::new();
        lay_out(&mut run(), Some(ckpt()), &mut out);
        assert_eq!(shown(&out), expected);
        // Into a batch (as the stream's runs go): the same commands, and
        // its byte count covers every one of them.
        let mut batch = ApplyBatch::new();
        batch.push(cmd("PING", 0, 0));
        let mut taken = run();
        lay_out(&mut taken, Some(ckpt()), &mut batch);
        assert!(taken.is_empty() && taken.bytes() == 0, "the run is left empty");
        let wire: usize = batch.commands().iter().map(crate::dest::batch::wire_len).sum();
        assert_eq!(batch.bytes(), wire);
        let batch: Vec<ApplyCmd> = batch.into_cmds().skip(1).collect();
        assert_eq!(shown(&batch), expected);
        assert_eq!(batch[0].rule, ReplyRule::MultiOnce);
        assert_eq!(batch.last().unwrap().rule, ReplyRule::Exec);
        // Without a checkpoint: the run as it is.
        let mut out = Vec::new();
        lay_out(&mut run(), None, &mut out);
        assert_eq!(shown(&out), ["SET a 1@0", "INCR b@0", "DEL c@0"]);
    }
}
