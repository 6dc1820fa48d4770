//! A task: one shard engine per source master, a snapshot publisher and a
//! command loop. `spawn` returns the `EngineHandle` every front end uses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::ctx::{NodeErrors, ShardControl, ShardCtx};
use super::error::EngineError;
use super::shard;
use super::snapshot::{ShardSnapshot, TaskSnapshot};
use super::source_side;
use super::status::{self, ShardEvent, StatusTx};
use super::tracked::Tracked;
use crate::clock::now_ms;
use crate::config::{host_of, TaskConfig};
use crate::dest::stats::{DestReading, DestStats, NodeStats};
use crate::resp::ConnectOptions;

/// What a front end can ask of a running task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    PauseShard(String),
    ResumeShard(String),
    /// Resume every shard (after an operator pause or a pause on error).
    ResumeAll,
    StopShard(String),
    StopTask,
}

/// A running task.
pub struct EngineHandle {
    pub status: watch::Receiver<TaskSnapshot>,
    pub commands: mpsc::Sender<Command>,
    cancel: CancellationToken,
    done: tokio::task::JoinHandle<Vec<(String, Result<(), EngineError>)>>,
}

impl EngineHandle {
    /// Stop every shard (checkpoints are written) and wait for them. The
    /// status channel then holds the closing snapshot: how each shard ended.
    pub async fn stop(self) -> Vec<(String, Result<(), EngineError>)> {
        self.cancel.cancel();
        self.done.await.unwrap_or_default()
    }

    /// Wait for the task to end on its own (every shard stopped or failed).
    pub async fn join(self) -> Vec<(String, Result<(), EngineError>)> {
        self.done.await.unwrap_or_default()
    }

    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// How long a stop waits for the helper tasks once every shard has ended:
/// above the heartbeat's own 2 s connect and 2 s `DEL`.
const HELPERS_DEADLINE: Duration = Duration::from_secs(5);

/// The destination's figures from the last reading, each master with the
/// errors met at it.
fn dest_view(reading: &Mutex<Option<DestReading>>, errors: &NodeErrors) -> (Option<DestStats>, Vec<NodeStats>) {
    match reading.lock().ok().and_then(|d| d.clone()) {
        Some(mut r) => {
            errors.fill(&mut r.nodes);
            (Some(r.total), r.nodes)
        }
        None => (None, Vec::new()),
    }
}

struct ShardSlot {
    /// The shard's status as its owner publishes it.
    view: watch::Receiver<ShardSnapshot>,
    /// To report what only the task sees (a panic).
    status: StatusTx,
    ops: Arc<AtomicU64>,
    control: watch::Sender<ShardControl>,
    cancel: CancellationToken,
}

/// Start the task. Must be called inside a tokio runtime.
pub fn spawn(task: TaskConfig, cancel: CancellationToken) -> EngineHandle {
    let task = Arc::new(task);
    let (status_tx, status_rx) = watch::channel(TaskSnapshot::default());
    // The publisher and, once every shard has ended, the closing snapshot.
    let status_tx = Arc::new(status_tx);
    let (cmd_tx, mut cmd_rx) = mpsc::channel::<Command>(64);
    let mut slots: Vec<(String, ShardSlot)> = Vec::new();
    let mut set: JoinSet<(String, Result<(), EngineError>)> = JoinSet::new();
    // Which shard each task of `set` runs, to name a shard that panicked.
    let mut shard_ids: HashMap<tokio::task::Id, String> = HashMap::new();
    let side = cancel.child_token();
    let helpers = Tracked::default();
    let node_errors = NodeErrors::default();
    // Each shard's status owner, ended (after what is queued) by `close_status`.
    let close_status = CancellationToken::new();
    let mut owners: Vec<tokio::task::JoinHandle<ShardSnapshot>> = Vec::new();
    // One semaphore per source host: masters sharing a machine must not
    // fork for a snapshot at the same time.
    let mut hosts: HashMap<String, Arc<tokio::sync::Semaphore>> = HashMap::new();
    for source in &task.sources {
        let full_sync_slots = (task.sync.full_syncs_per_host > 0).then(|| {
            let addr = source.addr.to_string();
            let host = host_of(&addr).to_owned();
            hosts
                .entry(host)
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(task.sync.full_syncs_per_host as usize)))
                .clone()
        });
        let (status, events, publish) = status::channel(&source.name);
        let view = publish.subscribe();
        owners.push(tokio::spawn(status::own(source.name.clone(), events, publish, close_status.clone())));
        let ops = Arc::new(AtomicU64::new(0));
        let (control, control_rx) = watch::channel(ShardControl::Run);
        let shard_cancel = cancel.child_token();
        let ctx = ShardCtx {
            task: task.clone(),
            source: source.clone(),
            status: status.clone(),
            applied_ops: ops.clone(),
            control: control_rx,
            cancel: shard_cancel.clone(),
            full_sync_slots,
            helpers: helpers.clone(),
            node_errors: node_errors.clone(),
        };
        let name = source.name.clone();
        let (fail_status, stop) = (status.clone(), shard_cancel.clone());
        let id = set.spawn(async move {
            let r = shard::run(ctx).await;
            // Whatever way the shard ended, its reader and helpers stop, and
            // a failure is what its snapshot shows.
            stop.cancel();
            if let Err(e) = &r {
                fail_status.send(ShardEvent::Ended { error: Some(e.to_string()) }).await;
            }
            (name, r)
        });
        shard_ids.insert(id.id(), source.name.clone());
        let opts = ConnectOptions { credentials: source.password.credentials(), ..ConnectOptions::default() };
        helpers.spawn(
            format!("heartbeat of {}", source.name),
            source_side::heartbeat(
                source.addr.to_string(),
                opts.clone(),
                task.sync.heartbeat_key.clone(),
                Duration::from_millis(task.sync.heartbeat_ms),
                status.clone(),
                side.clone(),
            ),
        );
        let poll = source_side::SourcePoll {
            addr: source.addr.to_string(),
            opts,
            dbs: super::settings::db_map(&task).map(|m| m.keys().copied().collect()),
            heartbeat_key: task.sync.heartbeat_key.clone(),
        };
        let offsets = source_side::poll_offset(poll, Duration::from_secs(1), status.clone(), side.clone());
        // A poll may be cut anywhere: it only reads.
        let stop_poll = side.clone();
        helpers.spawn(format!("offset poll of {}", source.name), async move {
            tokio::select! {
                _ = stop_poll.cancelled() => {}
                _ = offsets => {}
            }
            None
        });
        slots.push((source.name.clone(), ShardSlot { view, status, ops, control, cancel: shard_cancel }));
    }
    let slots = Arc::new(slots);
    let dest_stats: Arc<Mutex<Option<DestReading>>> = Arc::new(Mutex::new(None));
    let dest_poll = super::dest_side::poll_stats(
        task.destination.addr.to_string(),
        ConnectOptions { credentials: task.destination.password.credentials(), ..ConnectOptions::default() },
        Duration::from_secs(1),
        dest_stats.clone(),
        side.clone(),
    );
    let stop_poll = side.clone();
    helpers.spawn("destination poll", async move {
        tokio::select! {
            _ = stop_poll.cancelled() => {}
            _ = dest_poll => {}
        }
        None
    });

    // Snapshots: a few times a second, newest only (a `watch`).
    let pub_slots = slots.clone();
    let pub_cancel = cancel.clone();
    let pub_tx = status_tx.clone();
    let pub_dest = dest_stats.clone();
    let pub_errors = node_errors.clone();
    helpers.spawn("snapshot publisher", async move {
        let mut last: HashMap<String, (u64, i64)> = HashMap::new();
        loop {
            let t = now_ms();
            let shards = pub_slots
                .iter()
                .map(|(name, slot)| {
                    let mut s = slot.view.borrow().clone();
                    let ops = slot.ops.load(Ordering::Relaxed);
                    let (prev_ops, prev_t) = last.get(name).copied().unwrap_or((ops, t));
                    if t > prev_t {
                        s.ops_per_sec = (ops.saturating_sub(prev_ops)) * 1000 / (t - prev_t) as u64;
                    }
                    if t - prev_t >= 1000 || !last.contains_key(name) {
                        last.insert(name.clone(), (ops, t));
                    }
                    s.ts_ms = t;
                    s.refresh_lag(t);
                    s
                })
                .collect();
            let (destination, destination_nodes) = dest_view(&pub_dest, &pub_errors);
            let _ = pub_tx.send(TaskSnapshot { shards, destination, destination_nodes, closing_notes: Vec::new() });
            tokio::select! {
                _ = pub_cancel.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        None
    });

    // Commands from the front end.
    let cmd_slots = slots.clone();
    let cmd_cancel = cancel.clone();
    helpers.spawn("command loop", async move {
        loop {
            let c = tokio::select! {
                _ = cmd_cancel.cancelled() => break,
                c = cmd_rx.recv() => c,
            };
            let Some(c) = c else { break };
            let find = |n: &str| cmd_slots.iter().find(|(name, _)| name == n).map(|(_, s)| s);
            match c {
                Command::PauseShard(n) => {
                    if let Some(s) = find(&n) {
                        let _ = s.control.send(ShardControl::Pause);
                    }
                }
                Command::ResumeShard(n) => {
                    if let Some(s) = find(&n) {
                        let _ = s.control.send(ShardControl::Run);
                    }
                }
                Command::ResumeAll => {
                    for (_, s) in cmd_slots.iter() {
                        let _ = s.control.send(ShardControl::Run);
                    }
                }
                Command::StopShard(n) => {
                    if let Some(s) = find(&n) {
                        s.cancel.cancel();
                    }
                }
                Command::StopTask => cmd_cancel.cancel(),
            }
        }
        None
    });

    let end_cancel = cancel.clone();
    let end_slots = slots.clone();
    let done = tokio::spawn(async move {
        let mut results = Vec::new();
        while let Some(r) = set.join_next_with_id().await {
            match r {
                Ok((_, r)) => results.push(r),
                // A panic ends only its shard, and is reported as its failure.
                Err(e) => {
                    let name = shard_ids.get(&e.id()).cloned().unwrap_or_else(|| "?".to_owned());
                    let message = if e.is_panic() {
                        let p = e.into_panic();
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_else(|| "no message".to_owned())
                    } else {
                        "its task was cancelled".to_owned()
                    };
                    let why = EngineError::Panicked { shard: name.clone(), message };
                    tracing::error!(shard = %name, "{why}");
                    if let Some((_, slot)) = end_slots.iter().find(|(n, _)| *n == name) {
                        slot.cancel.cancel();
                        slot.status.send(ShardEvent::Ended { error: Some(why.to_string()) }).await;
                    }
                    results.push((name, Err(why)));
                }
            }
        }
        // Heartbeats stop (and delete their key) only once every shard has;
        // then every helper is waited for, within a deadline.
        side.cancel();
        end_cancel.cancel();
        let closing_notes = helpers.wait(HELPERS_DEADLINE).await;
        for note in &closing_notes {
            tracing::warn!("{note}");
        }
        // The status owners fold what is still queued and end: the closing
        // snapshot is how every shard ended, for the front ends' last lines.
        close_status.cancel();
        let mut shards = Vec::new();
        for ((_, slot), owner) in end_slots.iter().zip(owners) {
            let mut s = match owner.await {
                Ok(s) => s,
                Err(_) => slot.view.borrow().clone(),
            };
            s.ts_ms = now_ms();
            s.refresh_lag(s.ts_ms);
            s.ops_per_sec = 0;
            shards.push(s);
        }
        let (destination, destination_nodes) = dest_view(&dest_stats, &node_errors);
        status_tx.send_replace(TaskSnapshot { shards, destination, destination_nodes, closing_notes });
        results
    });
    EngineHandle { status: status_rx, commands: cmd_tx, cancel, done }
}
