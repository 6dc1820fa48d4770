//! What a shard engine is given: its task and source, where its status
//! goes (its status owner), the operator's pause/resume, its cancel token and its host's
//! full-copy slots. Plain data shared by `task` (which builds it), `shard`
//! and `applier` (which read it), so that neither of those imports the other
//! for it.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::status::StatusTx;
use super::tracked::Tracked;
use crate::config::{SourceConfig, TaskConfig};

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
    /// Where the shard reports; its status has one owner (see `status`).
    pub status: StatusTx,
    /// Writes applied, for the ops/s figure.
    pub applied_ops: Arc<AtomicU64>,
    pub control: watch::Receiver<ShardControl>,
    pub cancel: CancellationToken,
    /// Full copies at a time on this source's host (`full_syncs_per_host`);
    /// `None`: no limit.
    pub full_sync_slots: Option<Arc<Semaphore>>,
    /// Where a shard spawns what may outlive one of its links (the task
    /// waits for them when it stops).
    pub(super) helpers: Tracked,
}
