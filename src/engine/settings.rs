//! The task file's `[sync]` settings as the engine's parts take them: the DB
//! map the stream filter, the rewrite and the source poller share, and the
//! conflict mode in the writer's terms.
//!
//! Free functions of the task alone, so that the shard's loop, its
//! destination side and the task's start read them from one place.

use std::collections::BTreeMap;

use crate::config::{ConflictMode, TaskConfig};
use crate::dest::Conflict;

/// The writer's [`Conflict`] for the task's `conflict` setting.
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
