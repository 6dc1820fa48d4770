//! One shard engine: a source master copied into the destination.
//!
//! ```text
//! ReplicationReader ─▶ spool ─▶ consumer thread ─▶ bounded channel ─▶ applier ─▶ DestWriter
//!   (socket task)               (RDB parser,                          (rewrite,
//!                                stream filter)                         batches, checkpoints)
//! ```
//!
//! The reader drains the socket to disk whatever the destination's pace.
//! The consumer runs in a blocking thread because the RDB parser reads a
//! `std::io::Read`; it hands the applier RDB events and filtered stream
//! commands over a bounded channel (the backpressure point). The applier
//! turns them into destination commands, applies them in pipelined batches
//! and, after each confirmed batch, moves the applied offset, the spool
//! release position and the checkpoint forward. Every part stops on the
//! shard's cancellation token.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::checkpoint::{self, Checkpoint};
use super::filter::{Action, StreamFilter};
use super::snapshot::{Alert, ShardSnapshot, ShardState};
use super::source_side::now_ms;
use crate::config::{ConflictMode, FlushPolicy, SourceConfig, TaskConfig};
use crate::dest::{
    dest_info, ApplyBatch, ApplyCmd, ApplyError, ApplyReport, Conflict, DestWriter, ErrorClass, Origin, ReplyRule,
    RewriteOptions, Rewriter, WriterOptions,
};
use crate::rdb::{Event, ParserOptions, RdbReader};
use crate::resp::{Cmd, ConnectOptions, Connection};
use crate::source::{
    PsyncEvent, PsyncPosition, ReplicationConfig, ReplicationProgress, ReplicationReader, ReplicationState,
};

/// Items from the consumer thread to the applier.
enum Item {
    /// A full resynchronization begins: the command stream after the
    /// snapshot starts at `offset`.
    FullResync {
        replid: String,
        offset: u64,
    },
    /// The master continues a previous session.
    Continue {
        replid: Option<String>,
    },
    /// An RDB event, with the RDB bytes read so far.
    Rdb {
        event: Event,
        rdb_offset: u64,
    },
    /// Lua scripts (`lua` aux fields) and function libraries from the RDB,
    /// loaded on the destination so `EVALSHA`/`FCALL` never miss.
    Script(Bytes),
    Function(Bytes),
    /// The snapshot is complete.
    RdbDone,
    /// A filtered stream command, at replication offset `offset` (after it),
    /// `position` in the spool.
    Stream {
        action: Action,
        offset: u64,
        position: u64,
    },
    /// Something skipped while reading the snapshot (an empty collection,
    /// a module value): shown as an alert.
    Warning(String),
    /// The consumer stopped on an error.
    Failed(String),
}

/// Commands a shard takes from the front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardControl {
    Run,
    Pause,
}

/// Everything a shard engine needs.
pub struct ShardCtx {
    pub task: Arc<TaskConfig>,
    pub source: SourceConfig,
    pub shared: Arc<Mutex<ShardSnapshot>>,
    /// Writes applied, for the ops/s figure.
    pub applied_ops: Arc<AtomicU64>,
    pub control: watch::Receiver<ShardControl>,
    pub cancel: CancellationToken,
}

fn set<F: FnOnce(&mut ShardSnapshot)>(shared: &Mutex<ShardSnapshot>, f: F) {
    if let Ok(mut s) = shared.lock() {
        f(&mut s);
    }
}

fn alert(shared: &Mutex<ShardSnapshot>, offset: Option<u64>, message: String) {
    set(shared, |s| {
        s.alerts_total += 1;
        s.alerts.push(Alert { ts_ms: now_ms(), offset, message });
        // Bounded: the newest alerts matter; the log keeps them all.
        if s.alerts.len() > 200 {
            s.alerts.remove(0);
        }
    });
}

pub fn conflict_of(mode: ConflictMode) -> Conflict {
    match mode {
        ConflictMode::Intercept => Conflict::Intercept,
        ConflictMode::Overwrite => Conflict::Overwrite,
        ConflictMode::Skip => Conflict::Skip,
    }
}

/// Source DB → destination DB for the task's selection, `None` for "every DB as is".
pub fn db_map(task: &TaskConfig) -> Option<BTreeMap<u32, u32>> {
    let sync = &task.sync;
    match &sync.databases {
        Some(dbs) => Some(dbs.iter().map(|&d| (d, sync.target_db(d))).collect()),
        None if sync.db_map.is_empty() => None,
        // Every DB Redis can have, mapped where the task says.
        None => Some((0..1024).map(|d| (d, sync.target_db(d))).collect()),
    }
}

fn connect_options(secret: &crate::config::Secret) -> ConnectOptions {
    ConnectOptions { credentials: secret.credentials(), ..ConnectOptions::default() }
}

/// Runs one shard until it is cancelled or fails.
pub async fn run(ctx: ShardCtx) -> Result<(), String> {
    let shard = ctx.source.name.clone();
    let state_dir = ctx.task.state_path();
    let dest_addr = ctx.task.destination.addr.to_string();
    let conflict = conflict_of(ctx.task.sync.conflict);

    // The destination first: without it nothing can be applied, and its
    // version decides between RESTORE and commands.
    let dest_opts = connect_options(&ctx.task.destination.password);
    let mut conn = Connection::connect(&dest_addr, &dest_opts)
        .await
        .map_err(|e| format!("shard {shard}: destination {dest_addr}: {e}"))?;
    let caps = dest_info(&mut conn).await.map_err(|e| format!("shard {shard}: destination {dest_addr}: {e}"))?;
    let mut wopts = WriterOptions::new(conflict);
    wopts.connect = dest_opts;
    let mut writer = DestWriter::with_connection(conn, wopts);
    let mut ropts = RewriteOptions::new(caps, conflict);
    ropts.big_key_bytes = ctx.task.sync.big_key_bytes as usize;
    ropts.db_map = db_map(&ctx.task);
    let mut rewriter = Rewriter::new(ropts);

    let resume = checkpoint::load(&state_dir, &shard)
        .map_err(|e| e.to_string())?
        .map(|c| PsyncPosition { replid: c.replid, offset: c.offset });
    let spool_dir = state_dir.join("spool").join(checkpoint::file_name(&shard));
    let mut rcfg = ReplicationConfig::new(shard.clone(), ctx.source.addr.to_string(), spool_dir);
    rcfg.credentials = ctx.source.password.credentials();
    rcfg.resume = resume.clone();
    let reader = ReplicationReader::spawn(rcfg, ctx.cancel.clone()).map_err(|e| e.to_string())?;

    // Mirror the reader's progress into the snapshot.
    let progress = reader.progress();
    tokio::spawn(mirror_progress(progress, ctx.shared.clone(), ctx.cancel.clone()));

    // The consumer thread.
    // Items travel in small batches: one channel message (and one wake-up of
    // the applier) per RDB event cost more than parsing the event.
    let (tx, mut rx) = mpsc::channel::<Vec<Item>>(64);
    let mut inbox: std::vec::IntoIter<Item> = Vec::new().into_iter();
    let release = Arc::new(AtomicU64::new(0));
    let mut stream = reader.stream(ctx.cancel.clone()).map_err(|e| e.to_string())?;
    let filter =
        StreamFilter::new(&ctx.task.sync.heartbeat_key, db_map(&ctx.task), ctx.task.sync.flush == FlushPolicy::Forward);
    let big = ctx.task.sync.big_key_bytes as usize;
    let release_c = release.clone();
    let own_keys = OwnKeys::new(&ctx.task.sync.heartbeat_key);
    let consumer = tokio::task::spawn_blocking(move || consume(&mut stream, filter, own_keys, big, release_c, tx));

    // The applier.
    let mut replid = resume.as_ref().map(|p| p.replid.clone());
    let mut applied: Option<u64> = resume.as_ref().map(|p| p.offset);
    let mut rdb_start_offset: Option<u64> = None;
    let mut batch = ApplyBatch::new();
    let mut pending: Vec<ApplyCmd> = Vec::new();
    let mut batch_offset: Option<u64> = None;
    let mut batch_position: Option<u64> = None;
    let mut batch_keys = 0u64;
    // The writer applies a MULTI ... EXEC unit whole: never cut a batch inside one.
    let mut in_multi = false;
    let mut last_ckpt = Instant::now();
    let mut control = ctx.control.clone();
    let mut result = Ok(());
    loop {
        // Paused: stop applying (the reader keeps spooling) until resumed.
        if *control.borrow() == ShardControl::Pause {
            let before = ctx.shared.lock().map(|s| s.state).unwrap_or(ShardState::Incremental);
            set(&ctx.shared, |s| s.state = ShardState::Stopped);
            while *control.borrow() == ShardControl::Pause {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => break,
                    r = control.changed() => if r.is_err() { break },
                }
            }
            set(&ctx.shared, |s| s.state = before);
        }
        let item = match inbox.next() {
            Some(item) => Some(item),
            None => {
                let items = tokio::select! {
                    biased;
                    _ = ctx.cancel.cancelled() => None,
                    // A pause takes effect before the next items, not after them.
                    r = control.changed() => {
                        if r.is_err() {
                            break;
                        }
                        continue;
                    }
                    items = rx.recv() => items,
                };
                let Some(items) = items else { break };
                inbox = items.into_iter();
                inbox.next()
            }
        };
        let Some(item) = item else { continue };
        let mut flush_now = false;
        match item {
            Item::FullResync { replid: r, offset } => {
                // A new snapshot replaces whatever the old checkpoint
                // described: resuming from it after a stop mid-snapshot would
                // replay old writes over newer data.
                checkpoint::remove(&state_dir, &shard).map_err(|e| format!("shard {shard}: {e}"))?;
                replid = Some(r);
                rdb_start_offset = Some(offset);
                applied = None;
            }
            Item::Continue { replid: r } => {
                if let Some(r) = r {
                    replid = Some(r);
                }
            }
            Item::Rdb { event, rdb_offset } => {
                let ends_key = matches!(event, Event::KeyEnd { .. });
                rewriter.feed(event, rdb_offset, now_ms(), &mut pending).map_err(|e| format!("shard {shard}: {e}"))?;
                for w in rewriter.take_warnings() {
                    let key = crate::rdb::parser::show_key(&w.key);
                    alert(&ctx.shared, Some(rdb_offset), format!("key {key} in db {}: {}", w.db, w.message));
                }
                if ends_key {
                    batch_keys += 1;
                }
            }
            Item::Script(body) => {
                pending.push(ApplyCmd::new(Cmd::new("SCRIPT").arg("LOAD").arg_bytes(body), Origin::default()));
            }
            Item::Function(code) => pending.push(ApplyCmd::new(
                Cmd::new("FUNCTION").arg("LOAD").arg("REPLACE").arg_bytes(code),
                Origin::default(),
            )),
            Item::RdbDone => {
                // Everything of the snapshot must be confirmed before the
                // stream's first command counts as the applied offset.
                flush_now = true;
                batch_offset = rdb_start_offset;
                rewriter.forget_db();
            }
            Item::Stream { action, offset, position } => {
                batch_offset = Some(offset);
                batch_position = Some(position);
                match action {
                    Action::Apply { db, args } => {
                        let key = args.get(1).cloned().unwrap_or_default();
                        let name = args.first().map(|a| a.as_ref()).unwrap_or_default();
                        let rule = if name.eq_ignore_ascii_case(b"MULTI") {
                            in_multi = true;
                            ReplyRule::Multi
                        } else if name.eq_ignore_ascii_case(b"EXEC") {
                            in_multi = false;
                            ReplyRule::Exec
                        } else {
                            ReplyRule::Ok
                        };
                        pending.push(ApplyCmd::new(Cmd::from_args(args), Origin { db, key, offset }).rule(rule));
                    }
                    Action::Heartbeat { sent_ms } => {
                        let lag = (now_ms() - sent_ms).max(0) as u64;
                        set(&ctx.shared, |s| s.lag_ms = Some(lag));
                    }
                    Action::Skip(_) => {}
                    Action::Refused { command, db } => {
                        let where_ = db.map(|d| format!(" on db {d}")).unwrap_or_default();
                        alert(
                            &ctx.shared,
                            Some(offset),
                            format!(
                                "{command}{where_} from source {shard} at offset {offset} was NOT applied (sync.flush = \"refuse\"): in a merged destination it would also delete the other shards' keys; delete this shard's keys yourself if intended, or set flush = \"forward\""
                            ),
                        );
                    }
                }
            }
            Item::Warning(w) => alert(&ctx.shared, None, w),
            // The consumer also fails when it is stopped; that is no failure.
            Item::Failed(_) if ctx.cancel.is_cancelled() => break,
            Item::Failed(e) => {
                result = Err(e);
                break;
            }
        }
        batch.extend(pending.drain(..));
        // Apply when the batch is big, when the channel is momentarily
        // empty (low latency in incremental mode), or at the snapshot's end.
        let idle = inbox.len() == 0 && rx.is_empty();
        if !in_multi && (flush_now || idle || batch.len() >= 2048 || batch.bytes() >= 8 << 20) {
            if let Err(e) = apply_with_retry(&mut writer, &mut batch, &ctx, &ctx.cancel, &shard).await {
                result = Err(e);
                break;
            }
            if batch_keys > 0 {
                let n = batch_keys;
                set(&ctx.shared, |s| s.keys_applied += n);
                batch_keys = 0;
            }
            if let Some(off) = batch_offset.take() {
                applied = Some(off);
                set(&ctx.shared, |s| {
                    s.applied_offset = Some(off);
                    let source = s.source_offset.max(s.received_offset);
                    s.lag_bytes = source.map(|so| so.saturating_sub(off));
                    // The snapshot is applied: incremental from here on.
                    if s.state == ShardState::Rdb {
                        s.state = ShardState::Incremental;
                    }
                });
            }
            if let Some(p) = batch_position.take() {
                release.store(p, Ordering::Relaxed);
            }
            if last_ckpt.elapsed() >= Duration::from_secs(1) {
                write_checkpoint(&state_dir, &shard, &replid, applied)?;
                last_ckpt = Instant::now();
            }
        }
    }
    // Stopping: whatever was received is applied first, so the checkpoint
    // covers it (unless the destination itself is what failed).
    if result.is_ok() && !batch.is_empty() {
        // Bounded: a destination that stays down must not hold the stop.
        let give_up = CancellationToken::new();
        let timer = give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            timer.cancel();
        });
        if apply_with_retry(&mut writer, &mut batch, &ctx, &give_up, &shard).await.is_ok() {
            if let Some(off) = batch_offset.take() {
                applied = Some(off);
            }
        }
    }
    write_checkpoint(&state_dir, &shard, &replid, applied)?;
    ctx.cancel.cancel();
    drop(rx);
    let _ = consumer.await;
    if let Err(e) = reader.join().await {
        if result.is_ok() && !is_cancel(&e.to_string()) {
            result = Err(e.to_string());
        }
    }
    set(&ctx.shared, |s| {
        s.state = if result.is_ok() { ShardState::Stopped } else { ShardState::Failed };
        if let Err(e) = &result {
            s.last_error = Some(e.clone());
        }
    });
    result
}

fn is_cancel(e: &str) -> bool {
    e.contains("cancel")
}

fn write_checkpoint(
    state_dir: &std::path::Path,
    shard: &str,
    replid: &Option<String>,
    applied: Option<u64>,
) -> Result<(), String> {
    if let (Some(replid), Some(offset)) = (replid, applied) {
        let c = Checkpoint { replid: replid.clone(), offset, updated_ms: now_ms() };
        checkpoint::save(state_dir, shard, &c).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Apply a batch, retrying transient failures with backoff; a failure that
/// needs the operator ends the shard with a message naming the command,
/// key and offset.
async fn apply_with_retry(
    writer: &mut DestWriter,
    batch: &mut ApplyBatch,
    ctx: &ShardCtx,
    cancel: &CancellationToken,
    shard: &str,
) -> Result<(), String> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let n = batch.len() as u64;
        let mut report = ApplyReport::default();
        let r = writer.apply(batch, &mut report).await;
        ctx.applied_ops.fetch_add(report.applied.min(n), Ordering::Relaxed);
        for c in &report.collisions {
            let key = crate::rdb::parser::show_key(&c.key);
            let maybe = if c.uncertain { " (found on a re-send: it may be this shard's own first write)" } else { "" };
            alert(
                &ctx.shared,
                Some(c.offset),
                format!(
                    "collision: key {key} in db {} already exists on the destination (another shard holds it too){maybe}; it was not overwritten (conflict = \"intercept\")",
                    c.db
                ),
            );
        }
        if report.kept > 0 {
            let k = report.kept;
            alert(&ctx.shared, None, format!("{k} keys already on the destination were kept (conflict = \"skip\")"));
        }
        match r {
            Ok(()) => {
                if backoff > Duration::from_millis(100) {
                    set(&ctx.shared, |s| s.state = ShardState::Incremental);
                }
                return Ok(());
            }
            Err(e) => {
                set(&ctx.shared, |s| {
                    s.errors += 1;
                    s.last_error = Some(describe(shard, &e));
                });
                if e.class != ErrorClass::Retry {
                    return Err(describe(shard, &e));
                }
                set(&ctx.shared, |s| s.state = ShardState::Reconnecting);
                tokio::select! {
                    _ = cancel.cancelled() => return Err(describe(shard, &e)),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn describe(shard: &str, e: &ApplyError) -> String {
    format!("shard {shard}: {e}")
}

async fn mirror_progress(
    mut progress: watch::Receiver<ReplicationProgress>,
    shared: Arc<Mutex<ShardSnapshot>>,
    cancel: CancellationToken,
) {
    loop {
        {
            let p = progress.borrow_and_update().clone();
            set(&shared, |s| {
                s.rdb_bytes = p.rdb_received;
                s.rdb_total = p.rdb_total;
                s.received_offset = p.received_offset;
                // What the master has sent is a lower bound of its offset
                // that is never stale, unlike the once-a-second poll.
                if let Some(r) = p.received_offset {
                    s.source_offset = Some(s.source_offset.map_or(r, |o| o.max(r)));
                    s.lag_bytes = s.applied_offset.map(|a| s.source_offset.unwrap_or(r).saturating_sub(a));
                }
                let state = match p.state {
                    ReplicationState::Connecting => ShardState::Connecting,
                    ReplicationState::Handshake => ShardState::Handshake,
                    ReplicationState::Rdb => ShardState::Rdb,
                    ReplicationState::Incremental => ShardState::Incremental,
                    ReplicationState::Stopped => ShardState::Stopped,
                    ReplicationState::Failed => ShardState::Failed,
                };
                // The applier owns Reconnecting (destination retries) and
                // Stopped (paused); and a shard is incremental only once the
                // snapshot is applied, not merely received.
                let applier_owned =
                    matches!(s.state, ShardState::Reconnecting | ShardState::Stopped | ShardState::Failed);
                if !(applier_owned || (state == ShardState::Incremental && s.applied_offset.is_none())) {
                    s.state = state;
                }
                if let Some(e) = &p.error {
                    s.last_error = Some(e.clone());
                }
            });
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = progress.changed() => if r.is_err() { break },
        }
    }
}

/// The tool's own keys (DESIGN.md): the heartbeat key and the checkpoint
/// keys `<heartbeat>:ckpt:<shard>`. A snapshot can hold them (the heartbeat
/// is written before the fork; a source may itself be a former destination),
/// and they are never copied.
#[derive(Clone)]
pub struct OwnKeys {
    heartbeat: Bytes,
    ckpt_prefix: Bytes,
}

impl OwnKeys {
    pub fn new(heartbeat_key: &str) -> Self {
        OwnKeys {
            heartbeat: Bytes::copy_from_slice(heartbeat_key.as_bytes()),
            ckpt_prefix: Bytes::from(format!("{heartbeat_key}:ckpt:")),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key == self.heartbeat.as_ref() || key.starts_with(&self.ckpt_prefix)
    }
}

/// Items per channel message.
const OUTBOX_ITEMS: usize = 256;

/// The consumer's side of the channel: items are handed over in batches, at
/// once when nothing more is at hand (so a lone command is not delayed).
struct Outbox {
    tx: mpsc::Sender<Vec<Item>>,
    items: Vec<Item>,
}

impl Outbox {
    /// False once the applier is gone.
    fn push(&mut self, item: Item, more_at_hand: bool) -> bool {
        self.items.push(item);
        if self.items.len() >= OUTBOX_ITEMS || !more_at_hand {
            return self.flush();
        }
        true
    }

    fn flush(&mut self) -> bool {
        if self.items.is_empty() {
            return true;
        }
        let items = std::mem::replace(&mut self.items, Vec::with_capacity(OUTBOX_ITEMS));
        self.tx.blocking_send(items).is_ok()
    }
}

/// The consumer thread: spool → items. Blocking.
fn consume(
    stream: &mut crate::source::ReplicationStream,
    mut filter: StreamFilter,
    own_keys: OwnKeys,
    big_key_bytes: usize,
    release: Arc<AtomicU64>,
    tx: mpsc::Sender<Vec<Item>>,
) {
    let mut out = Outbox { tx, items: Vec::with_capacity(OUTBOX_ITEMS) };
    let mut released = 0u64;
    loop {
        let ev = match stream.next_event() {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                out.flush();
                return;
            }
            Err(e) => {
                out.push(Item::Failed(e.to_string()), false);
                return;
            }
        };
        let more = stream.has_buffered();
        let ok = match ev {
            PsyncEvent::FullResync { replid, offset } => out.push(Item::FullResync { replid, offset }, more),
            PsyncEvent::Continue { new_replid } => out.push(Item::Continue { replid: new_replid }, more),
            PsyncEvent::MasterError { message } => {
                out.push(Item::Failed(format!("the master refused to sync: {message}")), false);
                return;
            }
            PsyncEvent::RdbBegin { .. } => {
                if !consume_rdb(stream, &own_keys, big_key_bytes, &mut out) {
                    return;
                }
                out.push(Item::RdbDone, false)
            }
            PsyncEvent::RdbData(_) | PsyncEvent::RdbEnd | PsyncEvent::KeepAlive => true,
            PsyncEvent::Command(c) => {
                let position = stream.position();
                let action = filter.filter(c.args);
                out.push(Item::Stream { action, offset: c.offset, position }, more)
            }
        };
        if !ok {
            return;
        }
        // Release spool segments in steps, not per command.
        let r = release.load(Ordering::Relaxed);
        if r > released + (1 << 20) && stream.release_upto(r).is_ok() {
            released = r;
        }
    }
}

/// The snapshot: RDB events, minus the tool's own keys, plus its scripts
/// and functions. False when the consumer must stop.
fn consume_rdb(
    stream: &mut crate::source::ReplicationStream,
    own_keys: &OwnKeys,
    big_key_bytes: usize,
    out: &mut Outbox,
) -> bool {
    let opts = ParserOptions { capture_payload: Some(big_key_bytes), ..ParserOptions::default() };
    let mut rdb = RdbReader::with_options(stream.rdb(), opts);
    let mut skipping = false;
    loop {
        let item = match rdb.next_event() {
            Ok(Some(Event::Aux(kv))) if kv.0.as_ref() == b"lua" => Item::Script(kv.1),
            Ok(Some(Event::Function { code })) => Item::Function(code),
            Ok(Some(Event::KeyStart(k))) if own_keys.contains(&k.key) => {
                skipping = true;
                continue;
            }
            Ok(Some(Event::Chunk(_))) if skipping => continue,
            Ok(Some(Event::KeyEnd { .. })) if skipping => {
                skipping = false;
                continue;
            }
            Ok(Some(event @ (Event::KeyStart(_) | Event::Chunk(_) | Event::KeyEnd { .. }))) => {
                Item::Rdb { event, rdb_offset: rdb.offset() }
            }
            Ok(Some(Event::Warning(w))) => Item::Warning(format!("snapshot byte {}: {}", w.offset, w.message)),
            Ok(Some(_)) => continue,
            Ok(None) => return true,
            Err(e) => {
                out.push(Item::Failed(format!("the snapshot from the master is unreadable: {e}")), false);
                return false;
            }
        };
        if !out.push(item, true) {
            return false;
        }
    }
}
