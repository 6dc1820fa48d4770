//! One destination as a shard sees it: the only way the engine talks to a
//! destination while it syncs.
//!
//! [`Destination::open`] connects, reads what the server is (version, RDB
//! version, features), finds whether it takes `MULTI`/`EXEC` (so whether
//! it can keep the shard's checkpoint), reads that checkpoint, and notes
//! the server's `run_id`. After that the shard only hands it batches
//! ([`Destination::apply`], which reports what was confirmed) and asks it
//! where its checkpoint stands ([`Destination::read_checkpoint`]). How a
//! batch and its checkpoint move are laid out is the [`Layout`]'s, a pure
//! value the engine's batcher uses without a server.
//!
//! This is the standalone destination; a Redis Cluster destination is the
//! same interface over one writer per master.

use bytes::Bytes;

use super::layout::Layout;
use super::{dest_info, ApplyBatch, ApplyError, ApplyReport, CheckpointRecord, Conflict, DestCaps, DestWriter};
use super::{writer::WriterOptions, RewriteOptions};
use crate::resp::{Cmd, ConnectOptions, Connection, RespError, Value};

/// What opening a destination needs.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    pub addr: String,
    pub connect: ConnectOptions,
    pub conflict: Conflict,
    /// The shard's checkpoint key.
    pub checkpoint_key: Bytes,
    /// The task asks for the checkpoint in the destination
    /// (`checkpoint = "destination"`).
    pub checkpoint_here: bool,
}

/// Why a destination could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Connect(#[from] RespError),
    /// The destination answered the checkpoint read with an error.
    #[error("reading the checkpoint key {key} was refused: {reply}")]
    CheckpointReadRefused { key: String, reply: String },
    /// The checkpoint key holds a value this tool did not write.
    #[error("the key {key} holds a value shardsync did not write")]
    ForeignCheckpoint { key: String },
}

/// An open destination; see the module docs.
pub struct Destination {
    writer: DestWriter,
    caps: DestCaps,
    layout: Layout,
}

/// What [`Destination::open`] found.
pub struct Opened {
    pub dest: Destination,
    /// The task asked for the checkpoint in the destination, but it refuses
    /// `MULTI`/`EXEC` (a proxy, some managed services): only the local file
    /// keeps it.
    pub refuses_multi: bool,
    /// The shard's checkpoint as the destination holds it (`None`: none, or
    /// not kept there).
    pub checkpoint: Option<CheckpointRecord>,
}

/// Whether the destination takes `MULTI`.
async fn takes_multi(conn: &mut Connection) -> bool {
    match conn.query(&Cmd::new("MULTI")).await {
        Ok(Value::Error(_)) | Err(_) => false,
        Ok(_) => {
            let _ = conn.query(&Cmd::new("DISCARD")).await;
            true
        }
    }
}

impl Destination {
    /// Connects and finds where the shard stands; see the module docs.
    pub async fn open(opts: OpenOptions) -> Result<Opened, OpenError> {
        let mut conn = Connection::connect(&opts.addr, &opts.connect).await?;
        let caps = dest_info(&mut conn).await?;
        let refuses_multi = opts.checkpoint_here && !takes_multi(&mut conn).await;
        let in_destination = opts.checkpoint_here && !refuses_multi;
        let key_shown = || String::from_utf8_lossy(&opts.checkpoint_key).into_owned();
        let checkpoint = if in_destination {
            match conn.query(&Cmd::new("GET").arg(&opts.checkpoint_key)).await? {
                Value::Bulk(Some(raw)) => Some(
                    CheckpointRecord::decode(&raw).ok_or_else(|| OpenError::ForeignCheckpoint { key: key_shown() })?,
                ),
                Value::Error(e) => {
                    return Err(OpenError::CheckpointReadRefused { key: key_shown(), reply: e.to_string() })
                }
                _ => None,
            }
        } else {
            None
        };
        let mut wopts = WriterOptions::new(opts.conflict);
        wopts.connect = opts.connect;
        // The writer starts in DB 0, where the checkpoint was read.
        let mut writer = DestWriter::with_connection(conn, wopts);
        writer.identify().await;
        let layout = Layout::new(opts.checkpoint_key, in_destination);
        Ok(Opened { dest: Destination { writer, caps, layout }, refuses_multi, checkpoint })
    }

    pub fn caps(&self) -> DestCaps {
        self.caps
    }

    pub fn addr(&self) -> &str {
        self.writer.addr()
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The rewrite options this destination needs, for a conflict mode.
    pub fn rewrite_options(&self, conflict: Conflict) -> RewriteOptions {
        RewriteOptions::new(self.caps, conflict)
    }

    /// Applies a batch; see [`DestWriter::apply`]: on failure the batch
    /// holds exactly what is still to apply, and `report` what was
    /// confirmed (keys written, collisions, kept keys).
    pub async fn apply(&mut self, batch: &mut ApplyBatch, report: &mut ApplyReport) -> Result<(), ApplyError> {
        self.writer.apply(batch, report).await
    }

    /// The shard's checkpoint as the destination holds it now.
    pub async fn read_checkpoint(&mut self) -> Result<Option<CheckpointRecord>, ApplyError> {
        let key = self.layout.key().clone();
        self.writer.read_checkpoint(&key).await
    }

    /// See [`DestWriter::guard_restarts`].
    pub fn guard_restarts(&mut self, on: bool) {
        self.writer.guard_restarts(on);
    }

    /// A restart of the server noticed while not guarding: old and new `run_id`.
    pub fn take_restart(&mut self) -> Option<(String, String)> {
        self.writer.take_restart()
    }

    /// What the checkpoint must still say on a new connection (see
    /// [`DestWriter::expect_after_loss`]); only when the destination keeps it.
    pub fn expect_after_loss(&mut self, record: Option<CheckpointRecord>) {
        let expect = record.filter(|_| self.layout.in_destination()).map(|r| (self.layout.key().clone(), r));
        self.writer.expect_after_loss(expect);
    }
}
