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
//! A standalone destination has one writer; a Redis Cluster destination
//! (the server says `cluster_enabled:1`, or the task says `kind =
//! "cluster"`) has one per master ([`ClusterWriter`]) and keeps, besides
//! the shard's checkpoint key (the offset every slot has reached), one
//! checkpoint key per slot that the stream wrote (see [`Layout::slot_units`]).

use bytes::Bytes;

use super::cluster::ClusterWriter;
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
    /// `Some(true)`: a cluster, `Some(false)`: standalone, `None`: the
    /// server's `cluster_enabled` decides.
    pub cluster: Option<bool>,
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
    /// The task says `kind = "cluster"` but the server is not one.
    #[error("the task says kind = \"cluster\", but the destination has cluster_enabled:0; set kind = \"standalone\" or \"auto\"")]
    NotACluster,
    /// The cluster's masters could not be reached or its map read.
    #[error(transparent)]
    Cluster(ApplyError),
}

/// An open destination; see the module docs.
pub struct Destination {
    writer: Writer,
    caps: DestCaps,
    layout: Layout,
}

enum Writer {
    // Boxed: one of these per shard, so the indirection costs nothing.
    Standalone(Box<DestWriter>),
    Cluster(Box<ClusterWriter>),
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
    /// A cluster: the per-slot checkpoints of the same stream as
    /// `checkpoint` (slot, offset); others were removed.
    pub slot_checkpoints: Vec<(u16, u64)>,
}

/// Every slot's checkpoint key, read from the master serving it: the
/// offsets of those of `main`'s stream; the others (an older stream's) are
/// removed, so a slot's first unit of this stream finds none.
async fn slot_checkpoints_of(
    writer: &mut ClusterWriter,
    layout: &Layout,
    main: Option<&CheckpointRecord>,
) -> Result<Vec<(u16, u64)>, ApplyError> {
    let keys: Vec<Bytes> = (0..super::cluster::slot::SLOTS as u16).map(|s| layout.slot_key(s)).collect();
    let found = writer.get_all(&keys).await?;
    let mut held = Vec::new();
    let mut stale = ApplyBatch::new();
    for (slot, value) in found.iter().enumerate() {
        let Value::Bulk(Some(raw)) = value else { continue };
        match (CheckpointRecord::decode(raw), main) {
            (Some(r), Some(m)) if r.replid == m.replid && r.offset.is_some() => {
                held.push((slot as u16, r.offset.unwrap_or(0)));
            }
            _ => {
                let key = keys[slot].clone();
                let origin = super::Origin { db: 0, key: key.clone(), offset: 0 };
                stale.push(super::ApplyCmd::new(Cmd::new("DEL").arg(&key), origin));
            }
        }
    }
    if !stale.is_empty() {
        writer.apply(&mut stale, &mut ApplyReport::default()).await?;
    }
    Ok(held)
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
        let enabled = super::cluster::topology::cluster_enabled(&mut conn).await?;
        match opts.cluster {
            Some(true) if !enabled => return Err(OpenError::NotACluster),
            Some(true) => return Self::open_cluster(conn, caps, opts).await,
            None if enabled => return Self::open_cluster(conn, caps, opts).await,
            _ => {}
        }
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
        let dest = Destination { writer: Writer::Standalone(Box::new(writer)), caps, layout };
        Ok(Opened { dest, refuses_multi, checkpoint, slot_checkpoints: Vec::new() })
    }

    /// A cluster: the slot map, a writer per master, the shard's checkpoint
    /// and its slots' checkpoints (those of another stream are removed).
    async fn open_cluster(mut conn: Connection, caps: DestCaps, opts: OpenOptions) -> Result<Opened, OpenError> {
        let mut wopts = WriterOptions::new(opts.conflict);
        wopts.connect = opts.connect.clone();
        let mut writer = ClusterWriter::open(&mut conn, &opts.addr, wopts).await.map_err(OpenError::Cluster)?;
        let in_destination = opts.checkpoint_here;
        let layout = Layout::cluster(opts.checkpoint_key.clone(), in_destination);
        let key_shown = || String::from_utf8_lossy(&opts.checkpoint_key).into_owned();
        let mut checkpoint = None;
        let mut slot_checkpoints = Vec::new();
        if in_destination {
            checkpoint = match writer.read_checkpoint(&opts.checkpoint_key).await {
                Ok(c) => c,
                Err(e) if e.code == "CHECKPOINT" => return Err(OpenError::ForeignCheckpoint { key: key_shown() }),
                Err(e) => return Err(OpenError::Cluster(e)),
            };
            slot_checkpoints =
                slot_checkpoints_of(&mut writer, &layout, checkpoint.as_ref()).await.map_err(OpenError::Cluster)?;
            // What the run before this one left on each master is checked
            // after a restart of that master like what this run writes (a
            // full copy starting anew forgets it).
            writer.track_read(slot_checkpoints.iter().map(|&(slot, at)| (layout.slot_key(slot), slot, at)));
        }
        Ok(Opened {
            dest: Destination { writer: Writer::Cluster(Box::new(writer)), caps, layout },
            refuses_multi: false,
            checkpoint,
            slot_checkpoints,
        })
    }

    /// Where the shard stands now (after the destination lost writes): its
    /// checkpoint and, on a cluster, each slot's own checkpoint in that
    /// stream (empty for a standalone destination).
    pub async fn read_position(&mut self) -> Result<(Option<CheckpointRecord>, Vec<(u16, u64)>), ApplyError> {
        let main = self.read_checkpoint().await?;
        let slots = match &mut self.writer {
            Writer::Standalone(_) => Vec::new(),
            Writer::Cluster(c) => slot_checkpoints_of(c, &self.layout, main.as_ref()).await?,
        };
        Ok((main, slots))
    }

    /// The cluster's masters and how many slots each serves; empty for a
    /// standalone destination.
    pub fn masters(&self) -> Vec<(String, usize)> {
        match &self.writer {
            Writer::Standalone(_) => Vec::new(),
            Writer::Cluster(c) => c.map().masters.iter().cloned().zip(c.map().slot_counts()).collect(),
        }
    }

    /// One slot served by each master (its first), where the end of a
    /// full copy leaves a slot checkpoint (see `Batcher::snapshot_applied`);
    /// empty for a standalone destination.
    pub fn marker_slots(&self) -> Vec<u16> {
        match &self.writer {
            Writer::Standalone(_) => Vec::new(),
            Writer::Cluster(c) => c.map().first_slots(),
        }
    }

    /// Cluster, with checkpoints in the destination: the first slot of
    /// each master that holds no checkpoint its writer would check after a
    /// restart (see `ClusterWriter::unmarked_slots`); the stream marks them
    /// (see `Batcher::mark_slots`). Empty otherwise.
    pub fn unmarked_slots(&self) -> Vec<u16> {
        match &self.writer {
            Writer::Cluster(c) if self.layout.in_destination() => c.unmarked_slots(),
            _ => Vec::new(),
        }
    }

    pub fn caps(&self) -> DestCaps {
        self.caps
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
        match &mut self.writer {
            Writer::Standalone(w) => w.apply(batch, report).await,
            Writer::Cluster(c) => c.apply(batch, report).await,
        }
    }

    /// The shard's checkpoint as the destination holds it now.
    pub async fn read_checkpoint(&mut self) -> Result<Option<CheckpointRecord>, ApplyError> {
        let key = self.layout.key().clone();
        match &mut self.writer {
            Writer::Standalone(w) => w.read_checkpoint(&key).await,
            Writer::Cluster(c) => c.read_checkpoint(&key).await,
        }
    }

    /// See [`DestWriter::guard_restarts`].
    pub fn guard_restarts(&mut self, on: bool) {
        match &mut self.writer {
            Writer::Standalone(w) => w.guard_restarts(on),
            Writer::Cluster(c) => c.guard_restarts(on),
        }
    }

    /// A restart of the server noticed while not guarding: old and new `run_id`.
    pub fn take_restart(&mut self) -> Option<(String, String)> {
        match &mut self.writer {
            Writer::Standalone(w) => w.take_restart(),
            Writer::Cluster(c) => c.take_restart(),
        }
    }

    /// What the checkpoint must still say on a new connection (see
    /// [`DestWriter::expect_after_loss`]); only when the destination keeps
    /// it. In a cluster each slot's unit carries its own guard instead.
    pub fn expect_after_loss(&mut self, record: Option<CheckpointRecord>) {
        let expect = record.filter(|_| self.layout.in_destination()).map(|r| (self.layout.key().clone(), r));
        if let Writer::Standalone(w) = &mut self.writer {
            w.expect_after_loss(expect);
        }
    }
}
