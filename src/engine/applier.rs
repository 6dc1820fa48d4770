//! The destination side of a shard: turns the consumer's items into
//! destination commands, applies them in batches, and keeps the checkpoint.
//!
//! **Checkpoints.** With `checkpoint = "destination"` (the default) every
//! batch of the command stream is one `MULTI`/`EXEC` that also moves the
//! shard's checkpoint key (see [`super::stream_batch`]); a full copy marks
//! the key "copying" at its start and sets the stream's start offset once
//! every key is confirmed. So at any moment the destination's data and its
//! checkpoint agree, and a resume — after a crash of the tool, a lost reply,
//! or a destination restart that lost recent writes — asks the source for
//! exactly what the destination lacks. The local state file is written
//! too, once a second; with `checkpoint = "local"` (destinations without
//! `MULTI`) it is the only record, and a crash can repeat up to a second of
//! writes.
//!
//! **Failures.** Retryable destination errors are retried with backoff
//! (`reconnecting`); the rest pause the shard with the writer's message
//! until the operator resumes it; a destination that lost confirmed writes
//! ends the link so the next one resumes from what it still holds.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::accounting::KeyAccount;
use super::checkpoint::{self, Checkpoint};
use super::collision;
use super::consumer::{Item, Marks, SnapshotTally};
use super::ctx::{ShardControl, ShardCtx};
use super::error::EngineError;
use super::filter::Action;
use super::rate::RateLimit;
use super::settings::{conflict_of, db_map};
use super::status::ShardEvent;
use super::stream_batch::{lay_out, CheckpointMove};
use crate::clock::now_ms;
use crate::config::CheckpointStore;
use crate::dest::error::ROLLBACK;
use crate::dest::{
    dest_info, ApplyBatch, ApplyCmd, ApplyError, ApplyReport, CheckpointRecord, Conflict, DestCaps, DestWriter,
    ErrorClass, Origin, ReplyRule, RewriteOptions, Rewriter, Translation, WriterOptions, CHECKPOINT_DB,
};
use crate::rdb::Event;
use crate::resp::{Cmd, ConnectOptions, Connection, RespError, Value};
use crate::source::PsyncPosition;

/// How applying a link's items ended.
pub(super) enum ApplyEnd {
    /// The shard was stopped (what was received is applied first).
    Stopped,
    Failed(EngineError),
    /// The link must be replaced (the destination lost writes).
    Again(EngineError),
    /// The consumer ran out of items: the link ended, or the consumer
    /// failed (its error).
    Drained {
        consumer_error: Option<EngineError>,
    },
}

/// Most commands in one batch of the snapshot (RESTOREs and key builds):
/// more would only raise memory (a batch and its encoding are held until
/// confirmed), not speed.
const SNAPSHOT_BATCH_CMDS: usize = 2048;
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
const STREAM_BATCH_CMDS: usize = 16384;
const BATCH_BYTES: usize = 8 << 20;

/// The destination side of one shard, across links.
pub(super) struct Applier {
    shard: String,
    state_dir: PathBuf,
    ckpt_key: Bytes,
    store: CheckpointStore,
    writer: DestWriter,
    caps: DestCaps,
    conflict: Conflict,
    /// The position the destination holds: `applied` is the offset after
    /// the last confirmed write of the stream of `replid`; `None` before a
    /// full copy is applied.
    replid: Option<String>,
    applied: Option<u64>,
    /// The source DB the stream is in at `applied` (where a resume starts).
    stream_db: u32,
    /// The key accounting of the full copy in progress (or the last one).
    account: KeyAccount,
    /// Why the local checkpoint file could not be written (a full disk),
    /// while it cannot; and whether that was said.
    local_failed: Option<String>,
    local_failed_reported: bool,
    /// The destination holds keys of an earlier copy of this shard: a new
    /// full copy must replace them, not report them as collisions.
    ours_on_dest: bool,
    rate: RateLimit,
    last_local: Instant,
    /// Items received over all links: whether a link got anywhere.
    received: u64,
}

fn connect_options(secret: &crate::config::Secret) -> ConnectOptions {
    ConnectOptions { credentials: secret.credentials(), ..ConnectOptions::default() }
}

/// Whether the destination takes `MULTI` (proxies and some managed
/// services refuse it).
async fn supports_multi(conn: &mut Connection) -> bool {
    match conn.query(&Cmd::new("MULTI")).await {
        Ok(Value::Error(_)) | Err(_) => false,
        Ok(_) => {
            let _ = conn.query(&Cmd::new("DISCARD")).await;
            true
        }
    }
}

impl Applier {
    /// Connects to the destination and finds where this shard stands.
    pub(super) async fn connect(ctx: &ShardCtx) -> Result<Applier, EngineError> {
        let shard = ctx.source.name.clone();
        let state_dir = ctx.task.state_path();
        let dest_addr = ctx.task.destination.addr.to_string();
        let at_dest = |source: RespError| EngineError::DestinationConnect {
            shard: shard.clone(),
            addr: dest_addr.clone(),
            source: Box::new(source),
        };
        let dest_opts = connect_options(&ctx.task.destination.password);
        let mut conn = Connection::connect(&dest_addr, &dest_opts).await.map_err(at_dest)?;
        let caps = dest_info(&mut conn).await.map_err(at_dest)?;
        let ckpt_key = Bytes::from(ctx.task.sync.checkpoint_key(&shard));
        let mut store = ctx.task.sync.checkpoint;
        if store == CheckpointStore::Destination && !supports_multi(&mut conn).await {
            store = CheckpointStore::Local;
            let message = format!(
                "destination {dest_addr} refuses MULTI/EXEC: this shard's checkpoint is kept only in the local \
                 state file, so a crash of the tool can repeat up to a second of writes (set sync.checkpoint = \
                 \"local\" to silence this)"
            );
            ctx.status.alert(None, message).await;
        }
        let on_dest = match store {
            CheckpointStore::Destination => {
                let cmd = Cmd::new("GET").arg(&ckpt_key);
                match conn.query(&cmd).await.map_err(at_dest)? {
                    Value::Bulk(Some(raw)) => {
                        Some(CheckpointRecord::decode(&raw).ok_or_else(|| EngineError::ForeignCheckpoint {
                            shard: shard.clone(),
                            addr: dest_addr.clone(),
                            key: String::from_utf8_lossy(&ckpt_key).into_owned(),
                        })?)
                    }
                    Value::Error(e) => {
                        return Err(EngineError::CheckpointReadRefused {
                            shard: shard.clone(),
                            addr: dest_addr.clone(),
                            reply: e.to_string(),
                        })
                    }
                    _ => None,
                }
            }
            CheckpointStore::Local => None,
        };
        let local = checkpoint::load(&state_dir, &shard)
            .map_err(|source| EngineError::Checkpoint { shard: shard.clone(), source: Box::new(source) })?;
        let (replid, applied, stream_db, ours_on_dest) = match (store, on_dest, local) {
            (CheckpointStore::Destination, Some(r), _) => {
                if r.offset.is_none() {
                    let message = "the destination holds an interrupted full copy of this shard: copying \
                                       again, replacing those keys whole";
                    ctx.status.alert(None, message.to_owned()).await;
                }
                (Some(r.replid), r.offset, r.db.unwrap_or(0), true)
            }
            (CheckpointStore::Destination, None, Some(l)) => {
                let message = format!(
                    "the local checkpoint says offset {} was applied, but the destination holds no checkpoint \
                         for this shard (flushed, restarted without persistence, or another destination?): \
                         copying it again in full",
                    l.offset
                );
                ctx.status.alert(None, message).await;
                (None, None, 0, true)
            }
            (CheckpointStore::Local, _, Some(l)) => (Some(l.replid), Some(l.offset), l.db.unwrap_or(0), true),
            (_, None, None) | (CheckpointStore::Local, _, None) => (None, None, 0, false),
        };
        // The writer starts in DB 0, where the checkpoint was read.
        let conflict = conflict_of(ctx.task.sync.conflict);
        let mut wopts = WriterOptions::new(conflict);
        wopts.connect = dest_opts;
        let mut writer = DestWriter::with_connection(conn, wopts);
        writer.identify().await;
        // Until a full copy is whole, only the server's run_id shows that it
        // restarted from a save made part-way through.
        writer.guard_restarts(applied.is_none());
        if let (CheckpointStore::Destination, Some(replid), Some(offset)) = (store, &replid, applied) {
            let mark = CheckpointRecord { replid: replid.clone(), offset: Some(offset), db: None, updated_ms: 0 };
            writer.expect_after_loss(Some((ckpt_key.clone(), mark)));
        }
        Ok(Applier {
            shard,
            state_dir,
            ckpt_key,
            store,
            writer,
            caps,
            conflict,
            replid,
            applied,
            stream_db,
            account: KeyAccount::default(),
            local_failed: None,
            local_failed_reported: false,
            ours_on_dest,
            rate: RateLimit::new(ctx.task.sync.max_keys_per_sec, ctx.task.sync.max_bytes_per_sec),
            last_local: Instant::now(),
            received: 0,
        })
    }

    /// Where the next link asks the master to continue from; `None`: a full copy.
    pub(super) fn resume_position(&self) -> Option<PsyncPosition> {
        match (&self.replid, self.applied) {
            (Some(replid), Some(offset)) => Some(PsyncPosition { replid: replid.clone(), offset }),
            _ => None,
        }
    }

    /// The source DB a resumed stream starts in (see [`StreamFilter::starting_in`]).
    ///
    /// [`StreamFilter::starting_in`]: super::filter::StreamFilter::starting_in
    pub(super) fn resume_db(&self) -> u32 {
        self.stream_db
    }

    pub(super) fn progress_mark(&self) -> u64 {
        self.received
    }

    /// Writes the local checkpoint file. With the checkpoint kept in the
    /// destination (the default) the file is a copy, so a failure to write
    /// it (a full disk) is only reported, once, and the shard goes on;
    /// with `checkpoint = "local"` it is the only resume point, and fails.
    pub(super) fn save_local_checkpoint(&mut self) -> Result<(), EngineError> {
        self.last_local = Instant::now();
        if let (Some(replid), Some(offset)) = (&self.replid, self.applied) {
            let c = Checkpoint { replid: replid.clone(), offset, db: Some(self.stream_db), updated_ms: now_ms() };
            match checkpoint::save(&self.state_dir, &self.shard, &c) {
                Ok(()) => self.local_failed = None,
                Err(e) if self.store == CheckpointStore::Destination => {
                    if self.local_failed.is_none() {
                        self.local_failed = Some(e.to_string());
                        self.local_failed_reported = false;
                    }
                }
                Err(source) => {
                    return Err(EngineError::Checkpoint { shard: self.shard.clone(), source: Box::new(source) })
                }
            }
        }
        Ok(())
    }

    /// A failure to write the local copy of the checkpoint, not reported yet.
    pub(super) fn take_local_failure(&mut self) -> Option<String> {
        if self.local_failed_reported {
            return None;
        }
        let failed = self.local_failed.clone()?;
        self.local_failed_reported = true;
        Some(failed)
    }

    fn rewriter(&self, ctx: &ShardCtx, replace_ours: bool) -> Rewriter {
        // A copy over our own earlier copy replaces whole keys; in skip mode
        // the destination's keys still win (the alert says so).
        let conflict = match self.conflict {
            Conflict::Intercept if replace_ours => Conflict::Overwrite,
            c => c,
        };
        let mut ropts = RewriteOptions::new(self.caps, conflict);
        ropts.big_key_bytes = ctx.task.sync.big_key_bytes as usize;
        ropts.db_map = db_map(&ctx.task);
        ropts.modules = match ctx.task.sync.modules {
            crate::config::ModulePolicy::Fail => crate::dest::rewrite::ModuleKeys::Fail,
            crate::config::ModulePolicy::Skip => crate::dest::rewrite::ModuleKeys::Skip,
            crate::config::ModulePolicy::Restore => crate::dest::rewrite::ModuleKeys::Restore,
        };
        Rewriter::new(ropts)
    }

    fn checkpoint_set(&self, record: &CheckpointRecord) -> ApplyCmd {
        let origin = Origin { db: CHECKPOINT_DB, key: self.ckpt_key.clone(), offset: record.offset.unwrap_or(0) };
        ApplyCmd::new(Cmd::new("SET").arg(&self.ckpt_key).arg_bytes(record.encode()), origin)
    }

    /// Applies a link's items until the link ends; see [`ApplyEnd`].
    pub(super) async fn apply_link(
        &mut self,
        ctx: &ShardCtx,
        mut rx: mpsc::Receiver<Vec<Item>>,
        marks: &Arc<Marks>,
        slot: &mut Option<OwnedSemaphorePermit>,
    ) -> ApplyEnd {
        let shard = self.shard.clone();
        let mut work = Work::default();
        let mut rewriter = self.rewriter(ctx, self.ours_on_dest);
        let mut inbox: std::vec::IntoIter<Item> = Vec::new().into_iter();
        let mut control = ctx.control.clone();
        let end = loop {
            // Paused: stop applying (the reader keeps spooling) until resumed.
            if *control.borrow() == ShardControl::Pause {
                ctx.status.send(ShardEvent::Paused { on_error: false, why: None }).await;
                while *control.borrow() == ShardControl::Pause {
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => break,
                        r = control.changed() => if r.is_err() { break },
                    }
                }
                ctx.status.send(ShardEvent::Resumed { to: None }).await;
            }
            let item = match inbox.next() {
                Some(item) => item,
                None => {
                    let items = tokio::select! {
                        biased;
                        _ = ctx.cancel.cancelled() => break ApplyEnd::Stopped,
                        // A pause takes effect before the next items, not after them.
                        r = control.changed() => {
                            if r.is_err() {
                                break ApplyEnd::Stopped;
                            }
                            continue;
                        }
                        items = rx.recv() => items,
                    };
                    let Some(items) = items else { break ApplyEnd::Drained { consumer_error: None } };
                    self.received += items.len() as u64;
                    inbox = items.into_iter();
                    match inbox.next() {
                        Some(item) => item,
                        None => continue,
                    }
                }
            };
            marks.took(item.mem_bytes());
            let mut flush_now = false;
            let pending_before = work.pending.len();
            match item {
                Item::FullResync { replid, offset } => {
                    if let Some(from) = self.resume_position() {
                        let kept = match self.conflict {
                            Conflict::Skip => {
                                "; keys already on the destination are kept as they are (conflict = \"skip\"): \
                                 check them with verify"
                            }
                            _ => "; keys already on the destination are replaced whole",
                        };
                        let message = format!(
                            "the source could not continue from offset {} of {} (its backlog no longer holds it, or \
                             it restarted with another history): full copy again{kept}",
                            from.offset, from.replid,
                        );
                        ctx.status.alert(None, message).await;
                    }
                    // A new snapshot replaces whatever the old checkpoint
                    // described: resuming from it after a stop mid-snapshot
                    // would replay old writes over newer data.
                    if let Err(source) = checkpoint::remove(&self.state_dir, &shard) {
                        break ApplyEnd::Failed(EngineError::CheckpointRemove { shard: shard.clone(), source });
                    }
                    rewriter = self.rewriter(ctx, self.ours_on_dest);
                    self.writer.expect_after_loss(None);
                    self.writer.guard_restarts(true);
                    self.ours_on_dest = true;
                    self.replid = Some(replid.clone());
                    self.applied = None;
                    // The master starts a new replica's stream with a SELECT.
                    self.stream_db = 0;
                    work.stream_db = 0;
                    self.account = KeyAccount::default();
                    work.rdb_start = Some(offset);
                    ctx.status.send(ShardEvent::FullSyncStarted { offset }).await;
                    if self.store == CheckpointStore::Destination {
                        let record = CheckpointRecord { replid, offset: None, db: None, updated_ms: now_ms() };
                        work.pending.push(self.checkpoint_set(&record));
                    }
                }
                Item::Continue { replid } => {
                    // No snapshot: the host's full-copy slot is free again.
                    slot.take();
                    if let Some(new) = replid.filter(|r| Some(r) != self.replid.as_ref()) {
                        // A failover: the new master's history continues ours.
                        self.replid = Some(new.clone());
                        if let (CheckpointStore::Destination, Some(offset)) = (self.store, self.applied) {
                            let record = CheckpointRecord {
                                replid: new,
                                offset: Some(offset),
                                db: Some(self.stream_db),
                                updated_ms: now_ms(),
                            };
                            work.pending.push(self.checkpoint_set(&record));
                        }
                    }
                }
                Item::Rdb { event, rdb_offset } => {
                    let ends_key = matches!(event, Event::KeyEnd { .. });
                    work.rdb_applied = Some(rdb_offset);
                    if let Err(source) = rewriter.feed(event, rdb_offset, now_ms(), &mut work.pending) {
                        break ApplyEnd::Failed(EngineError::Rewrite {
                            shard: shard.clone(),
                            source: Box::new(source),
                        });
                    }
                    for w in rewriter.take_warnings() {
                        let key = crate::display::quoted_key(&w.key);
                        ctx.status.alert(Some(rdb_offset), format!("key {key} in db {}: {}", w.db, w.message)).await;
                    }
                    if ends_key {
                        work.keys += 1;
                    }
                }
                Item::Script(body) => {
                    work.pending.push(ApplyCmd::new(Cmd::new("SCRIPT").arg("LOAD").arg_bytes(body), Origin::default()))
                }
                Item::Function(code) => work.pending.push(ApplyCmd::new(
                    Cmd::new("FUNCTION").arg("LOAD").arg("REPLACE").arg_bytes(code),
                    Origin::default(),
                )),
                Item::RdbDone(tally) => {
                    // Every key of the snapshot confirmed, then accounted for,
                    // before the checkpoint may say the copy is whole and the
                    // stream's first command counts as the applied offset.
                    if let Err(end) = self.flush(ctx, &mut work, marks, &ctx.cancel).await {
                        break end;
                    }
                    if let Err(e) = self.close_account(ctx, &tally, rewriter.stats()).await {
                        break ApplyEnd::Failed(e);
                    }
                    flush_now = true;
                    if let Some(permit) = slot.take() {
                        let opts = connect_options(&ctx.source.password);
                        let addr = ctx.source.addr.to_string();
                        let release = super::source_side::release_after_fork(permit, addr, opts, ctx.cancel.clone());
                        ctx.helpers.spawn(format!("full-copy slot of {shard}"), async move {
                            release.await;
                            None
                        });
                    }
                    work.offset = work.rdb_start;
                    rewriter.forget_db();
                    if let (CheckpointStore::Destination, Some(replid), Some(offset)) =
                        (self.store, &self.replid, work.rdb_start)
                    {
                        let record = CheckpointRecord {
                            replid: replid.clone(),
                            offset: Some(offset),
                            db: None,
                            updated_ms: now_ms(),
                        };
                        work.pending.push(self.checkpoint_set(&record));
                    }
                }
                Item::Stream { action, offset, position, source_db } => {
                    self.stream_item(ctx, &mut work, action, offset, position).await;
                    work.stream_db = source_db;
                    if !work.in_multi {
                        work.safe_db = source_db;
                    }
                }
                Item::Warning(w) => ctx.status.alert(None, w).await,
                Item::Failed(f) => break ApplyEnd::Drained { consumer_error: Some(f.into_error(&shard)) },
            }
            work.bytes +=
                work.pending[pending_before.min(work.pending.len())..].iter().map(ApplyCmd::wire_len).sum::<usize>();
            // Apply when the batch is big, when the channel is momentarily
            // empty (low latency in incremental mode), or at the snapshot's end.
            let idle = inbox.len() == 0 && rx.is_empty();
            let full = work.pending.len() >= SNAPSHOT_BATCH_CMDS
                || work.pending.len() + work.run.len() >= STREAM_BATCH_CMDS
                || work.bytes >= BATCH_BYTES
                || self.rate.batch_keys().is_some_and(|k| (work.units + work.keys) as usize >= k);
            let halted = !work.halts.is_empty();
            if !work.in_multi && (flush_now || idle || full || halted) {
                if let Err(end) = self.flush(ctx, &mut work, marks, &ctx.cancel).await {
                    break end;
                }
                // What came before is applied: now the operator decides.
                if halted {
                    let message = std::mem::take(&mut work.halts).join("; ");
                    if let Err(end) = self.hold(ctx, &message).await {
                        break end;
                    }
                }
            }
        };
        // Whatever the link delivered is applied before it ends, so the
        // checkpoint covers it; a source transaction cut by the end is left
        // for the next link, which receives it again whole.
        if !matches!(end, ApplyEnd::Failed(_) | ApplyEnd::Again(_)) {
            work.drop_open_transaction();
            rewriter.abandon(&mut work.pending);
            // Bounded when stopping: a destination that stays down must not
            // hold the stop.
            let give_up = CancellationToken::new();
            let stopping = ctx.cancel.is_cancelled();
            let cancel = if stopping { &give_up } else { &ctx.cancel };
            let flushed = {
                let flush = self.flush(ctx, &mut work, marks, cancel);
                tokio::pin!(flush);
                // The timer runs beside the flush in this task: after 10 s
                // the flush is told to stop at its next safe point.
                tokio::select! {
                    r = &mut flush => r,
                    _ = tokio::time::sleep(Duration::from_secs(10)), if stopping => {
                        give_up.cancel();
                        flush.await
                    }
                }
            };
            if let Err(e) = flushed {
                if !matches!(e, ApplyEnd::Stopped) {
                    return e;
                }
            }
        }
        if let Err(e) = self.save_local_checkpoint() {
            return ApplyEnd::Failed(e);
        }
        end
    }

    async fn stream_item(&mut self, ctx: &ShardCtx, work: &mut Work, action: Action, offset: u64, position: u64) {
        let shard = &self.shard;
        match action {
            Action::Apply { db, args } => {
                let key = args.get(1).cloned().unwrap_or_default();
                let name = args.first().map(|a| a.as_ref()).unwrap_or_default();
                if let Some(cmds) = self.translated(&args, db, offset, work) {
                    for c in cmds {
                        work.bytes += c.wire_len();
                        work.run.push(c);
                    }
                    work.units += 1;
                } else {
                    let rule = if name.eq_ignore_ascii_case(b"MULTI") {
                        work.in_multi = true;
                        ReplyRule::Multi
                    } else if name.eq_ignore_ascii_case(b"EXEC") {
                        work.in_multi = false;
                        ReplyRule::Exec
                    } else {
                        ReplyRule::Ok
                    };
                    let c = ApplyCmd::new(Cmd::from_bytes(args), Origin { db, key, offset }).rule(rule);
                    work.bytes += c.wire_len();
                    work.units += 1;
                    work.run.push(c);
                }
            }
            // Counted once the batch that carries it is confirmed: the lag is
            // how old the newest heartbeat the destination holds is.
            Action::Heartbeat { sent_ms } => work.heartbeat = Some(work.heartbeat.map_or(sent_ms, |h| h.max(sent_ms))),
            Action::Skip(_) => {}
            Action::Refused { command, db, why } => {
                let where_ = db.map(|d| format!(" on db {d}")).unwrap_or_default();
                ctx.status
                    .alert(
                        Some(offset),
                        format!("{command}{where_} from source {shard} at offset {offset} was NOT applied: {why}"),
                    )
                    .await;
            }
            Action::Halt { command, reason } => {
                work.halts
                    .push(format!("shard {shard}: {command} at source offset {offset} was NOT applied: {reason}"));
            }
        }
        work.offset = Some(offset);
        work.position = Some(position);
        if !work.in_multi {
            work.safe = Some((work.run.len(), offset, position));
        }
    }

    /// What the destination gets instead of a replicated command it would
    /// refuse (see [`crate::dest::translate`]): `None` to send it as it
    /// came; otherwise the commands (none when it cannot be expressed: the
    /// shard then pauses at it, see `Work::halts`).
    fn translated(&self, args: &[Bytes], db: u32, offset: u64, work: &mut Work) -> Option<Vec<ApplyCmd>> {
        let origin = Origin { db, key: args.get(1).cloned().unwrap_or_default(), offset };
        let is_restore = args.first().is_some_and(|n| n.eq_ignore_ascii_case(b"RESTORE"));
        let commands: Vec<ApplyCmd> = match args.get(3) {
            // A payload of an RDB version the destination does not read.
            Some(payload) if is_restore && !self.caps.accepts_payload(payload) => {
                match crate::dest::rewrite::restore_as_commands(args, self.caps, db, offset, now_ms()) {
                    Ok(cmds) => cmds,
                    Err(e) => {
                        let key = crate::display::quoted_key(&origin.key);
                        work.halts.push(format!(
                            "shard {}: RESTORE of key {key} (db {db}) at source offset {offset} cannot be \
                             rewritten for the destination ({}): {e}; resume to go on without it",
                            self.shard, self.caps.server
                        ));
                        return Some(Vec::new());
                    }
                }
            }
            // The clock is read only for the rare form that needs it: this runs per command.
            _ => match crate::dest::translate(args, &self.caps, now_ms) {
                Translation::AsIs => return None,
                Translation::Commands(list) if list.len() == 1 => {
                    list.into_iter().map(|a| ApplyCmd::new(Cmd::from_bytes(a), origin.clone())).collect()
                }
                Translation::Commands(list) => {
                    // One unit, as the original was one command.
                    let mut unit = vec![ApplyCmd::new(Cmd::new("MULTI"), origin.clone()).rule(ReplyRule::Multi)];
                    unit.extend(list.into_iter().map(|a| ApplyCmd::new(Cmd::from_bytes(a), origin.clone())));
                    unit.push(ApplyCmd::new(Cmd::new("EXEC"), origin.clone()).rule(ReplyRule::Exec));
                    unit
                }
                Translation::Unsupported { form, since } => {
                    let name = String::from_utf8_lossy(args.first().map(|a| a.as_ref()).unwrap_or_default())
                        .to_ascii_uppercase();
                    let key = crate::display::quoted_key(&origin.key);
                    let engine = match self.caps.server.engine {
                        crate::dest::Engine::Valkey => "Valkey",
                        crate::dest::Engine::Redis => "Redis",
                    };
                    work.halts.push(format!(
                        "shard {}: {name} of key {key} (db {db}) at source offset {offset} was NOT applied: the \
                         destination ({}) has no {form}, which needs {engine} {since} or newer; upgrade the \
                         destination, or resume to go on without it",
                        self.shard, self.caps.server
                    ));
                    return Some(Vec::new());
                }
            },
        };
        // Inside a source transaction the markers would nest; the
        // transaction is a unit already.
        Some(if work.in_multi {
            commands.into_iter().filter(|c| !c.rule.is_multi() && c.rule != ReplyRule::Exec).collect()
        } else {
            commands
        })
    }

    /// Applies what `work` holds (whole units only) and moves the
    /// checkpoint; see the module docs.
    ///
    /// What a flush takes in stays in `work.batch` until the destination
    /// confirmed all of it: a flush that is stopped (a cancelled rate-limit
    /// wait or retry backoff) or fails leaves the rest there, with the
    /// checkpoint move it carries, for the next flush to apply first. So a
    /// checkpoint can only ever move together with the commands it covers.
    async fn flush(
        &mut self,
        ctx: &ShardCtx,
        work: &mut Work,
        marks: &Arc<Marks>,
        cancel: &CancellationToken,
    ) -> Result<(), ApplyEnd> {
        // The stream's commands (and the offsets it moved by without any,
        // keep-alives and heartbeats) go out as one checkpointed unit.
        if let (Some(after), true) = (work.offset, work.run_started()) {
            let run = std::mem::take(&mut work.run);
            // Where the units already queued leave the checkpoint.
            let before = work.queued_ckpt.or(self.applied);
            let ckpt = match (self.store, &self.replid, before) {
                (CheckpointStore::Destination, Some(replid), Some(before)) if after != before || !run.is_empty() => {
                    Some(CheckpointMove {
                        key: self.ckpt_key.clone(),
                        record: CheckpointRecord {
                            replid: replid.clone(),
                            offset: Some(after),
                            db: Some(work.stream_db),
                            updated_ms: now_ms(),
                        },
                        before,
                    })
                }
                _ => None,
            };
            if ckpt.is_some() {
                work.queued_ckpt = Some(after);
            }
            if ckpt.is_some() || !run.is_empty() {
                lay_out(run, ckpt, &mut work.pending);
            }
        }
        if !work.pending.is_empty() {
            // Charged once, as commands join the batch: snapshot keys and
            // stream commands both count as keys.
            let keys = work.units + work.keys;
            let bytes: usize = work.pending.iter().map(ApplyCmd::wire_len).sum();
            let wait = self.rate.charge(keys - work.charged, bytes as u64);
            work.charged = keys;
            work.batch.extend(work.pending.drain(..));
            if !wait.is_zero() {
                tokio::select! {
                    _ = cancel.cancelled() => return Err(ApplyEnd::Stopped),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        if !work.batch.is_empty() {
            self.apply_with_retry(ctx, &mut work.batch, cancel).await?;
        }
        if let Some(rdb) = work.rdb_applied.take() {
            ctx.status.send(ShardEvent::RdbApplied(rdb)).await;
        }
        work.keys = 0;
        work.units = 0;
        work.charged = 0;
        work.bytes = 0;
        work.safe = None;
        work.queued_ckpt = None;
        if let Some(off) = work.offset.take() {
            self.applied = Some(off);
            self.stream_db = work.stream_db;
            if work.rdb_start.take().is_some() {
                // The copy is whole: from here the checkpoint of each stream
                // batch shows what a restarted destination kept.
                self.writer.guard_restarts(false);
            }
            ctx.status.send(ShardEvent::Applied { offset: off }).await;
        }
        if let Some(p) = work.position.take() {
            marks.release.store(p, Ordering::Relaxed);
        }
        if let Some(h) = work.heartbeat.take() {
            ctx.status.send(ShardEvent::HeartbeatApplied(h)).await;
        }
        // What the destination's checkpoint says now: a destination that
        // comes back on a new connection saying anything else lost writes
        // it confirmed; the writer checks before sending anything again.
        if let (CheckpointStore::Destination, Some(replid)) = (self.store, &self.replid) {
            let copying = work.rdb_start.is_some();
            let offset = if copying { None } else { self.applied };
            if copying || offset.is_some() {
                let mark = CheckpointRecord { replid: replid.clone(), offset, db: None, updated_ms: 0 };
                self.writer.expect_after_loss(Some((self.ckpt_key.clone(), mark)));
            }
        }
        if self.last_local.elapsed() >= Duration::from_secs(1) {
            self.save_local_checkpoint().map_err(ApplyEnd::Failed)?;
            if let Some(why) = self.take_local_failure() {
                ctx.status
                    .alert(None, format!("{why}; the destination keeps this shard's checkpoint, so the shard goes on"))
                    .await;
            }
        }
        Ok(())
    }

    /// Checks that every key of the snapshot just applied was written or
    /// skipped for a counted reason (see [`super::accounting`]), and says so.
    async fn close_account(
        &mut self,
        ctx: &ShardCtx,
        tally: &SnapshotTally,
        stats: &crate::dest::RewriteStats,
    ) -> Result<(), EngineError> {
        let result = self.account.close(tally, stats.filtered, stats.module_skipped);
        let account = self.account.clone();
        ctx.status
            .send(ShardEvent::Keys {
                applied: account.written,
                skipped: account.skipped,
                rdb_version: Some(tally.version),
            })
            .await;
        if let Err(e) = result {
            let shard = self.shard.clone();
            return Err(EngineError::Accounting { message: format!("shard {shard}: {e}"), shard });
        }
        use crate::human::group_digits as n;
        let mut note = format!(
            "full copy applied: {} keys in the snapshot, {} written and confirmed by the destination; skipped: {}",
            n(tally.read.keys),
            n(account.written),
            account.skipped.describe()
        );
        let grace = stats.ttl_expired + stats.ttl_raised;
        if grace > 0 {
            note.push_str(&format!(
                "; {} keys expiring within the grace were written with a TTL of now + {} s (the stream deletes them)",
                n(grace),
                RewriteOptions::new(self.caps, self.conflict).ttl_grace_ms / 1000
            ));
        }
        ctx.status.alert(None, note).await;
        Ok(())
    }

    /// Applies a batch: transient failures are retried with backoff;
    /// failures that need the operator pause the shard until it is resumed
    /// (then the same batch is applied again).
    async fn apply_with_retry(
        &mut self,
        ctx: &ShardCtx,
        batch: &mut ApplyBatch,
        cancel: &CancellationToken,
    ) -> Result<(), ApplyEnd> {
        let shard = self.shard.clone();
        let mut backoff = Duration::from_millis(100);
        let mut control = ctx.control.clone();
        loop {
            let n = batch.len() as u64;
            let mut report = ApplyReport::default();
            let r = self.writer.apply(batch, &mut report).await;
            ctx.applied_ops.fetch_add(report.applied.min(n), Ordering::Relaxed);
            if let Some((old, new)) = self.writer.take_restart() {
                let what = match self.store {
                    CheckpointStore::Destination => "its checkpoint shows it kept every write it had confirmed",
                    CheckpointStore::Local => {
                        "with checkpoint = \"local\" the tool cannot tell whether it kept every write it had \
                         confirmed since its last save: check with shardsync verify"
                    }
                };
                ctx.status.alert(None, format!("the destination restarted (run_id {old} is now {new}); {what}")).await;
            }
            let own = self.report(ctx, &report).await;
            if report.keys_written > 0 || !report.collisions.is_empty() || report.kept > 0 {
                self.account.add(&report);
                self.account.written += own;
                self.account.skipped.collision -= own;
                let account = self.account.clone();
                ctx.status
                    .send(ShardEvent::Keys { applied: account.written, skipped: account.skipped, rdb_version: None })
                    .await;
            }
            let e = match r {
                Ok(()) => {
                    // Applied: whatever retried or paused before is over.
                    let copying = self.applied.is_none();
                    ctx.status.send(ShardEvent::ApplyingAgain { copying }).await;
                    return Ok(());
                }
                Err(e) => e,
            };
            let message = describe(&shard, &e);
            ctx.status.send(ShardEvent::WriteFailed { message: message.clone() }).await;
            if e.code == ROLLBACK {
                return Err(self.rolled_back(ctx, &message).await);
            }
            if e.class == ErrorClass::Retry {
                ctx.status.send(ShardEvent::Reconnecting { why: None }).await;
                tokio::select! {
                    _ = cancel.cancelled() => return Err(ApplyEnd::Stopped),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            // Needs the operator: pause until resumed.
            ctx.status.alert(e.origin.as_ref().map(|o| o.offset), format!("paused: {message}")).await;
            ctx.status.send(ShardEvent::Paused { on_error: true, why: None }).await;
            control.borrow_and_update();
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return Err(ApplyEnd::Failed(EngineError::Destination { shard, source: Box::new(e) })),
                    r = control.changed() => if r.is_err() {
                        return Err(ApplyEnd::Failed(EngineError::Destination { shard, source: Box::new(e) }));
                    },
                }
                if *control.borrow_and_update() == ShardControl::Run {
                    break;
                }
            }
            ctx.status.alert(None, "resumed by the operator: applying the paused batch again".to_owned()).await;
            ctx.status.send(ShardEvent::Resumed { to: None }).await;
            backoff = Duration::from_millis(100);
        }
    }

    /// Pauses the shard on a command it could not mirror, until the operator
    /// resumes it (then it goes on without that command) or stops it.
    async fn hold(&mut self, ctx: &ShardCtx, message: &str) -> Result<(), ApplyEnd> {
        let mut control = ctx.control.clone();
        ctx.status.alert(None, format!("paused: {message}")).await;
        ctx.status.send(ShardEvent::Paused { on_error: true, why: Some(message.to_owned()) }).await;
        control.borrow_and_update();
        loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return Err(ApplyEnd::Stopped),
                r = control.changed() => if r.is_err() { return Err(ApplyEnd::Stopped) },
            }
            if *control.borrow_and_update() == ShardControl::Run {
                break;
            }
        }
        ctx.status.alert(None, "resumed by the operator: going on without that command".to_owned()).await;
        ctx.status.send(ShardEvent::Resumed { to: None }).await;
        Ok(())
    }

    /// The destination lost writes it had confirmed: the next link resumes
    /// from what its checkpoint says it still holds.
    async fn rolled_back(&mut self, ctx: &ShardCtx, message: &str) -> ApplyEnd {
        let record = loop {
            match self.writer.read_checkpoint(&self.ckpt_key).await {
                Ok(r) => break r,
                Err(e) if e.class == ErrorClass::Retry => {
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => return ApplyEnd::Stopped,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                Err(source) => {
                    return ApplyEnd::Failed(EngineError::Destination {
                        shard: self.shard.clone(),
                        source: Box::new(source),
                    })
                }
            }
        };
        let (replid, applied, db) = match record {
            Some(r) => (Some(r.replid), r.offset, r.db.unwrap_or(0)),
            None => (None, None, 0),
        };
        let what = match (&replid, applied) {
            (Some(r), Some(o)) => format!("resuming from offset {o} of {r}, which it still holds"),
            _ => "copying this shard again in full".to_owned(),
        };
        self.replid = replid;
        self.applied = applied;
        self.stream_db = db;
        self.ours_on_dest = true;
        ctx.status.send(ShardEvent::AppliedOffset(applied)).await;
        ApplyEnd::Again(EngineError::LostWrites { shard: self.shard.clone(), message: format!("{message}; {what}") })
    }

    /// Alerts for what a batch found: collisions name every source that
    /// holds the key (asked at once, one pipeline per source), kept keys
    /// are counted.
    ///
    /// A key found existing by a re-send after a lost reply, that no other
    /// shard holds, is this shard's own first write: it is counted as
    /// written (the return value says how many), with one alert in all.
    async fn report(&self, ctx: &ShardCtx, report: &ApplyReport) -> u64 {
        let mut own = 0;
        if !report.collisions.is_empty() {
            let keys: Vec<(u32, &[u8])> = report.collisions.iter().map(|c| (c.db, c.key.as_ref())).collect();
            let surveys = collision::surveys(&ctx.task, &keys).await;
            for (c, survey) in report.collisions.iter().zip(surveys) {
                if c.uncertain && survey.unreachable.is_empty() && survey.holders == [self.shard.clone()] {
                    own += 1;
                    continue;
                }
                let key = crate::display::quoted_key(&c.key);
                ctx.status.alert(Some(c.offset), survey.message(&key, c.db, &self.shard, c.uncertain)).await;
            }
        }
        if own > 0 {
            let message = format!(
                "{own} keys sent again after a lost reply were already on the destination, and no other shard \
                 holds them: the first send was applied; counted as written"
            );
            ctx.status.alert(None, message).await;
        }
        if report.kept > 0 {
            let k = report.kept;
            ctx.status
                .alert(None, format!("{k} keys already on the destination were kept (conflict = \"skip\")"))
                .await;
        }
        own
    }
}

fn describe(shard: &str, e: &ApplyError) -> String {
    format!("shard {shard}: {e}")
}

/// What a link has taken in but not yet applied.
#[derive(Default)]
struct Work {
    /// Destination commands from the snapshot (and checkpoint marks).
    pending: Vec<ApplyCmd>,
    /// What a flush took in and the destination has not confirmed yet (see
    /// [`Applier::flush`]).
    batch: ApplyBatch,
    /// The offset the checkpoint units queued in `pending` and `batch`
    /// move the destination's checkpoint to.
    queued_ckpt: Option<u64>,
    /// Of `units + keys`, what the rate limit was already charged for.
    charged: u64,
    /// The source clock of the newest heartbeat taken since the last flush.
    heartbeat: Option<i64>,
    /// Commands that cannot be mirrored, taken since the last flush: the
    /// shard pauses once what came before them is applied.
    halts: Vec<String>,
    /// The source DB the stream is in after the last item taken, and at
    /// the last point outside a transaction.
    stream_db: u32,
    safe_db: u32,
    /// Stream commands since the last flush.
    run: Vec<ApplyCmd>,
    /// Inside a source transaction: never flush.
    in_multi: bool,
    /// The last point outside a transaction: (run length, offset, spool position).
    safe: Option<(usize, u64, u64)>,
    /// The offset (and spool position) the pending work brings the destination to.
    offset: Option<u64>,
    position: Option<u64>,
    /// The stream's start offset while a snapshot is being applied.
    rdb_start: Option<u64>,
    /// RDB bytes the snapshot items since the last flush cover (the
    /// offset after the last of them), shown as the copy's applied part.
    rdb_applied: Option<u64>,
    /// Snapshot keys, stream commands and their bytes since the last flush.
    keys: u64,
    units: u64,
    bytes: usize,
}

impl Work {
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
