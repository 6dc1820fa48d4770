//! Why a shard ended, paused or must connect again, as one typed error.
//!
//! [`EngineError`] wraps the errors of the parts a shard is made of (the
//! source link, the snapshot parser, the destination, the local checkpoint)
//! and the engine's own findings (a snapshot that does not add up, a panic).
//! What the shard does about one is decided from its variant
//! ([`EngineError::is_retryable`], [`EngineError::pauses_shard`],
//! [`EngineError::disk_full_dir`]), never from its text; the text is for the
//! operator and names the shard and, through the wrapped error, the address,
//! offset or key.

use std::path::PathBuf;

use thiserror::Error;

use super::checkpoint::CheckpointError;
use crate::dest::{classify_resp, ApplyError, ErrorClass, RewriteError};
use crate::rdb::RdbError;
use crate::resp::RespError;
use crate::source::{SourceError, SpoolError};

#[derive(Debug, Error)]
pub enum EngineError {
    /// The link to the source failed (network, credentials, PSYNC, spool).
    #[error("shard {shard}: {source}")]
    Source {
        shard: String,
        /// Boxed, as every large variant: errors travel in `Result`s.
        #[source]
        source: Box<SourceError>,
    },
    /// The master answered the sync with an error reply.
    #[error("shard {shard}: the master refused to sync: {message}")]
    MasterRefused { shard: String, message: String },
    /// The snapshot the master sent cannot be parsed.
    #[error("shard {shard}: the snapshot from the master is unreadable: {source}")]
    Snapshot {
        shard: String,
        #[source]
        source: Box<RdbError>,
    },
    /// A snapshot value cannot be turned into destination commands.
    #[error("shard {shard}: {source}")]
    Rewrite {
        shard: String,
        #[source]
        source: Box<RewriteError>,
    },
    /// The destination refused or lost a write, or could not be reached.
    #[error("shard {shard}: {source}")]
    Destination {
        shard: String,
        #[source]
        source: Box<ApplyError>,
    },
    /// The destination could not be reached or answered with an error
    /// while the shard started (connect, `INFO`, reading the checkpoint).
    #[error("shard {shard}: destination {addr}: {source}")]
    DestinationConnect {
        shard: String,
        addr: String,
        #[source]
        source: Box<RespError>,
    },
    /// The destination refused to read the checkpoint key.
    #[error(
        "shard {shard}: destination {addr}: reading the checkpoint: {reply}; the destination user needs GET and \
         SET on the tool's checkpoint keys (<heartbeat_key>:ckpt:*)"
    )]
    CheckpointReadRefused { shard: String, addr: String, reply: String },
    /// The checkpoint key holds a value this tool did not write.
    #[error(
        "shard {shard}: destination {addr}: the key {key} holds a value shardsync did not write: another program \
         uses this name; change sync.heartbeat_key or remove the key"
    )]
    ForeignCheckpoint { shard: String, addr: String, key: String },
    /// The task says `kind = "cluster"`, the server is not a cluster.
    #[error(
        "shard {shard}: destination {addr} has cluster_enabled:0, but the task says kind = \"cluster\"; set kind = \
         \"standalone\" (or \"auto\") in [destination], or point addr at a cluster node"
    )]
    NotACluster { shard: String, addr: String },
    /// The destination lost writes the tool had confirmed (it restarted
    /// from an older save): the link is replaced to copy again.
    #[error("{message}")]
    LostWrites { shard: String, message: String },
    /// The local checkpoint file could not be read or written.
    #[error("shard {shard}: {source}")]
    Checkpoint {
        shard: String,
        #[source]
        source: Box<CheckpointError>,
    },
    /// The old local checkpoint could not be removed before a new snapshot.
    #[error("shard {shard}: cannot remove its old checkpoint: {source}; check the state directory's permissions")]
    CheckpointRemove {
        shard: String,
        #[source]
        source: std::io::Error,
    },
    /// A snapshot's keys do not add up (see `accounting`).
    #[error("{message}")]
    Accounting { shard: String, message: String },
    /// The shard's engine panicked: a bug.
    #[error("shard {shard}: the shard's engine panicked: {message} (a bug: please report it with the log)")]
    Panicked { shard: String, message: String },
    /// The replication link ended without an error (the master closed it).
    #[error("shard {shard}: the replication link ended")]
    LinkEnded { shard: String },
}

impl EngineError {
    /// Whether a new link, after a backoff, can carry on: the network, a
    /// master that was busy or restarting, a destination that lost writes.
    /// Not: credentials, a proxy or a renamed PSYNC, a corrupt stream or a
    /// broken spool, which need the operator.
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Source { source, .. } => source_retryable(source),
            EngineError::Destination { source, .. } => source.class == ErrorClass::Retry,
            EngineError::LostWrites { .. } | EngineError::LinkEnded { .. } => true,
            EngineError::DestinationConnect { .. }
            | EngineError::CheckpointReadRefused { .. }
            | EngineError::ForeignCheckpoint { .. }
            | EngineError::NotACluster { .. }
            | EngineError::MasterRefused { .. }
            | EngineError::Snapshot { .. }
            | EngineError::Rewrite { .. }
            | EngineError::Checkpoint { .. }
            | EngineError::CheckpointRemove { .. }
            | EngineError::Accounting { .. }
            | EngineError::Panicked { .. } => false,
        }
    }

    /// Whether the operator can fix it while the task runs, so the shard
    /// pauses (and a resume starts a new link) instead of failing: a source
    /// that refuses the password.
    pub fn pauses_shard(&self) -> bool {
        match self {
            EngineError::Source { source, .. } => {
                matches!(&**source, SourceError::Resp { source, .. } if source.is_auth())
            }
            _ => false,
        }
    }

    /// The spool directory, when the error is a full disk under it: the
    /// shard waits for room.
    pub fn disk_full_dir(&self) -> Option<&PathBuf> {
        let EngineError::Source { source, .. } = self else { return None };
        match &**source {
            SourceError::Spool { source: SpoolError::Io { dir, source, .. }, .. }
                if source.kind() == std::io::ErrorKind::StorageFull =>
            {
                Some(dir)
            }
            _ => None,
        }
    }
}

/// A source error a new link can get past.
fn source_retryable(e: &SourceError) -> bool {
    match e {
        SourceError::Closed { .. } | SourceError::Idle { .. } | SourceError::Io { .. } => true,
        SourceError::Resp { source, .. } => classify_resp(source) == ErrorClass::Retry,
        // The master's own error codes (`-LOADING`, …): its protocol, not our text.
        SourceError::PsyncRefused { message, .. } => {
            let upper = message.to_ascii_uppercase();
            ["LOADING", "NOMASTERLINK", "MASTERDOWN", "BUSY"].iter().any(|c| upper.starts_with(c))
        }
        SourceError::Protocol { .. } | SourceError::Spool { .. } | SourceError::SpoolStream { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(e: SourceError) -> EngineError {
        EngineError::Source { shard: "s1".into(), source: Box::new(e) }
    }

    #[test]
    fn decisions_come_from_the_variant() {
        let closed = source(SourceError::Closed { shard: "s1".into(), addr: "a:1".into(), step: "streaming".into() });
        assert!(closed.is_retryable() && !closed.pauses_shard());
        assert_eq!(closed.to_string(), "shard s1: s1 (a:1): the source closed the connection while streaming");
        let loading = source(SourceError::PsyncRefused {
            shard: "s1".into(),
            addr: "a:1".into(),
            message: "LOADING Redis is loading the dataset in memory".into(),
            hint: "",
        });
        assert!(loading.is_retryable());
        let proxy = source(SourceError::PsyncRefused {
            shard: "s1".into(),
            addr: "a:1".into(),
            message: "ERR unknown command 'PSYNC'".into(),
            hint: "",
        });
        assert!(!proxy.is_retryable() && !proxy.pauses_shard());
        let auth = source(SourceError::Resp {
            shard: "s1".into(),
            addr: "a:1".into(),
            step: "authenticating",
            source: Box::new(crate::resp::RespError::WrongPassword { addr: "a:1".into(), server: "WRONGPASS".into() }),
        });
        assert!(auth.pauses_shard() && !auth.is_retryable());
        let panic = EngineError::Panicked { shard: "s2".into(), message: "boom".into() };
        assert!(!panic.is_retryable() && !panic.pauses_shard());
        assert!(EngineError::LinkEnded { shard: "s1".into() }.is_retryable());
    }

    #[test]
    fn a_full_disk_under_the_spool_names_its_directory() {
        let full = source(SourceError::Spool {
            shard: "s1".into(),
            source: SpoolError::Io {
                dir: PathBuf::from("/state/spool"),
                action: "writing a segment".into(),
                source: std::io::Error::from(std::io::ErrorKind::StorageFull),
            },
        });
        assert_eq!(full.disk_full_dir(), Some(&PathBuf::from("/state/spool")));
        assert!(!full.is_retryable());
    }
}
