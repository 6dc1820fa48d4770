//! The checkpoint a shard keeps in the destination: the value of
//! `<heartbeat_key>:ckpt:<shard>` (`docs/task-file.md`), always in DB 0.
//!
//! During the command stream it is written inside the same `MULTI`/`EXEC`
//! as the writes it covers, so the destination's data and its checkpoint
//! can never disagree: whatever the destination kept after a crash (ours,
//! or its own restart), the checkpoint says exactly which source offset that
//! data reflects. During a full copy it only says "this shard's keys are
//! being copied here" (`offset` = `None`), so a restarted copy knows the
//! keys it finds are its own.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The DB the checkpoint keys live in.
pub const CHECKPOINT_DB: u32 = 0;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The source's replication ID.
    pub replid: String,
    /// The replication offset after the last write the destination holds;
    /// `None` while a full copy is being written.
    pub offset: Option<u64>,
    /// The source DB the replication stream is in at `offset`: a master
    /// that continues a stream (`+CONTINUE`) does not repeat its `SELECT`,
    /// so a resume must start there (Redis keeps the same with its offset,
    /// the `repl-stream-db` aux field). Absent in records of earlier
    /// versions, which resumed in DB 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<u32>,
    /// When it was written (ms since the epoch; for people reading it).
    pub updated_ms: i64,
}

impl CheckpointRecord {
    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// `None` for a value this version did not write.
    pub fn decode(raw: &[u8]) -> Option<CheckpointRecord> {
        serde_json::from_slice(raw).ok()
    }

    /// Whether this record says the destination holds the stream up to
    /// exactly (`replid`, `offset`).
    pub fn is_at(&self, replid: &str, offset: u64) -> bool {
        self.replid == replid && self.offset == Some(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_foreign_values() {
        let r = CheckpointRecord { replid: "a".repeat(40), offset: Some(42), db: Some(3), updated_ms: 7 };
        assert_eq!(CheckpointRecord::decode(&r.encode()), Some(r.clone()));
        assert!(r.is_at(&"a".repeat(40), 42));
        assert!(!r.is_at(&"a".repeat(40), 41));
        let copying = CheckpointRecord { offset: None, ..r };
        assert_eq!(CheckpointRecord::decode(&copying.encode()), Some(copying));
        assert_eq!(CheckpointRecord::decode(b"12345"), None);
        // A record of an earlier version has no DB: it resumed in DB 0.
        let old = br#"{"replid":"r","offset":5,"updated_ms":1}"#;
        assert_eq!(CheckpointRecord::decode(old).map(|r| r.db), Some(None));
    }
}
