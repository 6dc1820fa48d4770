//! The sync engine: one shard engine per source master, each a replication
//! reader → spool → parser → filter → destination writer pipeline, exposing
//! `snapshot::TaskSnapshot`s on a `watch` channel and taking commands.
//!
//! Parts so far: `filter` decides per replicated command, `snapshot` is what
//! front ends read.

pub mod checkpoint;
pub mod filter;
pub mod snapshot;
pub mod source_side;
