//! One shard engine: a source master copied into the destination, for as
//! long as the task runs, through whatever fails on the way.
//!
//! ```text
//! ReplicationReader ─▶ spool ─▶ consumer thread ─▶ bounded channel ─▶ applier ─▶ DestWriter
//!   (socket task)               (RDB parser,                          (rewrite, units,
//!                                stream filter)                         checkpoints)
//! ```
//!
//! A shard runs as a series of *links*: one replication connection each,
//! with its own reader, spool and consumer. A link ends when the source
//! connection breaks (or the master goes away, or the destination turns out
//! to have lost writes); the applier first applies everything the link
//! received, then a new link asks the master to `PSYNC` from the offset the
//! destination holds, after a backoff. The destination side (writer,
//! checkpoint position) lives across links in the [`Applier`], so a link
//! never starts from anything but what the destination confirmed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::applier::{Applier, ApplyEnd};
use super::consumer::{self, Item, Marks, OwnKeys};
use super::ctx::{ShardControl, ShardCtx};
use super::error::EngineError;
use super::filter::StreamFilter;
use super::settings::db_map;
use super::snapshot::ShardState;
use super::status::{ShardEvent, StatusTx};
use crate::config::{host_of, FlushPolicy};
use crate::rdb::ParserOptions;
use crate::source::{ReplicationConfig, ReplicationProgress, ReplicationReader};

/// How a link ended, for the shard's loop.
enum LinkEnd {
    /// The shard was stopped.
    Stopped,
    /// Needs the operator.
    Failed(EngineError),
    /// Needs the operator, who can fix it while the task runs (a source's
    /// password changed): the shard pauses, and a resume starts a new link.
    Paused(EngineError),
    /// The disk under the spool is full: the shard waits for room.
    DiskFull { dir: std::path::PathBuf },
    /// A new link (after a backoff) can carry on; why this one ended.
    Again(EngineError),
}

impl LinkEnd {
    /// What the shard does about `e`, from its variant.
    fn after(e: EngineError) -> LinkEnd {
        if let Some(dir) = e.disk_full_dir() {
            LinkEnd::DiskFull { dir: dir.clone() }
        } else if e.pauses_shard() {
            LinkEnd::Paused(e)
        } else if e.is_retryable() {
            LinkEnd::Again(e)
        } else {
            LinkEnd::Failed(e)
        }
    }
}

/// The first wait before a new link, and the longest.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Runs one shard until it is cancelled or fails for good.
pub async fn run(ctx: ShardCtx) -> Result<(), EngineError> {
    let mut applier = Applier::connect(&ctx).await?;
    let mut backoff = BACKOFF_MIN;
    let mut links = 0u64;
    let result = loop {
        if ctx.cancel.is_cancelled() {
            break Ok(());
        }
        if links > 0 {
            ctx.status.send(ShardEvent::Reconnect).await;
        }
        links += 1;
        let received_before = applier.progress_mark();
        match link(&ctx, &mut applier).await {
            LinkEnd::Stopped => break Ok(()),
            LinkEnd::Failed(e) => break Err(e),
            LinkEnd::Paused(why) => {
                if !hold(&ctx, &why.to_string()).await {
                    break Ok(());
                }
                backoff = BACKOFF_MIN;
            }
            LinkEnd::DiskFull { dir } => {
                if !wait_for_room(&ctx, &dir).await {
                    break Ok(());
                }
                backoff = BACKOFF_MIN;
            }
            LinkEnd::Again(why) => {
                // A link that got somewhere starts the backoff over.
                if applier.progress_mark() != received_before {
                    backoff = BACKOFF_MIN;
                }
                ctx.status.alert(None, format!("{why}; connecting again in {} s", backoff.as_secs())).await;
                ctx.status.send(ShardEvent::Reconnecting { why: Some(why.to_string()) }).await;
                tokio::select! {
                    _ = ctx.cancel.cancelled() => break Ok(()),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    };
    applier.save_local_checkpoint()?;
    ctx.status.send(ShardEvent::Ended { error: result.as_ref().err().map(|e| e.to_string()) }).await;
    result
}

/// Pauses the shard with `why` until the operator resumes it (true) or the
/// shard is stopped (false).
async fn hold(ctx: &ShardCtx, why: &str) -> bool {
    ctx.status.alert(None, format!("paused: {why}; fix it, then resume the shard")).await;
    ctx.status.send(ShardEvent::Paused { on_error: true, why: Some(why.to_owned()) }).await;
    let mut control = ctx.control.clone();
    // A resume sent before this pause does not count.
    control.borrow_and_update();
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return false,
            r = control.changed() => if r.is_err() { return false },
        }
        if *control.borrow_and_update() == ShardControl::Run {
            break;
        }
    }
    ctx.status.alert(None, "resumed by the operator: connecting to the source again".to_owned()).await;
    ctx.status.send(ShardEvent::Resumed { to: Some(ShardState::Connecting) }).await;
    true
}

/// Room a spool needs to go on: one whole segment.
const SPOOL_ROOM: u64 = 64 << 20;

/// The spool's disk is full: its segments are removed (the next link
/// resumes from the checkpoint, not from the spool), the shard says where,
/// how much it needs and how much is free, and it waits until there is room
/// (true) or it is stopped (false).
async fn wait_for_room(ctx: &ShardCtx, dir: &std::path::Path) -> bool {
    let _ = crate::source::spool::remove(dir);
    // Measured where the spool would be, walking up to the first existing
    // directory (the spool's own directory was just removed).
    let free = |d: &std::path::Path| crate::source::spool::free_bytes(d).map(|(b, _)| b).unwrap_or(0);
    let why = format!(
        "the disk under the spool {} is full: the shard needs {} free to go on, {} are; its partial spool is \
         removed, and it goes on by itself once there is room (free some, or move state_dir)",
        dir.display(),
        crate::human::human_bytes(SPOOL_ROOM),
        crate::human::human_bytes(free(dir))
    );
    ctx.status.alert(None, format!("paused: {why}")).await;
    ctx.status.send(ShardEvent::Paused { on_error: true, why: Some(why.clone()) }).await;
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        if free(dir) >= SPOOL_ROOM {
            break;
        }
    }
    ctx.status.alert(None, format!("room again under {}: connecting to the source", dir.display())).await;
    ctx.status.send(ShardEvent::Resumed { to: Some(ShardState::Connecting) }).await;
    true
}

/// Waits for a full-copy slot on the source's host, when one is needed.
async fn full_sync_slot(ctx: &ShardCtx, full_copy_expected: bool) -> Option<Option<OwnedSemaphorePermit>> {
    let Some(slots) = ctx.full_sync_slots.clone().filter(|_| full_copy_expected) else {
        return Some(None);
    };
    if let Ok(permit) = slots.clone().try_acquire_owned() {
        return Some(Some(permit));
    }
    let addr = ctx.source.addr.to_string();
    let note = format!(
        "waiting for another full copy on host {} to finish (sync.full_syncs_per_host = {})",
        host_of(&addr),
        ctx.task.sync.full_syncs_per_host
    );
    ctx.status.send(ShardEvent::Waiting(Some(note))).await;
    let permit = tokio::select! {
        _ = ctx.cancel.cancelled() => return None,
        p = slots.acquire_owned() => p.ok(),
    };
    ctx.status.send(ShardEvent::Waiting(None)).await;
    Some(permit)
}

/// One replication link: connect, receive, apply, until it ends.
async fn link(ctx: &ShardCtx, applier: &mut Applier) -> LinkEnd {
    let shard = ctx.source.name.clone();
    let resume = applier.resume_position();
    let Some(mut slot) = full_sync_slot(ctx, resume.is_none()).await else {
        return LinkEnd::Stopped;
    };
    ctx.status.send(ShardEvent::LinkStarting).await;
    let state_dir = ctx.task.state_path();
    let spool_dir = state_dir.join("spool").join(super::checkpoint::file_name(&shard));
    let mut rcfg = ReplicationConfig::new(shard.clone(), ctx.source.addr.to_string(), spool_dir);
    rcfg.credentials = ctx.source.password.credentials();
    rcfg.resume = resume;
    // The link's own token: ending a link must not stop the shard.
    let cancel = ctx.cancel.child_token();
    let reader = match ReplicationReader::spawn(rcfg, cancel.clone()) {
        Ok(r) => r,
        Err(source) => return LinkEnd::Failed(EngineError::Source { shard: shard.clone(), source: Box::new(source) }),
    };
    // Ends with the link's token; awaited below on every way out.
    let progress = tokio::spawn(mirror_progress(reader.progress(), ctx.status.clone(), cancel.clone()));
    let mut stream = match reader.stream(cancel.clone()) {
        Ok(s) => s,
        Err(source) => {
            cancel.cancel();
            let _ = progress.await;
            let _ = reader.join().await;
            return LinkEnd::Failed(EngineError::Source { shard: shard.clone(), source: Box::new(source) });
        }
    };
    // Items travel in small batches: one channel message (and one wake-up of
    // the applier) per RDB event cost more than parsing the event.
    let (tx, rx) = mpsc::channel::<Vec<Item>>(64);
    let marks = Arc::new(Marks::default());
    let filter =
        StreamFilter::new(&ctx.task.sync.heartbeat_key, db_map(&ctx.task), ctx.task.sync.flush == FlushPolicy::Forward)
            .starting_in(applier.resume_db())
            .merged(ctx.task.sources.len() > 1);
    // Payloads are captured up to the big-key limit; values the writer will
    // restore as they are need not be decoded; their CRC-64 is computed by
    // the connection that sends them (`Cmd::arg_dump_payload`), not here.
    let parse = ParserOptions {
        capture_payload: Some(ctx.task.sync.big_key_bytes as usize),
        restore_versions: applier.restore_versions(),
        seal_payloads: false,
        ..ParserOptions::default()
    };
    let marks_c = marks.clone();
    let own_keys = OwnKeys::new(&ctx.task.sync.heartbeat_key);
    let consumer =
        tokio::task::spawn_blocking(move || consumer::consume(&mut stream, filter, own_keys, parse, marks_c, tx));

    let end = applier.apply_link(ctx, rx, &marks, &mut slot).await;

    cancel.cancel();
    let _ = consumer.await;
    let _ = progress.await;
    let source = reader.join().await;
    match end {
        ApplyEnd::Stopped => LinkEnd::Stopped,
        ApplyEnd::Failed(e) => LinkEnd::Failed(e),
        ApplyEnd::Again(why) => LinkEnd::Again(why),
        // The consumer ran dry or failed: when the link failed, the link's
        // error is the cause, and says whether a new link can help.
        ApplyEnd::Drained { consumer_error } => match (source, consumer_error) {
            (Err(source), _) => LinkEnd::after(EngineError::Source { shard, source: Box::new(source) }),
            (Ok(()), Some(e)) => LinkEnd::Failed(e),
            (Ok(()), None) if ctx.cancel.is_cancelled() => LinkEnd::Stopped,
            (Ok(()), None) => LinkEnd::Again(EngineError::LinkEnded { shard }),
        },
    }
}

async fn mirror_progress(
    mut progress: watch::Receiver<ReplicationProgress>,
    status: StatusTx,
    cancel: CancellationToken,
) {
    loop {
        let p = progress.borrow_and_update().clone();
        status.send(ShardEvent::Progress(p)).await;
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = progress.changed() => if r.is_err() { break },
        }
    }
}
