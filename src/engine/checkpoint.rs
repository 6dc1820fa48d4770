//! The local checkpoint of a shard: the replication ID and the offset up to
//! which the destination has acknowledged every write, so a restarted task
//! can ask the master for `PSYNC <replid> <offset>` and get `+CONTINUE`.
//!
//! Written atomically (temporary file + rename) so a crash leaves the old or
//! the new checkpoint, never half of one. Issue 4 makes the destination's own
//! copy (written in the same MULTI/EXEC as the batch) the authority; this
//! file remains the fallback where that is impossible.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub replid: String,
    /// Replication offset after the last command the destination acknowledged.
    pub offset: u64,
    /// The source DB the stream is in at `offset` (see
    /// [`CheckpointRecord::db`](crate::dest::CheckpointRecord::db)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<u32>,
    pub updated_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot write the checkpoint of shard {shard} to {path}: {source}; check the state directory's permissions and free space")]
    Write { shard: String, path: PathBuf, source: std::io::Error },
    #[error("the checkpoint of shard {shard} at {path} is unreadable ({what}); delete it to start this shard with a full copy")]
    Read { shard: String, path: PathBuf, what: String },
}

/// A shard name as a file name: shard names may hold `:` (unnamed
/// twemproxy servers are `host:port`), which is replaced to stay portable.
pub fn file_name(shard: &str) -> String {
    shard.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect()
}

/// Where a shard's checkpoint lives under the task's state directory.
pub fn path(state: &Path, shard: &str) -> PathBuf {
    state.join("checkpoints").join(format!("{}.json", file_name(shard)))
}

pub fn load(state: &Path, shard: &str) -> Result<Option<Checkpoint>, CheckpointError> {
    let p = path(state, shard);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| CheckpointError::Read {
            shard: shard.to_string(),
            path: p,
            what: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CheckpointError::Read { shard: shard.to_string(), path: p, what: e.to_string() }),
    }
}

pub fn save(state: &Path, shard: &str, ckpt: &Checkpoint) -> Result<(), CheckpointError> {
    let p = path(state, shard);
    let err = |source| CheckpointError::Write { shard: shard.to_string(), path: p.clone(), source };
    let dir = p.parent().unwrap_or(state);
    crate::private_fs::create_dir_all(dir).map_err(err)?;
    let tmp = p.with_extension("json.tmp");
    let body = serde_json::to_vec(ckpt).unwrap_or_default();
    let mut f = crate::private_fs::options().write(true).create(true).truncate(true).open(&tmp).map_err(err)?;
    f.write_all(&body).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &p).map_err(err)?;
    Ok(())
}

pub fn remove(state: &Path, shard: &str) -> std::io::Result<()> {
    match std::fs::remove_file(path(state, shard)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "127.0.0.1:7001").unwrap(), None);
        let c = Checkpoint { replid: "a".repeat(40), offset: 12345, db: Some(2), updated_ms: 1 };
        save(dir.path(), "127.0.0.1:7001", &c).unwrap();
        assert!(path(dir.path(), "127.0.0.1:7001").ends_with("checkpoints/127.0.0.1_7001.json"));
        assert_eq!(load(dir.path(), "127.0.0.1:7001").unwrap(), Some(c));
        remove(dir.path(), "127.0.0.1:7001").unwrap();
        assert_eq!(load(dir.path(), "127.0.0.1:7001").unwrap(), None);
    }

    #[test]
    fn damaged_checkpoint_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "s1");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"{not json").unwrap();
        let e = load(dir.path(), "s1").unwrap_err().to_string();
        assert!(e.contains("delete it"), "{e}");
    }
}
