//! The sync engine: one shard engine per source master, each a replication
//! reader → spool → parser → filter → destination writer pipeline, exposing
//! `snapshot::TaskSnapshot`s on a `watch` channel and taking commands.
//!
//! Parts: `task` starts a task and is the handle front ends hold; `shard`
//! runs one source; `filter` decides per replicated command; `source_side`
//! holds the heartbeat and offset poller; `dest_side` polls the
//! destination's keys, memory and ops/s for the dashboard; `checkpoint` the local resume
//! point; `snapshot` is what front ends read; `collision` names the shards
//! holding a key that collided; `accounting` checks that every key of a
//! snapshot was written or skipped for a counted reason; `tracked` runs the
//! helper tasks beside the shards, so that a stop waits for every one.
//! `settings` turns the task's `[sync]` settings into what the parts take
//! (the DB map, the conflict mode); `status` is a shard's one status owner:
//! its parts send typed events, one task per shard folds them into the
//! snapshot (a pure, tested function) and publishes it; `ctx` is what a
//! shard is given, shared by `task`, `shard` and `applier`. `applier` is a
//! shard's destination side, a loop over `batcher` (pure: items in,
//! batches with their checkpoint moves out).
//! `error` is the one typed error a shard ends, pauses or reconnects on.

pub mod accounting;
pub mod applier;
pub mod batcher;
pub mod checkpoint;
pub mod collision;
pub mod consumer;
pub mod ctx;
pub mod dest_side;
pub mod error;
pub mod filter;
pub mod rate;
pub mod settings;
pub mod shard;
pub mod snapshot;
pub mod source_side;
pub mod state_lock;
mod status;
pub mod task;
mod tracked;

pub use error::EngineError;
pub use task::{spawn, Command, EngineHandle};
