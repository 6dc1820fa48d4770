//! The pure half of a shard's destination side: items in, batches with
//! their checkpoint moves out. No I/O and no clock of its own (the caller
//! passes `now_ms`), so every rule below is unit-tested without a server.
//!
//! The batcher keeps the position the destination holds (the replication
//! ID, the offset after the last confirmed write, the source DB the stream
//! is in there) and what a link has taken in but not applied yet:
//!
//! * snapshot keys become destination commands through the [`Rewriter`];
//! * stream commands are collected as a *run*, translated for older
//!   destinations, and a run is never cut inside a source transaction;
//! * [`Batcher::cut`] lays the run out with the checkpoint move it makes
//!   (the destination's [`Layout`]: one `MULTI`/`EXEC` that also moves the
//!   checkpoint key) and hands the batch over; what was cut stays in the
//!   batch until the destination confirmed all of it, so a checkpoint only
//!   ever moves with the commands it covers;
//! * [`Batcher::confirmed`] then moves the position and says what the
//!   shard's status and the spool may learn from it.
//!
//! Commands that cannot be mirrored are collected as *halts*: the shard
//! pauses once what came before them is applied.

use std::collections::HashMap;

use bytes::Bytes;

use crate::dest::cluster::keys::key_of;
use crate::dest::{
    ApplyBatch, ApplyCmd, CheckpointRecord, DestCaps, Layout, Origin, ReplyRule, RewriteError, RewriteOptions,
    RewriteStats, RewriteWarning, Rewriter, Translation,
};
use crate::rdb::Event;
use crate::source::PsyncPosition;

use super::checkpoint::Checkpoint;
use super::filter::Action;
use crate::resp::Cmd;

/// Most commands in one batch of the snapshot (RESTOREs and key builds):
/// more would only raise memory (a batch and its encoding are held until
/// confirmed), not speed.
pub const SNAPSHOT_BATCH_CMDS: usize = 2048;
/// Most commands in one batch of the command stream. With checkpoints in
/// the destination a stream batch is one MULTI/EXEC, which the destination
/// runs only once it holds all of it, and the next batch waits for its
/// replies: two hand-offs between this process and the destination per
/// batch, and on a busy machine each waits for a CPU. When the stream runs
/// ahead, bigger batches mean fewer hand-offs. Under `redis-benchmark -P
/// 16` with everything on 2 cores, alternating runs, probe lag p99 with SET
/// only: 2048: 210–1345 ms, 16384: 64–644, 32768: 93–275; with SET, LPUSH
/// and HSET: 2048: 107–833 (median 306), 16384: 132–582 (median 250). The
/// price: the destination holds queued arguments until EXEC (about 5% more
/// CPU per command than with 2048), and an EXEC of 16384 commands holds it
/// for about 20 ms.
pub const STREAM_BATCH_CMDS: usize = 16384;
pub const BATCH_BYTES: usize = 8 << 20;

/// Where a shard stands on the destination when its applier starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// `None` before a full copy is applied.
    pub replid: Option<String>,
    /// The offset after the last confirmed write of the stream of `replid`;
    /// `None` while a full copy is not whole.
    pub applied: Option<u64>,
    /// The source DB the stream is in at `applied` (where a resume starts).
    pub stream_db: u32,
    /// The destination holds keys of an earlier copy of this shard: a new
    /// full copy replaces them rather than reporting them as collisions.
    pub ours_on_dest: bool,
    /// A cluster: the offset each slot's own checkpoint is at (slots the
    /// stream wrote since `applied`'s copy). A slot is past `applied` when
    /// its batch was confirmed on its master while another master's part
    /// was not: on resume, what it holds already is not applied again.
    pub slots: HashMap<u16, u64>,
}

/// What a cut asks of the rate limit: the keys (snapshot keys and stream
/// commands) and bytes it added to the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub keys: u64,
    pub bytes: u64,
}

/// What a confirmed batch brought the destination to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmed {
    /// RDB bytes of the snapshot the batch covered (the offset after them).
    pub rdb_applied: Option<u64>,
    /// The stream offset now applied.
    pub applied: Option<u64>,
    /// The full copy became whole with this batch.
    pub copy_whole: bool,
    /// The spool may release up to this position.
    pub release: Option<u64>,
    /// The source clock of the newest heartbeat now applied.
    pub heartbeat: Option<i64>,
    /// What the destination's checkpoint says now, when it keeps one and
    /// it is known (a full copy's "copying" mark, or the applied offset):
    /// a new connection that finds anything else lost confirmed writes.
    pub checkpoint: Option<CheckpointRecord>,
}

/// See the module docs.
pub struct Batcher {
    shard: String,
    layout: Layout,
    ropts: RewriteOptions,
    rewriter: Rewriter,
    pos: Position,
    /// A cluster: the offset the shard's own checkpoint key says every
    /// slot has reached (written after the batches that reach it are
    /// confirmed on every master).
    floor: Option<u64>,
    work: Work,
}

impl Batcher {
    /// `ropts`: how snapshot keys are written (the task's conflict mode,
    /// DB map, big-key size, module policy); `pos`: where the destination
    /// stands.
    pub fn new(shard: String, layout: Layout, ropts: RewriteOptions, pos: Position) -> Self {
        let rewriter = rewriter_for(&ropts, pos.ours_on_dest);
        let floor = pos.applied;
        Batcher { shard, layout, ropts, rewriter, pos, floor, work: Work::default() }
    }

    pub fn caps(&self) -> DestCaps {
        self.ropts.caps
    }

    pub fn rewrite_options(&self) -> &RewriteOptions {
        &self.ropts
    }

    pub fn rewrite_stats(&self) -> &RewriteStats {
        self.rewriter.stats()
    }

    pub fn position(&self) -> &Position {
        &self.pos
    }

    /// Where the next link asks the master to continue from; `None`: a full copy.
    pub fn resume_position(&self) -> Option<PsyncPosition> {
        match (&self.pos.replid, self.pos.applied) {
            (Some(replid), Some(offset)) => Some(PsyncPosition { replid: replid.clone(), offset }),
            _ => None,
        }
    }

    /// Whether a full copy is being applied (no stream offset applied yet).
    pub fn copying(&self) -> bool {
        self.pos.applied.is_none()
    }

    /// The local checkpoint file's record, once a stream offset is applied.
    pub fn local_checkpoint(&self, now_ms: i64) -> Option<Checkpoint> {
        match (&self.pos.replid, self.pos.applied) {
            (Some(replid), Some(offset)) => {
                Some(Checkpoint { replid: replid.clone(), offset, db: Some(self.pos.stream_db), updated_ms: now_ms })
            }
            _ => None,
        }
    }

    /// A new link: nothing taken in yet.
    pub fn begin_link(&mut self) {
        self.work = Work::default();
        self.rewriter = rewriter_for(&self.ropts, self.pos.ours_on_dest);
    }

    /// The destination lost confirmed writes: continue from what its
    /// checkpoint says it holds (`None`: copy again), and, on a cluster,
    /// from what each slot's own checkpoint says it holds beyond that.
    pub fn restart_from(&mut self, record: Option<CheckpointRecord>, slots: Vec<(u16, u64)>) {
        let (replid, applied, db) = match record {
            Some(r) => (Some(r.replid), r.offset, r.db.unwrap_or(0)),
            None => (None, None, 0),
        };
        let slots = if replid.is_some() { slots.into_iter().collect() } else { HashMap::new() };
        self.pos = Position { replid, applied, stream_db: db, ours_on_dest: true, slots };
        self.floor = self.pos.applied;
    }

    /// Like [`Batcher::restart_from`] for a destination that lost part of
    /// the copy itself (a cluster master that came back empty): nothing
    /// can resume, a full copy follows; it deletes the slots' checkpoints
    /// (`slots`, those still there) first.
    pub fn copy_again(&mut self, slots: Vec<(u16, u64)>) {
        self.pos = Position {
            replid: None,
            applied: None,
            stream_db: 0,
            ours_on_dest: true,
            slots: slots.into_iter().collect(),
        };
        self.floor = None;
    }

    /// A full copy begins; the stream after it starts at `offset`.
    pub fn full_resync(&mut self, replid: String, offset: u64, now_ms: i64) {
        // A copy over our own earlier copy replaces whole keys.
        self.rewriter = rewriter_for(&self.ropts, self.pos.ours_on_dest);
        // The slots' checkpoints of the old stream go: the new one starts
        // with none, and its first unit per slot expects none.
        for slot in std::mem::take(&mut self.pos.slots).into_keys() {
            let key = self.layout.slot_key(slot);
            let origin = Origin { db: 0, key: key.clone(), offset };
            self.push(ApplyCmd::new(crate::resp::Cmd::new("DEL").arg(&key), origin));
        }
        self.pos = Position {
            replid: Some(replid.clone()),
            applied: None,
            stream_db: 0,
            ours_on_dest: true,
            slots: HashMap::new(),
        };
        self.floor = None;
        // The master starts a new replica's stream with a SELECT.
        self.work.stream_db = 0;
        self.work.rdb_start = Some(offset);
        if self.layout.in_destination() {
            let record = CheckpointRecord { replid, offset: None, db: None, updated_ms: now_ms };
            self.push(self.layout.checkpoint_set(&record));
        }
    }

    /// The master continues the stream, under `replid` when it is a new
    /// one (a failover: the new master's history continues ours).
    pub fn continued(&mut self, replid: Option<String>, now_ms: i64) {
        let Some(new) = replid.filter(|r| Some(r) != self.pos.replid.as_ref()) else { return };
        self.pos.replid = Some(new.clone());
        if let (true, Some(offset)) = (self.layout.in_destination(), self.pos.applied) {
            let record = CheckpointRecord {
                replid: new,
                offset: Some(offset),
                db: Some(self.pos.stream_db),
                updated_ms: now_ms,
            };
            self.push(self.layout.checkpoint_set(&record));
        }
    }

    /// An event of the snapshot, with the RDB bytes read after it.
    pub fn rdb(&mut self, event: Event, rdb_offset: u64, now_ms: i64) -> Result<Vec<RewriteWarning>, RewriteError> {
        let ends_key = matches!(event, Event::KeyEnd { .. });
        self.work.rdb_applied = Some(rdb_offset);
        let before = self.work.pending.len();
        self.rewriter.feed(event, rdb_offset, now_ms, &mut self.work.pending)?;
        self.work.bytes += self.work.pending[before..].iter().map(ApplyCmd::wire_len).sum::<usize>();
        if ends_key {
            self.work.keys += 1;
        }
        Ok(self.rewriter.take_warnings())
    }

    /// A Lua script of the snapshot, loaded so `EVALSHA` never misses.
    pub fn script(&mut self, body: Bytes) {
        self.push(ApplyCmd::new(crate::resp::Cmd::new("SCRIPT").arg("LOAD").arg_bytes(body), Origin::default()));
    }

    /// A function library of the snapshot.
    pub fn function(&mut self, code: Bytes) {
        let cmd = crate::resp::Cmd::new("FUNCTION").arg("LOAD").arg("REPLACE").arg_bytes(code);
        self.push(ApplyCmd::new(cmd, Origin::default()));
    }

    /// Every key of the snapshot is confirmed and accounted for: the
    /// checkpoint may say the copy is whole, and the stream's first command
    /// counts from its start offset.
    ///
    /// Into a cluster, `marker_slots` (one slot served by each master) get
    /// their checkpoint at that offset too, in the same batch: every master
    /// then holds a checkpoint its writer tracks, so a master that restarts
    /// without its data is caught even if the stream never wrote to it
    /// (see `DestWriter::track_checkpoints`). It says nothing a slot did
    /// not already have: the stream's commands all come after that offset.
    pub fn snapshot_applied(&mut self, now_ms: i64, marker_slots: &[u16]) {
        self.work.offset = self.work.rdb_start;
        self.rewriter.forget_db();
        let (true, Some(replid), Some(offset)) = (self.layout.in_destination(), &self.pos.replid, self.work.rdb_start)
        else {
            return;
        };
        let record = CheckpointRecord { replid: replid.clone(), offset: Some(offset), db: None, updated_ms: now_ms };
        let set = self.layout.checkpoint_set(&record);
        self.push(set);
        self.work.floor_queued = Some(offset);
        if !self.layout.is_cluster() {
            return;
        }
        let record = CheckpointRecord { db: Some(self.work.stream_db), ..record };
        let mut units = Vec::new();
        for &slot in marker_slots {
            let work = &mut self.work;
            let before = work.slots_queued.get(&slot).or(self.pos.slots.get(&slot)).copied();
            if before.is_some_and(|at| at >= offset) {
                continue;
            }
            self.layout.slot_unit(slot, Vec::new(), &record, before, &mut units);
            work.slots_queued.insert(slot, offset);
        }
        for c in units {
            self.push(c);
        }
    }

    /// Into a cluster while streaming: `slots` get their checkpoint at the
    /// offset of the next cut, after everything before it (one per master
    /// whose writer tracks none: it took its slots by a resharding, or its
    /// tracked ones moved away; see `ClusterWriter::unmarked_slots`). As
    /// with [`Batcher::snapshot_applied`]'s marks, it says nothing a slot
    /// did not have: every command of the slot up to that offset is queued
    /// before it. Replaces the slots asked for before.
    pub fn mark_slots(&mut self, slots: Vec<u16>) {
        self.work.marks = slots;
    }

    /// A filtered stream command at replication offset `offset` (after it),
    /// spool `position`; `source_db`: the stream's DB after it. Returns the
    /// alert for a command the flush policy refused.
    pub fn stream(&mut self, action: Action, offset: u64, position: u64, source_db: u32) -> Option<String> {
        let mut alert = None;
        match action {
            Action::Apply { db, cmd } => self.apply_command(cmd, db, offset),
            // Counted once the batch that carries it is confirmed: the lag is
            // how old the newest heartbeat the destination holds is.
            Action::Heartbeat { sent_ms } => {
                self.work.heartbeat = Some(self.work.heartbeat.map_or(sent_ms, |h| h.max(sent_ms)))
            }
            Action::Skip(_) => {}
            Action::Refused { command, db, why } => {
                let where_ = db.map(|d| format!(" on db {d}")).unwrap_or_default();
                let shard = &self.shard;
                alert =
                    Some(format!("{command}{where_} from source {shard} at offset {offset} was NOT applied: {why}"));
            }
            Action::Halt { command, reason } => {
                let shard = &self.shard;
                self.work
                    .halts
                    .push(format!("shard {shard}: {command} at source offset {offset} was NOT applied: {reason}"));
            }
        }
        let work = &mut self.work;
        work.offset = Some(offset);
        work.position = Some(position);
        if !work.in_multi {
            work.safe = Some((work.run.len(), offset, position));
        }
        work.stream_db = source_db;
        if !work.in_multi {
            work.safe_db = source_db;
        }
        alert
    }

    fn apply_command(&mut self, cmd: Cmd, db: u32, offset: u64) {
        if self.layout.is_cluster() {
            return self.apply_in_cluster(cmd, db, offset);
        }
        if let Some(cmds) = self.translated(&cmd, db, offset) {
            for c in cmds {
                self.work.bytes += c.wire_len();
                self.work.run.push(c);
            }
            self.work.units += 1;
            return;
        }
        let key = key_of(&cmd).unwrap_or_default();
        let name = cmd.arg_at(0).unwrap_or_default();
        let rule = if name.eq_ignore_ascii_case(b"MULTI") {
            self.work.in_multi = true;
            ReplyRule::Multi
        } else if name.eq_ignore_ascii_case(b"EXEC") {
            self.work.in_multi = false;
            ReplyRule::Exec
        } else {
            ReplyRule::Ok
        };
        self.work.bytes += self.work.run.push_plain(cmd, Origin { db, key, offset }, rule);
        self.work.units += 1;
    }

    /// A cluster: the command goes to its slot (split per slot when that
    /// does the same, see [`crate::dest::cluster::keys`]); the source's
    /// transaction markers are dropped (each slot's part of a batch is a
    /// transaction of its own); what a slot already holds after a resume is
    /// not applied again; what a cluster cannot apply pauses the shard.
    fn apply_in_cluster(&mut self, cmd: Cmd, db: u32, offset: u64) {
        use crate::dest::cluster::keys::{route, Route};
        let args = cmd.args();
        let name = args.first().map(|a| a.as_ref()).unwrap_or_default();
        if name.eq_ignore_ascii_case(b"MULTI") {
            return self.work.in_multi = true;
        }
        if name.eq_ignore_ascii_case(b"EXEC") {
            return self.work.in_multi = false;
        }
        let shard = &self.shard;
        // For messages only: not built for the commands that go through.
        let shown = || String::from_utf8_lossy(name).to_ascii_uppercase();
        if db != 0 {
            self.work.halts.push(format!(
                "shard {shard}: {} at source offset {offset} was NOT applied: it writes to destination DB {db}, \
                 and a Redis Cluster has DB 0 only; map every copied source DB to 0 in [sync.db_map], or resume to go \
                 on without it",
                shown()
            ));
            return;
        }
        match route(&args) {
            Route::Slot { slot, key } => {
                if self.held_by_slot(slot, offset) {
                    return;
                }
                let cmds = self
                    .translated(&cmd, db, offset)
                    .unwrap_or_else(|| vec![ApplyCmd::new(cmd, Origin { db, key: key.clone(), offset })]);
                for mut c in cmds {
                    c.origin.key = key.clone();
                    self.push_run(c);
                }
            }
            Route::Split(parts) => {
                for (slot, part) in parts {
                    if !self.held_by_slot(slot, offset) {
                        let key = part[1].clone();
                        self.push_run(ApplyCmd::new(crate::resp::Cmd::from_bytes(part), Origin { db, key, offset }));
                    }
                }
            }
            Route::Broadcast => {
                let origin = Origin { db, key: Bytes::new(), offset };
                self.push_run(ApplyCmd::new(cmd, origin));
            }
            Route::Drop => {}
            Route::CrossSlot { keys } => {
                let keys: Vec<String> =
                    keys.iter().map(|(k, s)| format!("{} in slot {s}", crate::display::quoted_key(k))).collect();
                self.work.halts.push(format!(
                    "shard {shard}: {} at source offset {offset} was NOT applied: its keys are in different slots \
                     of the destination cluster ({}), and a cluster applies it only within one slot; resume to go on \
                     without it",
                    shown(),
                    keys.join(", ")
                ));
            }
            Route::Unsafe => self.work.halts.push(format!(
                "shard {shard}: {} at source offset {offset} was NOT applied: in a Redis Cluster it would have \
                 to run on every master, and a resumed stream could not tell where it already ran; apply it by hand \
                 if it is wanted, then resume to go on without it",
                shown()
            )),
        }
    }

    /// After a resume into a cluster: whether `slot` already holds the
    /// command at `offset` (its own checkpoint is at or past it).
    fn held_by_slot(&self, slot: u16, offset: u64) -> bool {
        self.pos.slots.get(&slot).is_some_and(|&at| offset <= at)
    }

    fn push_run(&mut self, c: ApplyCmd) {
        self.work.bytes += c.wire_len();
        self.work.units += 1;
        self.work.run.push(c);
    }

    /// What the destination gets instead of a replicated command it would
    /// refuse (see [`crate::dest::translate`]): `None` to send it as it
    /// came; otherwise the commands (none when it cannot be expressed: the
    /// shard then pauses at it, see `Work::halts`).
    fn translated(&mut self, cmd: &Cmd, db: u32, offset: u64) -> Option<Vec<ApplyCmd>> {
        let caps = self.ropts.caps;
        // Made only for a command that is rewritten: most go as they came.
        let origin = || Origin { db, key: key_of(cmd).unwrap_or_default(), offset };
        let is_restore = cmd.arg_at(0).is_some_and(|n| n.eq_ignore_ascii_case(b"RESTORE"));
        let shard = &self.shard;
        let now_ms = crate::clock::now_ms;
        // The payload is looked for only in a RESTORE: past the first three
        // arguments, finding it reads the headers before it.
        let payload = if is_restore { cmd.arg_at(3) } else { None };
        let commands: Vec<ApplyCmd> = match payload {
            // A payload of an RDB version the destination does not read.
            Some(payload) if !caps.accepts_payload(payload) => {
                match crate::dest::rewrite::restore_as_commands(&cmd.args(), caps, db, offset, now_ms()) {
                    Ok(cmds) => cmds,
                    Err(e) => {
                        let key = crate::display::quoted_key(&origin().key);
                        self.work.halts.push(format!(
                            "shard {shard}: RESTORE of key {key} (db {db}) at source offset {offset} cannot be \
                             rewritten for the destination ({}): {e}; resume to go on without it",
                            caps.server
                        ));
                        return Some(Vec::new());
                    }
                }
            }
            // The clock is read only for the rare form that needs it: this runs per command.
            _ => match crate::dest::translate(cmd, &caps, now_ms) {
                Translation::AsIs => return None,
                Translation::Commands(list) if list.len() == 1 => {
                    list.into_iter().map(|a| ApplyCmd::new(crate::resp::Cmd::from_bytes(a), origin())).collect()
                }
                Translation::Commands(list) => {
                    // One unit, as the original was one command.
                    let mut unit = vec![ApplyCmd::new(crate::resp::Cmd::new("MULTI"), origin()).rule(ReplyRule::Multi)];
                    unit.extend(list.into_iter().map(|a| ApplyCmd::new(crate::resp::Cmd::from_bytes(a), origin())));
                    unit.push(ApplyCmd::new(crate::resp::Cmd::new("EXEC"), origin()).rule(ReplyRule::Exec));
                    unit
                }
                Translation::Unsupported { form, since } => {
                    let name = String::from_utf8_lossy(cmd.arg_at(0).unwrap_or_default()).to_ascii_uppercase();
                    let key = crate::display::quoted_key(&origin().key);
                    let engine = match caps.server.engine {
                        crate::dest::Engine::Valkey => "Valkey",
                        crate::dest::Engine::Redis => "Redis",
                    };
                    self.work.halts.push(format!(
                        "shard {shard}: {name} of key {key} (db {db}) at source offset {offset} was NOT applied: the \
                         destination ({}) has no {form}, which needs {engine} {since} or newer; upgrade the \
                         destination, or resume to go on without it",
                        caps.server
                    ));
                    return Some(Vec::new());
                }
            },
        };
        // Inside a source transaction the markers would nest; the
        // transaction is a unit already.
        Some(if self.work.in_multi {
            commands.into_iter().filter(|c| !c.rule.is_multi() && c.rule != ReplyRule::Exec).collect()
        } else {
            commands
        })
    }

    /// Whether to apply now: when the batch is big, when nothing more is
    /// waiting (`idle`: low latency in incremental mode), at the snapshot's
    /// end (`now`), or before a halt; never inside a source transaction.
    /// `rate_keys`: the rate limit's batch size, when it sets one.
    pub fn due(&self, idle: bool, now: bool, rate_keys: Option<usize>) -> bool {
        let w = &self.work;
        let full = w.pending.len() >= SNAPSHOT_BATCH_CMDS
            || w.pending.len() + w.run.len() >= STREAM_BATCH_CMDS
            || w.bytes >= BATCH_BYTES
            || rate_keys.is_some_and(|k| (w.units + w.keys) as usize >= k);
        !w.in_multi && (now || idle || full || !w.halts.is_empty())
    }

    /// The halts taken since the last one, as one message; the shard
    /// pauses once what came before them is applied.
    pub fn take_halts(&mut self) -> Option<String> {
        (!self.work.halts.is_empty()).then(|| std::mem::take(&mut self.work.halts).join("; "))
    }

    pub fn has_halts(&self) -> bool {
        !self.work.halts.is_empty()
    }

    /// Moves what was taken in (whole units only) into the batch: the
    /// stream's run (and the offsets it moved by without any commands,
    /// keep-alives and heartbeats) laid out with its checkpoint move.
    /// Returns what it adds for the rate limit, `None` when nothing.
    pub fn cut(&mut self, now_ms: i64) -> Option<Charge> {
        let work = &mut self.work;
        let (held, held_bytes) = (work.batch.len(), work.batch.bytes());
        if let (Some(after), true, true) = (work.offset, work.run_started(), self.layout.is_cluster()) {
            let mut run = work.take_run();
            match (&self.pos.replid, self.layout.in_destination()) {
                (Some(replid), true) => {
                    let record = CheckpointRecord {
                        replid: replid.clone(),
                        offset: Some(after),
                        db: Some(work.stream_db),
                        updated_ms: now_ms,
                    };
                    let (queued, confirmed) = (&work.slots_queued, &self.pos.slots);
                    let before = |s: u16| queued.get(&s).or(confirmed.get(&s)).copied();
                    let touched = self.layout.slot_units(run, &record, before, &mut work.pending);
                    for slot in touched {
                        work.slots_queued.insert(slot, after);
                    }
                    for slot in std::mem::take(&mut work.marks) {
                        if work.slots_queued.get(&slot).is_some_and(|&at| at >= after) {
                            continue;
                        }
                        let before = work.slots_queued.get(&slot).or(self.pos.slots.get(&slot)).copied();
                        self.layout.slot_unit(slot, Vec::new(), &record, before, &mut work.pending);
                        work.slots_queued.insert(slot, after);
                    }
                    // Every slot has what came before this batch: the
                    // shard's checkpoint may say so now.
                    if let Some(applied) = self.pos.applied.filter(|a| Some(*a) != self.floor) {
                        let floor = CheckpointRecord {
                            replid: replid.clone(),
                            offset: Some(applied),
                            db: Some(self.pos.stream_db),
                            updated_ms: now_ms,
                        };
                        work.pending.push(self.layout.checkpoint_set(&floor));
                        work.floor_queued = Some(applied);
                    }
                }
                _ => self.layout.run(&mut run, None, &mut work.pending),
            }
        } else if let (Some(after), true) = (work.offset, work.run_started()) {
            // Laid out from where it is: the run keeps its memory for the
            // next one (a run under load is megabytes, and fresh memory
            // for each cost the writes of every command into it).
            let run = &mut work.run;
            // Where the units already queued leave the checkpoint.
            let before = work.queued_ckpt.or(self.pos.applied);
            let moves = match (&self.pos.replid, before) {
                (Some(replid), Some(before))
                    if self.layout.in_destination() && (after != before || !run.is_empty()) =>
                {
                    let record = CheckpointRecord {
                        replid: replid.clone(),
                        offset: Some(after),
                        db: Some(work.stream_db),
                        updated_ms: now_ms,
                    };
                    Some((record, before))
                }
                _ => None,
            };
            if moves.is_some() {
                work.queued_ckpt = Some(after);
            }
            if moves.is_some() || !run.is_empty() {
                // What was taken in before the run goes first; the run is
                // laid out straight into the batch.
                work.batch.extend(work.pending.drain(..));
                self.layout.run(run, moves, &mut work.batch);
            }
            debug_assert!(work.run.is_empty(), "a cut left stream commands behind");
            // A run longer than a batch (a long source transaction) does not
            // keep its room.
            work.run.shrink_to(STREAM_BATCH_CMDS);
        }
        work.batch.extend(work.pending.drain(..));
        if work.batch.len() == held {
            return None;
        }
        // Charged once, as commands join the batch: snapshot keys and
        // stream commands both count as keys.
        let keys = work.units + work.keys;
        let bytes = work.batch.bytes() - held_bytes;
        let charge = Charge { keys: keys - work.charged, bytes: bytes as u64 };
        work.charged = keys;
        Some(charge)
    }

    /// What was cut and is not confirmed yet (see [`Batcher::cut`]).
    pub fn batch(&mut self) -> &mut ApplyBatch {
        &mut self.work.batch
    }

    /// The destination confirmed the whole batch: moves the position.
    pub fn confirmed(&mut self) -> Confirmed {
        let work = &mut self.work;
        let mut done = Confirmed { rdb_applied: work.rdb_applied.take(), ..Confirmed::default() };
        work.keys = 0;
        work.units = 0;
        work.charged = 0;
        work.bytes = 0;
        work.safe = None;
        work.queued_ckpt = None;
        if let Some(off) = work.offset.take() {
            self.pos.applied = Some(off);
            self.pos.stream_db = work.stream_db;
            done.applied = Some(off);
            done.copy_whole = work.rdb_start.take().is_some();
        }
        done.release = work.position.take();
        done.heartbeat = work.heartbeat.take();
        self.pos.slots.extend(work.slots_queued.drain());
        if let Some(floor) = work.floor_queued.take() {
            self.floor = Some(floor);
        }
        if let (true, false, Some(replid)) = (self.layout.in_destination(), self.layout.is_cluster(), &self.pos.replid)
        {
            let copying = work.rdb_start.is_some();
            let offset = if copying { None } else { self.pos.applied };
            if copying || offset.is_some() {
                done.checkpoint = Some(CheckpointRecord { replid: replid.clone(), offset, db: None, updated_ms: 0 });
            }
        }
        done
    }

    /// The link ends: a source transaction it cut is left for the next
    /// link (which receives it again whole), and so is a key build in
    /// progress; what remains is applied before the link ends.
    pub fn end_link(&mut self) {
        self.work.drop_open_transaction();
        self.rewriter.abandon(&mut self.work.pending);
    }

    fn push(&mut self, c: ApplyCmd) {
        self.work.bytes += c.wire_len();
        self.work.pending.push(c);
    }
}

/// The rewriter for a copy; over our own earlier copy whole keys are
/// replaced (in skip mode the destination's keys still win).
fn rewriter_for(ropts: &RewriteOptions, replace_ours: bool) -> Rewriter {
    let mut opts = ropts.clone();
    if replace_ours && opts.conflict == crate::dest::Conflict::Intercept {
        opts.conflict = crate::dest::Conflict::Overwrite;
    }
    Rewriter::new(opts)
}

/// What a link has taken in but not yet applied.
#[derive(Default)]
struct Work {
    /// Destination commands from the snapshot (and checkpoint marks).
    pending: Vec<ApplyCmd>,
    /// What a cut took in and the destination has not confirmed yet.
    batch: ApplyBatch,
    /// The offset the checkpoint units queued in `pending` and `batch`
    /// move the destination's checkpoint to.
    queued_ckpt: Option<u64>,
    /// Of `units + keys`, what the rate limit was already charged for.
    charged: u64,
    /// The source clock of the newest heartbeat taken since the last flush.
    heartbeat: Option<i64>,
    /// Commands that cannot be mirrored, taken since the last flush.
    halts: Vec<String>,
    /// The source DB the stream is in after the last item taken, and at
    /// the last point outside a transaction.
    stream_db: u32,
    safe_db: u32,
    /// Stream commands since the last flush.
    run: ApplyBatch,
    /// Inside a source transaction: never flush.
    in_multi: bool,
    /// The last point outside a transaction: (run length, offset, spool position).
    safe: Option<(usize, u64, u64)>,
    /// The offset (and spool position) the pending work brings the destination to.
    offset: Option<u64>,
    position: Option<u64>,
    /// The stream's start offset while a snapshot is being applied.
    rdb_start: Option<u64>,
    /// RDB bytes the snapshot items since the last flush cover.
    rdb_applied: Option<u64>,
    /// Snapshot keys, stream commands and their bytes since the last flush.
    keys: u64,
    units: u64,
    bytes: usize,
    /// A cluster: the slot checkpoints and the shard's checkpoint the
    /// batch moves, once it is confirmed.
    slots_queued: HashMap<u16, u64>,
    floor_queued: Option<u64>,
    /// Slots whose checkpoint the next cut moves (see [`Batcher::mark_slots`]).
    marks: Vec<u16>,
}

impl Work {
    /// The run, leaving an empty one with room for as many commands (up to
    /// a batch's): under load every run is about as long as the last, and
    /// growing it by doubling copied every command again.
    fn take_run(&mut self) -> ApplyBatch {
        let room = self.run.len().min(STREAM_BATCH_CMDS);
        std::mem::replace(&mut self.run, ApplyBatch::with_capacity(room))
    }

    /// Whether stream items (applied or skipped) were taken since the last flush.
    fn run_started(&self) -> bool {
        !self.run.is_empty() || (self.offset.is_some() && self.rdb_start.is_none())
    }

    /// Cuts an unfinished source transaction off the run.
    fn drop_open_transaction(&mut self) {
        if !self.in_multi {
            return;
        }
        match self.safe {
            Some((len, offset, position)) => {
                self.run.truncate(len);
                self.offset = Some(offset);
                self.position = Some(position);
                self.stream_db = self.safe_db;
            }
            None => {
                self.run.clear();
                self.offset = None;
                self.position = None;
            }
        }
        self.in_multi = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::caps::RedisVersion;
    use crate::dest::Conflict;
    use crate::rdb::{KeyStart, ValueKind};

    const NOW: i64 = 1_700_000_000_000;
    const KEY: &[u8] = b"HB:ckpt:s1";

    fn batcher(version: &str, in_destination: bool, pos: Position) -> Batcher {
        let caps = crate::dest::DestCaps::new(RedisVersion::parse(version).unwrap());
        let layout = Layout::new(Bytes::from_static(KEY), in_destination);
        Batcher::new("s1".to_owned(), layout, RewriteOptions::new(caps, Conflict::Intercept), pos)
    }

    fn streaming(at: u64) -> Position {
        Position {
            replid: Some("r".repeat(40)),
            applied: Some(at),
            stream_db: 0,
            ours_on_dest: true,
            ..Position::default()
        }
    }

    fn apply(args: &str) -> Action {
        Action::Apply { db: 0, cmd: Cmd::from_args(args.split(' ')) }
    }

    fn shown(b: &mut Batcher) -> Vec<String> {
        b.batch()
            .commands()
            .iter()
            .map(|c| c.args().iter().map(|a| a.escape_ascii().to_string()).collect::<Vec<_>>().join(" "))
            .collect()
    }

    /// The checkpoint moves (before, after) the batch's units are guarded by.
    fn checkpoint_guards(b: &mut Batcher) -> Vec<(Option<u64>, u64)> {
        let guard = |m: &crate::dest::batch::Meta| match m.guard.as_deref() {
            Some(crate::dest::Guard::Checkpoint { before, after, .. }) => Some((*before, *after)),
            _ => None,
        };
        b.batch().meta.iter().filter_map(guard).collect()
    }

    /// A batcher into a cluster keeping its checkpoints there, and its layout.
    fn cluster_batcher(pos: Position) -> (Batcher, Layout) {
        let caps = crate::dest::DestCaps::new(RedisVersion::parse("7.0.15").unwrap());
        let layout = Layout::cluster(Bytes::from_static(KEY), true);
        let opts = RewriteOptions::new(caps, Conflict::Intercept);
        (Batcher::new("s1".to_owned(), layout.clone(), opts, pos), layout)
    }

    /// The destination confirmed everything cut so far.
    fn confirm_all(b: &mut Batcher) {
        let n = b.batch().len();
        b.batch().drop_front(n);
    }

    fn key(name: &str, payload: &'static [u8]) -> [Event; 2] {
        [
            Event::KeyStart(Box::new(KeyStart {
                db: 0,
                key: Bytes::copy_from_slice(name.as_bytes()),
                kind: ValueKind::String,
                undecoded: false,
                rdb_type: 0,
                expire_at_ms: None,
                idle_secs: None,
                lfu_freq: None,
            })),
            Event::KeyEnd { payload: Some(Bytes::from_static(payload)) },
        ]
    }

    /// A DUMP payload of RDB version 10 (a string "abc").
    const PAYLOAD: &[u8] = b"\x00\x03abc\x0a\x00\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa";

    #[test]
    fn a_stream_run_is_cut_with_its_checkpoint_move_and_confirmed_moves_the_position() {
        let mut b = batcher("7.0.15", true, streaming(100));
        assert!(b.stream(apply("INCR a"), 120, 7, 0).is_none());
        b.stream(Action::Heartbeat { sent_ms: 5 }, 150, 8, 0);
        b.stream(apply("LPUSH l x"), 180, 9, 0);
        let charge = b.cut(NOW).unwrap();
        assert_eq!(charge.keys, 2);
        let cmds = shown(&mut b);
        assert_eq!(cmds[0], "MULTI");
        assert!(cmds[1].starts_with("SET HB:ckpt:s1 "), "{cmds:?}");
        assert_eq!(&cmds[2..], ["INCR a", "LPUSH l x", "EXEC"]);
        // Nothing moves before the destination confirmed it.
        assert_eq!(b.position().applied, Some(100));
        confirm_all(&mut b);
        let done = b.confirmed();
        assert_eq!(done.applied, Some(180));
        assert_eq!(done.release, Some(9));
        assert_eq!(done.heartbeat, Some(5));
        assert!(!done.copy_whole);
        assert_eq!(done.checkpoint.unwrap().offset, Some(180));
        assert_eq!(b.resume_position().unwrap().offset, 180);
    }

    #[test]
    fn keep_alives_alone_still_move_the_checkpoint() {
        let mut b = batcher("7.0.15", true, streaming(100));
        b.stream(Action::Skip(crate::engine::filter::SkipReason::KeepAlive), 114, 3, 0);
        b.cut(NOW).unwrap();
        let cmds = shown(&mut b);
        assert_eq!(cmds.len(), 3, "{cmds:?}");
        assert_eq!((cmds[0].as_str(), cmds[2].as_str()), ("MULTI", "EXEC"));
    }

    #[test]
    fn a_cut_after_an_unconfirmed_one_moves_the_checkpoint_from_where_that_one_left_it() {
        let mut b = batcher("7.0.15", true, streaming(100));
        b.stream(apply("INCR a"), 120, 1, 0);
        b.cut(NOW).unwrap();
        b.stream(apply("INCR b"), 140, 2, 0);
        b.cut(NOW).unwrap();
        let guards: Vec<(u64, u64)> = b
            .batch()
            .meta
            .iter()
            .filter_map(|m| match m.guard.as_deref() {
                Some(crate::dest::Guard::Checkpoint { before: Some(before), after, .. }) => Some((*before, *after)),
                _ => None,
            })
            .collect();
        assert_eq!(guards, [(100, 120), (120, 140)]);
    }

    #[test]
    fn never_due_inside_a_source_transaction_and_an_open_one_is_left_for_the_next_link() {
        let mut b = batcher("7.0.15", true, streaming(100));
        b.stream(apply("SET a 1"), 110, 1, 0);
        b.stream(apply("MULTI"), 120, 2, 0);
        b.stream(apply("INCR x"), 130, 3, 0);
        assert!(!b.due(true, true, None));
        b.end_link();
        b.cut(NOW).unwrap();
        let cmds = shown(&mut b);
        assert_eq!(&cmds[2..], ["SET a 1", "EXEC"]);
        confirm_all(&mut b);
        assert_eq!(b.confirmed().applied, Some(110));
    }

    #[test]
    fn without_checkpoints_in_the_destination_runs_go_out_as_they_came() {
        let mut b = batcher("7.0.15", false, streaming(100));
        b.stream(apply("INCR a"), 120, 1, 0);
        b.cut(NOW).unwrap();
        assert_eq!(shown(&mut b), ["INCR a"]);
        confirm_all(&mut b);
        let done = b.confirmed();
        assert_eq!((done.applied, done.checkpoint), (Some(120), None));
    }

    #[test]
    fn a_full_copy_into_a_cluster_ends_with_a_slot_checkpoint_on_every_master() {
        let (mut b, layout) = cluster_batcher(Position::default());
        b.full_resync("f".repeat(40), 500, NOW);
        b.cut(NOW).unwrap();
        confirm_all(&mut b);
        b.confirmed();
        b.snapshot_applied(NOW, &[0, 5461, 10923]);
        b.cut(NOW).unwrap();
        let cmds = shown(&mut b);
        assert!(cmds[0].starts_with("SET HB:ckpt:s1 "), "the shard's own checkpoint first: {cmds:?}");
        let units: Vec<&[String]> = cmds[1..].chunks(3).collect();
        assert_eq!(units.len(), 3, "{cmds:?}");
        for (unit, slot) in units.iter().zip([0u16, 5461, 10923]) {
            let key = String::from_utf8_lossy(&layout.slot_key(slot)).into_owned();
            assert_eq!(unit[0], "MULTI");
            assert!(unit[1].starts_with(&format!("SET {key} ")), "{unit:?}");
            assert!(unit[1].contains("offset") && unit[1].contains(":500,"), "{unit:?}");
            assert_eq!(unit[2], "EXEC");
        }
        let guards = checkpoint_guards(&mut b);
        assert_eq!(guards, [(None, 500); 3], "each unit is checked like a stream unit");
        confirm_all(&mut b);
        let done = b.confirmed();
        assert_eq!((done.applied, done.copy_whole), (Some(500), true));
        // The stream's first command into a marked slot goes through.
        let in_slot_0 = format!("SET {{{}}}x 1", crate::dest::cluster::slot::slot_tags()[0]);
        b.stream(apply(&in_slot_0), 520, 2, 0);
        b.cut(NOW).unwrap();
        assert!(shown(&mut b).contains(&in_slot_0), "{:?}", shown(&mut b));
    }

    /// A master that took its slots by a resharding (or whose checkpoints
    /// all moved away) has none to check after a restart: the stream marks
    /// its first slot, after what came before, once.
    #[test]
    fn slots_marked_during_the_stream_get_a_checkpoint_at_the_next_cut() {
        let (mut b, layout) = cluster_batcher(Position { slots: HashMap::from([(0, 90)]), ..streaming(100) });
        let tags = crate::dest::cluster::slot::slot_tags();
        let in_5461 = format!("SET {{{}}}x 1", tags[5461]);
        b.stream(apply(&in_5461), 110, 1, 0);
        b.mark_slots(vec![0, 5461, 10923]);
        b.cut(NOW).unwrap();
        let cmds = shown(&mut b);
        let at = |slot: u16| {
            let key = String::from_utf8_lossy(&layout.slot_key(slot)).into_owned();
            cmds.iter().position(|c| c.starts_with(&format!("SET {key} "))).map(|i| (i, cmds[i].contains(":110,")))
        };
        let unit = at(5461).unwrap();
        assert_eq!(cmds[unit.0 + 1], in_5461, "the slot the run writes is moved by its own unit: {cmds:?}");
        let (zero, last) = (at(0).unwrap(), at(10923).unwrap());
        assert!(zero.1 && last.1 && unit.1, "every slot at the cut's offset: {cmds:?}");
        assert!(zero.0 > unit.0 && last.0 > zero.0, "after what came before, in the order asked: {cmds:?}");
        assert_eq!(cmds.iter().filter(|c| c.starts_with("MULTI")).count(), 3, "5461 once: {cmds:?}");
        let guards = checkpoint_guards(&mut b);
        assert_eq!(guards, [(None, 110), (Some(90), 110), (None, 110)], "each expects what its slot held");
        confirm_all(&mut b);
        assert_eq!(b.confirmed().applied, Some(110));
        // Taken once: the next cut moves only what the stream writes.
        b.stream(Action::Heartbeat { sent_ms: 5 }, 120, 2, 0);
        b.cut(NOW).unwrap();
        assert!(!shown(&mut b).iter().any(|c| c.starts_with("MULTI")), "{:?}", shown(&mut b));
    }

    #[test]
    fn a_full_copy_marks_copying_then_whole_only_after_snapshot_applied() {
        let mut b = batcher("7.0.15", true, Position::default());
        b.full_resync("f".repeat(40), 500, NOW);
        for e in key("k", PAYLOAD) {
            assert!(b.rdb(e, 64, NOW).unwrap().is_empty());
        }
        b.cut(NOW).unwrap();
        let cmds = shown(&mut b);
        assert!(cmds[0].starts_with("SET HB:ckpt:s1 "), "{cmds:?}");
        assert_eq!(cmds[1], "SELECT 0");
        assert!(cmds[2].starts_with("RESTORE k 0 "), "{cmds:?}");
        confirm_all(&mut b);
        let done = b.confirmed();
        assert_eq!((done.applied, done.rdb_applied, done.copy_whole), (None, Some(64), false));
        assert_eq!(done.checkpoint.unwrap().offset, None, "still copying");
        assert!(b.copying() && b.resume_position().is_none());
        // Standalone: no slots to mark, whatever is asked.
        b.snapshot_applied(NOW, &[0, 5461]);
        assert!(b.due(false, true, None));
        b.cut(NOW).unwrap();
        confirm_all(&mut b);
        let done = b.confirmed();
        assert_eq!((done.applied, done.copy_whole), (Some(500), true));
        assert_eq!(b.resume_position().unwrap().offset, 500);
    }

    #[test]
    fn a_first_copy_intercepts_and_a_copy_over_our_own_replaces() {
        let mut first = batcher("7.0.15", true, Position::default());
        first.full_resync("f".repeat(40), 1, NOW);
        assert_eq!(first.rewriter.options().conflict, Conflict::Intercept);
        let mut again = batcher("7.0.15", true, Position { ours_on_dest: true, ..Position::default() });
        again.full_resync("f".repeat(40), 1, NOW);
        assert_eq!(again.rewriter.options().conflict, Conflict::Overwrite);
        // And the copy after the first one, in the same process.
        first.full_resync("g".repeat(40), 2, NOW);
        assert_eq!(first.rewriter.options().conflict, Conflict::Overwrite);
    }

    #[test]
    fn a_form_the_destination_lacks_halts_after_what_came_before() {
        let mut b = batcher("6.0.9", true, streaming(100));
        b.stream(apply("SET a 1"), 110, 1, 0);
        b.stream(apply("GEOADD g NX 13.36 38.11 p"), 120, 2, 0);
        assert!(b.has_halts() && b.due(false, false, None));
        let halts = b.take_halts().unwrap();
        assert!(halts.contains("GEOADD … NX/XX"), "{halts}");
        assert!(halts.contains("source offset 120"), "{halts}");
        b.cut(NOW).unwrap();
        assert_eq!(&shown(&mut b)[2..], ["SET a 1", "EXEC"]);
    }

    #[test]
    fn refused_commands_are_alerts_and_move_the_offset() {
        let mut b = batcher("7.0.15", true, streaming(100));
        let refused = Action::Refused { command: "FLUSHALL".into(), db: None, why: "flush = \"refuse\"".into() };
        let alert = b.stream(refused, 130, 1, 0).unwrap();
        assert!(alert.starts_with("FLUSHALL from source s1 at offset 130 was NOT applied"), "{alert}");
        b.cut(NOW).unwrap();
        confirm_all(&mut b);
        assert_eq!(b.confirmed().applied, Some(130));
    }

    #[test]
    fn a_failover_moves_the_checkpoint_to_the_new_history() {
        let mut b = batcher("7.0.15", true, streaming(100));
        b.continued(Some("r".repeat(40)), NOW);
        assert!(b.cut(NOW).is_none(), "same history: nothing to write");
        b.continued(Some("n".repeat(40)), NOW);
        b.cut(NOW).unwrap();
        assert!(shown(&mut b)[0].contains(&"n".repeat(40)));
        assert_eq!(b.resume_position().unwrap().replid, "n".repeat(40));
    }

    #[test]
    fn a_lost_destination_restarts_from_its_checkpoint() {
        let mut b = batcher("7.0.15", true, streaming(100));
        let record = CheckpointRecord { replid: "r".repeat(40), offset: Some(60), db: Some(3), updated_ms: 0 };
        b.restart_from(Some(record), vec![(7, 90)]);
        assert_eq!((b.resume_position().unwrap().offset, b.position().stream_db), (60, 3));
        assert_eq!(b.position().slots.get(&7), Some(&90));
        b.restart_from(None, vec![(7, 90)]);
        assert!(b.position().slots.is_empty(), "a full copy again starts with no slot checkpoints");
        assert!(b.resume_position().is_none() && b.position().ours_on_dest);
    }
}
