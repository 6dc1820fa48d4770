//! The destination side of a shard: turns the consumer's items into
//! destination commands, applies them in batches, and keeps the checkpoint.
//!
//! **Checkpoints.** With `checkpoint = "destination"` (the default) every
//! batch of the command stream is one `MULTI`/`EXEC` that also moves the
//! shard's checkpoint key (see [`crate::dest::layout`]); a full copy marks
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
//!
//! **Parts.** The destination is a [`Destination`] (every conversation with
//! it is `dest/`'s); what goes into each batch, and where it leaves the
//! checkpoint, is the pure [`Batcher`]'s. What is left here is the loop:
//! take items, ask the batcher, apply, retry or pause, and tell the shard's
//! status what happened.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::accounting::KeyAccount;
use super::batcher::{Batcher, Position};
use super::checkpoint;
use super::collision;
use super::consumer::{Item, Marks, SnapshotTally};
use super::ctx::{ShardControl, ShardCtx};
use super::error::EngineError;
use super::rate::RateLimit;
use super::settings::{conflict_of, db_map};
use super::status::ShardEvent;
use crate::clock::now_ms;
use crate::config::CheckpointStore;
use crate::dest::error::{ROLLBACK_RESTART, TRYAGAIN};
use crate::dest::{ApplyError, ApplyReport, Conflict, Destination, ErrorClass, OpenError, OpenOptions, RewriteStats};
use crate::resp::ConnectOptions;
use crate::source::PsyncPosition;

/// The first wait before applying again after a retryable failure; it
/// doubles up to 5 s.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait after `TRYAGAIN`, for the first 2 s of a streak (see
/// [`retry_wait`]).
const TRYAGAIN_WAIT: Duration = Duration::from_millis(50);
const TRYAGAIN_STREAK: Duration = Duration::from_secs(2);

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

/// The destination side of one shard, across links.
pub(super) struct Applier {
    shard: String,
    state_dir: PathBuf,
    dest: Destination,
    batcher: Batcher,
    /// Whether the checkpoint is kept in the destination (else only in
    /// the local file).
    store: CheckpointStore,
    conflict: Conflict,
    /// The key accounting of the full copy in progress (or the last one).
    account: KeyAccount,
    /// Why the local checkpoint file could not be written (a full disk),
    /// while it cannot; and whether that was said.
    local_failed: Option<String>,
    local_failed_reported: bool,
    rate: RateLimit,
    last_local: Instant,
    /// Items received over all links: whether a link got anywhere.
    received: u64,
}

fn connect_options(secret: &crate::config::Secret) -> ConnectOptions {
    ConnectOptions { credentials: secret.credentials(), ..ConnectOptions::default() }
}

impl Applier {
    /// Connects to the destination and finds where this shard stands.
    pub(super) async fn connect(ctx: &ShardCtx) -> Result<Applier, EngineError> {
        let shard = ctx.source.name.clone();
        let state_dir = ctx.task.state_path();
        let addr = ctx.task.destination.addr.to_string();
        let conflict = conflict_of(ctx.task.sync.conflict);
        let opts = OpenOptions {
            addr: addr.clone(),
            connect: connect_options(&ctx.task.destination.password),
            conflict,
            checkpoint_key: ctx.task.sync.checkpoint_key(&shard).into(),
            checkpoint_here: ctx.task.sync.checkpoint == CheckpointStore::Destination,
            cluster: match ctx.task.destination.kind {
                crate::config::DestKind::Auto => None,
                crate::config::DestKind::Standalone => Some(false),
                crate::config::DestKind::Cluster => Some(true),
            },
        };
        let opened = Destination::open(opts).await.map_err(|e| {
            let (shard, addr) = (shard.clone(), addr.clone());
            match e {
                OpenError::Connect(source) => EngineError::DestinationConnect { shard, addr, source: Box::new(source) },
                OpenError::CheckpointReadRefused { reply, .. } => {
                    EngineError::CheckpointReadRefused { shard, addr, reply }
                }
                OpenError::ForeignCheckpoint { key } => EngineError::ForeignCheckpoint { shard, addr, key },
                OpenError::NotACluster => EngineError::NotACluster { shard, addr },
                OpenError::Cluster(source) => EngineError::Destination { shard, source: Box::new(source) },
            }
        })?;
        let mut dest = opened.dest;
        if dest.layout().is_cluster() {
            let masters: Vec<String> =
                dest.masters().iter().map(|(addr, slots)| format!("{addr} ({slots} slots)")).collect();
            let message = format!("destination {addr} is a Redis Cluster: writing to {}", masters.join(", "));
            ctx.status.alert(None, message).await;
        }
        if opened.refuses_multi {
            let message = format!(
                "destination {addr} refuses MULTI/EXEC: this shard's checkpoint is kept only in the local \
                 state file, so a crash of the tool can repeat up to a second of writes (set sync.checkpoint = \
                 \"local\" to silence this)"
            );
            ctx.status.alert(None, message).await;
        }
        let store = if dest.layout().in_destination() { CheckpointStore::Destination } else { CheckpointStore::Local };
        let local = checkpoint::load(&state_dir, &shard)
            .map_err(|source| EngineError::Checkpoint { shard: shard.clone(), source: Box::new(source) })?;
        let pos = match (store, opened.checkpoint, local) {
            (CheckpointStore::Destination, Some(r), _) => {
                if r.offset.is_none() {
                    let message = "the destination holds an interrupted full copy of this shard: copying \
                                   again, replacing those keys whole";
                    ctx.status.alert(None, message.to_owned()).await;
                }
                Position {
                    replid: Some(r.replid),
                    applied: r.offset,
                    stream_db: r.db.unwrap_or(0),
                    ours_on_dest: true,
                    slots: opened.slot_checkpoints.iter().copied().collect(),
                }
            }
            (CheckpointStore::Destination, None, Some(l)) => {
                let message = format!(
                    "the local checkpoint says offset {} was applied, but the destination holds no checkpoint \
                     for this shard (flushed, restarted without persistence, or another destination?): \
                     copying it again in full",
                    l.offset
                );
                ctx.status.alert(None, message).await;
                Position { ours_on_dest: true, ..Position::default() }
            }
            (CheckpointStore::Local, _, Some(l)) => Position {
                replid: Some(l.replid),
                applied: Some(l.offset),
                stream_db: l.db.unwrap_or(0),
                ours_on_dest: true,
                slots: Default::default(),
            },
            (_, None, None) | (CheckpointStore::Local, _, None) => Position::default(),
        };
        // Until a full copy is whole, only the server's run_id shows that it
        // restarted from a save made part-way through.
        dest.guard_restarts(pos.applied.is_none());
        if let (Some(replid), Some(offset)) = (&pos.replid, pos.applied) {
            let mark =
                crate::dest::CheckpointRecord { replid: replid.clone(), offset: Some(offset), db: None, updated_ms: 0 };
            dest.expect_after_loss(Some(mark));
        }
        let mut ropts = dest.rewrite_options(conflict);
        ropts.big_key_bytes = ctx.task.sync.big_key_bytes as usize;
        ropts.db_map = db_map(&ctx.task);
        ropts.modules = match ctx.task.sync.modules {
            crate::config::ModulePolicy::Fail => crate::dest::rewrite::ModuleKeys::Fail,
            crate::config::ModulePolicy::Skip => crate::dest::rewrite::ModuleKeys::Skip,
            crate::config::ModulePolicy::Restore => crate::dest::rewrite::ModuleKeys::Restore,
        };
        let batcher = Batcher::new(shard.clone(), dest.layout().clone(), ropts, pos);
        Ok(Applier {
            shard,
            state_dir,
            dest,
            batcher,
            store,
            conflict,
            account: KeyAccount::default(),
            local_failed: None,
            local_failed_reported: false,
            rate: RateLimit::new(ctx.task.sync.max_keys_per_sec, ctx.task.sync.max_bytes_per_sec),
            last_local: Instant::now(),
            received: 0,
        })
    }

    /// Where the next link asks the master to continue from; `None`: a full copy.
    pub(super) fn resume_position(&self) -> Option<PsyncPosition> {
        self.batcher.resume_position()
    }

    /// The RDB versions whose payloads the writer restores as they are
    /// (see [`RewriteOptions::restore_versions`]).
    pub(super) fn restore_versions(&self) -> u128 {
        self.batcher.rewrite_options().restore_versions()
    }

    /// The source DB a resumed stream starts in (see [`StreamFilter::starting_in`]).
    ///
    /// [`StreamFilter::starting_in`]: super::filter::StreamFilter::starting_in
    pub(super) fn resume_db(&self) -> u32 {
        self.batcher.position().stream_db
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
        if let Some(c) = self.batcher.local_checkpoint(now_ms()) {
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

    /// Applies a link's items until the link ends; see [`ApplyEnd`].
    pub(super) async fn apply_link(
        &mut self,
        ctx: &ShardCtx,
        mut rx: mpsc::Receiver<Vec<Item>>,
        marks: &Arc<Marks>,
        slot: &mut Option<OwnedSemaphorePermit>,
    ) -> ApplyEnd {
        let shard = self.shard.clone();
        self.batcher.begin_link();
        let mut inbox: std::vec::IntoIter<Item> = Vec::new().into_iter();
        // The clock as of the items in hand: read once per delivery, not per
        // snapshot event (a system call's worth of CPU per key otherwise);
        // it only sets the TTL floor of keys about to expire.
        let mut now = now_ms();
        let mut control = ctx.control.clone();
        // Looked at when it changes, not per item: a borrow takes the
        // watch's lock: atomic writes per item on a line other tasks read.
        let mut paused = pause_asked(&mut control);
        let mut untold = 0u64;
        let end = loop {
            if control.has_changed().unwrap_or(false) {
                paused = pause_asked(&mut control);
            }
            // Paused: stop applying (the reader keeps spooling) until resumed.
            if paused {
                ctx.status.send(ShardEvent::Paused { on_error: false, why: None }).await;
                while *control.borrow() == ShardControl::Pause {
                    tokio::select! {
                        _ = ctx.cancel.cancelled() => break,
                        r = control.changed() => if r.is_err() { break },
                    }
                }
                ctx.status.send(ShardEvent::Resumed { to: None }).await;
                paused = pause_asked(&mut control);
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
                            paused = pause_asked(&mut control);
                            continue;
                        }
                        items = rx.recv() => items,
                    };
                    let Some(items) = items else { break ApplyEnd::Drained { consumer_error: None } };
                    self.received += items.len() as u64;
                    now = now_ms();
                    inbox = items.into_iter();
                    match inbox.next() {
                        Some(item) => item,
                        None => continue,
                    }
                }
            };
            // Told to the consumer every 64 items and at each delivery's end,
            // not per item: the counter's cache line is shared with the
            // consumer's thread.
            untold += item.mem_bytes();
            if inbox.len() % 64 == 0 {
                marks.took(std::mem::take(&mut untold));
            }
            let mut flush_now = false;
            match item {
                Item::FullResync { replid, offset } => {
                    if let Some(from) = self.batcher.resume_position() {
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
                    self.dest.expect_after_loss(None);
                    self.dest.guard_restarts(true);
                    self.account = KeyAccount::default();
                    self.batcher.full_resync(replid, offset, now_ms());
                    ctx.status.send(ShardEvent::FullSyncStarted { offset }).await;
                }
                Item::Continue { replid } => {
                    // No snapshot: the host's full-copy slot is free again.
                    slot.take();
                    self.batcher.continued(replid, now_ms());
                }
                Item::Rdb { event, rdb_offset } => match self.batcher.rdb(event, rdb_offset, now) {
                    Ok(warnings) => {
                        for w in warnings {
                            let key = crate::display::quoted_key(&w.key);
                            let message = format!("key {key} in db {}: {}", w.db, w.message);
                            ctx.status.alert(Some(rdb_offset), message).await;
                        }
                    }
                    Err(source) => {
                        break ApplyEnd::Failed(EngineError::Rewrite { shard: shard.clone(), source: Box::new(source) })
                    }
                },
                Item::Script(body) => self.batcher.script(body),
                Item::Function(code) => self.batcher.function(code),
                Item::RdbDone(tally) => {
                    // Every key of the snapshot confirmed, then accounted for,
                    // before the checkpoint may say the copy is whole and the
                    // stream's first command counts as the applied offset.
                    if let Err(end) = self.flush(ctx, marks, &ctx.cancel).await {
                        break end;
                    }
                    let stats = self.batcher.rewrite_stats().clone();
                    if let Err(e) = self.close_account(ctx, &tally, &stats).await {
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
                    self.batcher.snapshot_applied(now_ms(), &self.dest.marker_slots());
                }
                Item::Stream { action, offset, position, source_db } => {
                    if let Some(alert) = self.batcher.stream(action, offset, position, source_db) {
                        ctx.status.alert(Some(offset), alert).await;
                    }
                }
                Item::Warning(w) => ctx.status.alert(None, w).await,
                Item::Failed(f) => break ApplyEnd::Drained { consumer_error: Some(f.into_error(&shard)) },
            }
            let idle = inbox.len() == 0 && rx.is_empty();
            if self.batcher.due(idle, flush_now, self.rate.batch_keys()) {
                if let Err(end) = self.flush(ctx, marks, &ctx.cancel).await {
                    break end;
                }
                // What came before is applied: now the operator decides.
                if let Some(message) = self.batcher.take_halts() {
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
            self.batcher.end_link();
            // Bounded when stopping: a destination that stays down must not
            // hold the stop.
            let give_up = CancellationToken::new();
            let stopping = ctx.cancel.is_cancelled();
            let cancel = if stopping { &give_up } else { &ctx.cancel };
            let flushed = {
                let flush = self.flush(ctx, marks, cancel);
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

    /// Applies what the batcher holds (whole units only) and moves the
    /// checkpoint; see the module docs.
    ///
    /// What a flush cuts stays in the batcher's batch until the destination
    /// confirmed all of it: a flush that is stopped (a cancelled rate-limit
    /// wait or retry backoff) or fails leaves the rest there, with the
    /// checkpoint move it carries, for the next flush to apply first. So a
    /// checkpoint can only ever move together with the commands it covers.
    async fn flush(&mut self, ctx: &ShardCtx, marks: &Arc<Marks>, cancel: &CancellationToken) -> Result<(), ApplyEnd> {
        if !self.batcher.copying() {
            // A cluster master without a checkpoint to check after a restart.
            self.batcher.mark_slots(self.dest.unmarked_slots());
        }
        if let Some(charge) = self.batcher.cut(now_ms()) {
            let wait = self.rate.charge(charge.keys, charge.bytes);
            if !wait.is_zero() {
                tokio::select! {
                    _ = cancel.cancelled() => return Err(ApplyEnd::Stopped),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        if !self.batcher.batch().is_empty() {
            self.apply_with_retry(ctx, cancel).await?;
        }
        let done = self.batcher.confirmed();
        if let Some(rdb) = done.rdb_applied {
            ctx.status.send(ShardEvent::RdbApplied(rdb)).await;
        }
        if let Some(off) = done.applied {
            if done.copy_whole {
                // The copy is whole: from here the checkpoint of each stream
                // batch shows what a restarted destination kept.
                self.dest.guard_restarts(false);
            }
            ctx.status.send(ShardEvent::Applied { offset: off }).await;
        }
        if let Some(p) = done.release {
            marks.release.store(p, Ordering::Relaxed);
        }
        if let Some(h) = done.heartbeat {
            ctx.status.send(ShardEvent::HeartbeatApplied(h)).await;
        }
        // What the destination's checkpoint says now: a destination that
        // comes back on a new connection saying anything else lost writes
        // it confirmed; the writer checks before sending anything again.
        if done.checkpoint.is_some() {
            self.dest.expect_after_loss(done.checkpoint);
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
        stats: &RewriteStats,
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
                self.batcher.rewrite_options().ttl_grace_ms / 1000
            ));
        }
        ctx.status.alert(None, note).await;
        Ok(())
    }

    /// Applies a batch: transient failures are retried with backoff;
    /// failures that need the operator pause the shard until it is resumed
    /// (then the same batch is applied again).
    async fn apply_with_retry(&mut self, ctx: &ShardCtx, cancel: &CancellationToken) -> Result<(), ApplyEnd> {
        let shard = self.shard.clone();
        let mut backoff = FIRST_BACKOFF;
        let mut streak = std::time::Instant::now();
        let mut control = ctx.control.clone();
        loop {
            if backoff == FIRST_BACKOFF {
                streak = std::time::Instant::now();
            }
            let n = self.batcher.batch().len() as u64;
            let mut report = ApplyReport::default();
            let r = self.dest.apply(self.batcher.batch(), &mut report).await;
            ctx.applied_ops.fetch_add(report.applied.min(n), Ordering::Relaxed);
            if let Some((old, new)) = self.dest.take_restart() {
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
                    let copying = self.batcher.copying();
                    ctx.status.send(ShardEvent::ApplyingAgain { copying }).await;
                    return Ok(());
                }
                Err(e) => e,
            };
            let message = describe(&shard, &e);
            ctx.node_errors.count(&e.addr);
            ctx.status.send(ShardEvent::WriteFailed { message: message.clone() }).await;
            if e.is_rollback() {
                return Err(self.rolled_back(ctx, &message, e.code == ROLLBACK_RESTART).await);
            }
            if e.class == ErrorClass::Retry {
                if backoff == FIRST_BACKOFF {
                    // Once per streak, so a headless run says why it waits.
                    ctx.status.alert(e.origin.as_ref().map(|o| o.offset), message.clone()).await;
                }
                ctx.status.send(ShardEvent::Reconnecting { why: None }).await;
                tokio::select! {
                    _ = cancel.cancelled() => return Err(ApplyEnd::Stopped),
                    _ = tokio::time::sleep(retry_wait(&e, backoff, streak.elapsed())) => {}
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
            backoff = FIRST_BACKOFF;
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
    /// `whole`: a cluster master came back without its data, so what the
    /// full copy wrote there may be gone as well: the stream cannot
    /// resume, the shard copies again in full.
    async fn rolled_back(&mut self, ctx: &ShardCtx, message: &str, whole: bool) -> ApplyEnd {
        // On a cluster also each slot's own checkpoint: the slots that got
        // further than the shard's (their masters kept what they confirmed)
        // must not apply it again.
        let (record, slots) = loop {
            match self.dest.read_position().await {
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
        if whole {
            self.batcher.copy_again(slots);
        } else {
            self.batcher.restart_from(record, slots);
        }
        let applied = self.batcher.position().applied;
        let what = match self.batcher.resume_position() {
            Some(p) => format!("resuming from offset {} of {}, which it still holds", p.offset, p.replid),
            None => "copying this shard again in full".to_owned(),
        };
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

/// How long to wait before applying again after `e`, `backoff` into a
/// streak of failures that began `streak` ago. `TRYAGAIN` (a cluster moving
/// the slot of a unit whose keys are now on both sides) ends as soon as the
/// slot's last keys have moved, usually within milliseconds, and the whole
/// shard waits on it: for its first [`TRYAGAIN_STREAK`] its wait does not
/// grow like the others' (a slot with many keys would otherwise hold every
/// slot's writes for up to 5 s after its move was over). A move that takes
/// longer (one left half-way) is waited on like any other failure.
fn retry_wait(e: &ApplyError, backoff: Duration, streak: Duration) -> Duration {
    if e.code == TRYAGAIN && streak < TRYAGAIN_STREAK {
        backoff.min(TRYAGAIN_WAIT)
    } else {
        backoff
    }
}

/// Whether the operator's control says pause, marking it seen (the loop
/// looks again only when it changes).
fn pause_asked(control: &mut tokio::sync::watch::Receiver<ShardControl>) -> bool {
    *control.borrow_and_update() == ShardControl::Pause
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_in_motion_is_retried_soon_for_the_first_seconds() {
        let e = |code: &str| ApplyError {
            class: ErrorClass::Retry,
            code: code.to_owned(),
            addr: "127.0.0.1:7000".to_owned(),
            command: None,
            origin: None,
            detail: String::new(),
        };
        let early = Duration::from_millis(300);
        assert_eq!(retry_wait(&e("TRYAGAIN"), Duration::from_secs(5), early), TRYAGAIN_WAIT);
        assert_eq!(retry_wait(&e("TRYAGAIN"), Duration::from_millis(10), early), Duration::from_millis(10));
        assert_eq!(retry_wait(&e("LOADING"), Duration::from_secs(5), early), Duration::from_secs(5));
        assert_eq!(retry_wait(&e("CLUSTERDOWN"), FIRST_BACKOFF, early), FIRST_BACKOFF);
        // A move left half-way: waited on like anything else.
        let long = TRYAGAIN_STREAK + Duration::from_millis(1);
        assert_eq!(retry_wait(&e("TRYAGAIN"), Duration::from_secs(5), long), Duration::from_secs(5));
    }
}
