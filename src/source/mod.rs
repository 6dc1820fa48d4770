//! The replication reader: one per source master.
//!
//! Data flows socket → [`ReplicationReader`] → [`spool`] on disk →
//! [`ReplicationStream`] → the engine. The reader does the handshake
//! (AUTH, `REPLCONF`, `PSYNC`), then drains the socket into the spool as fast
//! as it delivers, framing it with [`psync`] on the way only to track the
//! replication offset, answer `REPLCONF GETACK` and report progress. The
//! consumer reads the spool back through the same decoder, at its own pace,
//! as RDB bytes (an `io::Read` for `rdb::RdbReader`) followed by commands
//! with their offsets, and releases spool segments once they are applied.
//! While it keeps up, it takes the command stream from memory, with the
//! link's framing of the commands, and those bytes are not written to the
//! file at all: the file is the overflow, written once the consumer falls
//! behind (see `handoff`).
//!
//! Parts: `psync` (the byte layout, no I/O), `spool` (segment files, waiting
//! readers), `spool_feed` (the link's way into the spool: the writer thread,
//! or the handoff directly), `handoff` (spooled bytes handed over in memory),
//! `replication` (the socket task and the consumer), `side`
//! (every other conversation with a source: heartbeat, polls, collision
//! surveys).

mod handoff;
pub mod psync;
mod replication;
pub mod side;
pub mod spool;
mod spool_feed;

pub use psync::{Frame, KnownFrame, PsyncDecoder, PsyncError, PsyncEvent, PsyncFramer, PsyncPosition, ReplCommand};
pub use replication::{
    RdbBody, RdbTransfer, ReplicationConfig, ReplicationProgress, ReplicationReader, ReplicationState,
    ReplicationStream, SourceError, SpoolHeader,
};
pub use spool::{SpoolError, SpoolOptions, SpoolReader, SpoolWatch, SpoolWriter};
