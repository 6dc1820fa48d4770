//! What a shard engine is given: its task and source, where its status
//! goes (its status owner), the operator's pause/resume, its cancel token and its host's
//! full-copy slots. Plain data shared by `task` (which builds it), `shard`
//! and `applier` (which read it), so that neither of those imports the other
//! for it.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::status::StatusTx;
use super::tracked::Tracked;
use crate::config::{SourceConfig, TaskConfig};
use crate::dest::stats::NodeStats;

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
    /// Failed applies by destination address, over every shard.
    pub node_errors: NodeErrors,
}

/// Failed applies by the destination address that failed them, counted by
/// every shard's applier: the dashboard shows them on each cluster master's
/// line.
#[derive(Debug, Clone, Default)]
pub struct NodeErrors(Arc<Mutex<HashMap<String, u64>>>);

impl NodeErrors {
    pub fn count(&self, addr: &str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(addr.to_owned()).or_default() += 1;
        }
    }

    /// Sets each node's `errors` from the counts.
    pub fn fill(&self, nodes: &mut [NodeStats]) {
        if let Ok(m) = self.0.lock() {
            for n in nodes {
                n.errors = m.get(&n.addr).copied().unwrap_or(0);
            }
        }
    }
}
