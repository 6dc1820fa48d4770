//! A Redis Cluster destination: slots, the slot map, where a replicated
//! command goes, and one writer per master.
//!
//! Parts: `slot` (CRC16, hash tags, a tag for every slot), `topology` (the
//! slot map from `CLUSTER SLOTS`), `keys` (a command's keys and slots),
//! `writer` (a batch split by master and applied in parallel, redirections
//! followed).

pub mod keys;
pub mod slot;
pub mod topology;
pub mod writer;

pub use writer::ClusterWriter;
